"""What the three vendor fakes share: outcomes, faults, the task store, the aiohttp server and its
lifecycle (start/stop, listener close/reopen), fault injection and the served video file."""

from __future__ import annotations

import asyncio
import random
import contextlib
import json
import re
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from aiohttp import web

from fakes.loopback import serve

FAKE_MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + b"\x00" * 64


class NowClock(Protocol):
    def now(self) -> float: ...


class _WallClock:
    def now(self) -> float:
        return time.time()


@dataclass(frozen=True)
class Outcome:
    """How a fake task ends."""

    success: bool = True
    video_url: str | None = None  # None: the fake serves one itself
    reason: str = ""
    code: int | None = None  # vendor failure code (kie callback/errorCode, kling error.code)

    @classmethod
    def ok(cls, video_url: str | None = None) -> Outcome:
        return cls(success=True, video_url=video_url)

    @classmethod
    def fail(cls, reason: str = "generation failed", code: int | None = None) -> Outcome:
        return cls(success=False, reason=reason, code=code)


FaultKind = Literal["status", "delay", "reset", "non_json", "lost_response"]


@dataclass(frozen=True)
class Fault:
    """One injected misbehaviour for one request."""

    kind: FaultKind
    status: int = 500
    body: Any = None  # dict/list -> JSON, str/bytes -> raw
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def http(cls, status: int, body: Any = None, headers: dict[str, str] | None = None) -> Fault:
        return cls("status", status=status, body=body, headers=dict(headers or {}))

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        return cls("delay", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def non_json(cls, status: int = 200) -> Fault:
        return cls("non_json", status=status)

    @classmethod
    def lost_response(cls) -> Fault:
        return cls("lost_response")


@dataclass
class FakeTask:
    """One vendor task in the fake's memory."""

    id: str
    body: dict[str, Any]
    created_at: float
    duration: float
    outcome: Outcome
    status_calls: int = 0
    hd_calls: int = 0
    callback_url: str | None = None
    callback_sent: bool = False

    @property
    def finishes_at(self) -> float:
        """When the vendor finished (or will): for latency measurement."""
        return self.created_at + self.duration

    def done(self, now: float) -> bool:
        return now >= self.finishes_at

    def fraction(self, now: float) -> float:
        if self.duration <= 0:
            return 1.0
        return max(0.0, min(1.0, (now - self.created_at) / self.duration))


Plan = Callable[[dict[str, Any]], tuple[float, Outcome]]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FakeVendor:
    """Lifecycle, task store, auth, faults and the down switches shared by the three fakes."""

    vendor = "fake"
    # Endpoints reachable without the Bearer key (the vendors' CDNs).
    public_endpoints: frozenset[str] = frozenset({"video", "files"})

    def __init__(
        self,
        *,
        api_key: str = "test-key",
        clock: NowClock | None = None,
        duration: float = 1.0,
        outcome: Outcome | None = None,
        plan: Plan | None = None,
        port: int | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.api_key = api_key
        self.clock: NowClock = clock or _WallClock()
        self.uses_wall_clock = clock is None
        self.duration = duration
        self.outcome = outcome or Outcome.ok()
        self.plan = plan
        self.host = host
        self.port = port
        self.tasks: dict[str, FakeTask] = {}
        self.requests: Counter[str] = Counter()
        self.faults: dict[str, deque[Fault]] = {}
        self.unavailable = False  # every request answers 503
        self.latency = 0.0  # seconds (+-30%, real time) before every answer: a vendor across the internet
        self.unavailable_retry_after: float | None = None
        self._runner: web.AppRunner | None = None
        self._endpoint_names: dict[Handler, str] = {}

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError("start() the fake vendor first")
        return f"http://{self.host}:{self.port}"

    async def start(self, port: int | None = None) -> str:
        """Listen on 127.0.0.1 (a free port, or `port`, or the port of an earlier start)."""
        if self._runner is not None:
            return self.base_url
        if port is not None:
            self.port = port
        app = web.Application(middlewares=[self._middleware])
        routes = [*self.routes(), ("GET", "/videos/{name}", self._serve_video, "video")]
        self._endpoint_names = {handler: name for _, _, handler, name in routes}
        for method, path, handler, _ in routes:
            app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        self.port = await serve(runner, self.host, self.port or 0, reuse_address=True)
        self._runner = runner
        await self.on_started()
        return self.base_url

    async def stop(self) -> None:
        await self.on_stopping()
        await self.close_listener()

    async def close_listener(self) -> None:
        """Stop listening and drop open connections: clients now get "connection refused".
        The task store survives; `reopen_listener()` listens on the same port again."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def reopen_listener(self) -> None:
        if self._runner is None:
            await self.start(self.port)

    async def on_started(self) -> None:
        """Hook for subclasses."""

    async def on_stopping(self) -> None:
        """Hook for subclasses."""

    async def __aenter__(self) -> FakeVendor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- knobs and records -----------------------------------------------------------------------
    def inject(self, endpoint: str, *faults: Fault) -> None:
        """Queue faults for the next requests to `endpoint`, consumed one per request."""
        self.faults.setdefault(endpoint, deque()).extend(faults)

    @property
    def create_calls(self) -> int:
        return self.requests["create"]

    def status_calls(self, task_id: str) -> int:
        return self.tasks[task_id].status_calls

    def finish_now(self, task_id: str, outcome: Outcome | None = None) -> None:
        """Make a task finish at the current clock time (optionally with another outcome)."""
        task = self.tasks[task_id]
        task.duration = max(0.0, self.clock.now() - task.created_at)
        if outcome is not None:
            task.outcome = outcome

    def video_url(self, task: FakeTask, suffix: str = "") -> str:
        """The task's result URL; `suffix` names a variant (e.g. "-1080p")."""
        if task.outcome.video_url:
            base, dot, ext = task.outcome.video_url.rpartition(".")
            return f"{base}{suffix}.{ext}" if suffix and dot else task.outcome.video_url + suffix
        slug = re.sub(r"[^A-Za-z0-9_-]", "_", task.id)
        return f"{self.base_url}/videos/{slug}{suffix}.mp4"

    def new_task(self, task_id: str, body: dict[str, Any]) -> FakeTask:
        duration, outcome = self.plan(body) if self.plan else (self.duration, self.outcome)
        task = FakeTask(id=task_id, body=body, created_at=self.clock.now(), duration=duration, outcome=outcome)
        self.tasks[task_id] = task
        return task

    # --- subclass API ----------------------------------------------------------------------------
    def routes(self) -> list[tuple[str, str, Handler, str]]:
        """(method, path, handler, endpoint name)."""
        raise NotImplementedError

    def auth_error(self) -> web.Response:
        return web.json_response({"error": {"message": "invalid api key", "type": "authentication_error"}},
                                 status=401)

    # --- plumbing --------------------------------------------------------------------------------
    def endpoint_of(self, request: web.Request) -> str:
        return self._endpoint_names.get(request.match_info.handler, "unknown")

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = self.endpoint_of(request)
        self.requests[endpoint] += 1
        if self.unavailable:
            headers = {"Retry-After": str(self.unavailable_retry_after)} if self.unavailable_retry_after else {}
            return web.json_response({"error": {"message": "service unavailable"}}, status=503, headers=headers)
        if self.latency > 0:
            await asyncio.sleep(self.latency * random.uniform(0.7, 1.3))
        queue = self.faults.get(endpoint)
        fault = queue.popleft() if queue else None
        if fault is not None and fault.kind == "delay":
            await asyncio.sleep(fault.seconds)
        elif fault is not None and fault.kind == "status":
            return _raw_response(fault.status, fault.body, fault.headers)
        elif fault is not None and fault.kind == "non_json":
            return web.Response(status=fault.status, text="<html><body>502 Bad Gateway</body></html>",
                                content_type="text/html")
        elif fault is not None and fault.kind == "reset":
            return await _reset_connection(request)
        if endpoint not in self.public_endpoints:
            if request.headers.get("Authorization", "") != f"Bearer {self.api_key}":
                return self.auth_error()
        response = await handler(request)
        if fault is not None and fault.kind == "lost_response":
            return await _reset_connection(request)
        return response

    async def _serve_video(self, request: web.Request) -> web.Response:
        return web.Response(body=FAKE_MP4, content_type="video/mp4")


def _raw_response(status: int, body: Any, headers: dict[str, str]) -> web.Response:
    if isinstance(body, (dict, list)):
        return web.json_response(body, status=status, headers=headers)
    if isinstance(body, bytes):
        return web.Response(status=status, body=body, headers=headers)
    return web.Response(status=status, text="" if body is None else str(body), headers=headers)


async def _reset_connection(request: web.Request) -> web.StreamResponse:
    """Reset the TCP connection (RST) without answering."""
    transport = request.transport
    if transport is not None:
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # Nothing can be written any more; aiohttp drops this response on the closed transport.
    return web.Response(status=499)


async def _json_body(request: web.Request) -> dict[str, Any] | None:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None
    return body if isinstance(body, dict) else None
