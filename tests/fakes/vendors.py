"""Loopback fakes of the three vendor APIs, speaking each one's wire format over real HTTP.

Used by the provider tests, the job tests, the end-to-end and crash tests and the benchmark.
(One file on purpose: the three fakes share the task store, fault injection and lifecycle.)

Quick start::

    async with FakeKieVendor(api_key="k", clock=fake_clock, duration=120) as kie:
        settings = Settings(discord_token="t", kie_api_key="k", kie_base_url=kie.base_url,
                            kie_upload_base_url=kie.base_url)
        ...
        kie.inject("create", Fault.http(429, headers={"Retry-After": "7"}))  # next create only
        kie.unavailable = True          # every request answers 503
        await kie.close_listener()      # connections refused ... until
        await kie.reopen_listener()     # listening again on the same port

Tasks: each create makes a `FakeTask` that finishes `duration` seconds after creation, measured on the
injected clock (anything with `.now()`; default `time.time`), with a planned `Outcome`. Defaults come
from `duration=` / `outcome=`, or per request from `plan(request_body) -> (duration, Outcome)`.
Successful tasks get a video URL served by the fake itself (`GET /videos/<name>.mp4`, a few bytes of
MP4 header) unless the outcome names one.

Records for assertions: `tasks` (id -> FakeTask with `body`, `status_calls`, `finishes_at`), `requests`
(endpoint -> count of requests received, faulted ones included), `create_calls`.

Faults, per endpoint name (`create`, `query`, and for kie `1080p`, `upload`), consumed in order, one per
request: `Fault.http(status, body, headers)`, `Fault.delay(seconds)` (then answers normally),
`Fault.reset()` (connection reset, nothing done), `Fault.non_json()`, `Fault.lost_response()`
(the request is fully handled - the task is created - then the connection is reset unanswered).
Delays are real seconds (they exist to trip client timeouts), whatever clock the fake uses.
Faults come before the key check; `unavailable` comes before faults.

Per vendor: `FakeUnifiedVendor` (status-string knobs, stale error text on success, full-id-only
queries), `FakeKieVendor` (body codes in the envelope, resultUrls as JSON string, 1080p readiness,
file upload + download, signed callbacks: `callback_key`, `callbacks`, `fire_due_callbacks()`),
`FakeKlingVendor` (`shape`: openai | envelope | envelope_legacy | simple | native; `serve_paths`).
Helpers: `finish_now(task_id, outcome)`, `video_url(task)`, `status_calls(task_id)`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import re
import secrets
import socket
import struct
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import httpx
from aiohttp import web

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
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port or 0, reuse_address=True)
        await site.start()
        server = site._server  # the bound port when 0 was asked for
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
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


# =============================================================================================
# Unified API (kkiai): /v1/video/create + /v1/video/query
# =============================================================================================


class FakeUnifiedVendor(FakeVendor):
    """kkiai's unified API for Veo and Sora 2.

    Knobs: `running_statuses` (walked through over the task's duration), `success_status`,
    `failure_status`, `stale_error_text` (completed answers carry leftover error text, as in the
    vendor's own example), `echo_id_without_prefix` (the query echoes the id minus its model prefix).
    The query only knows the full id (prefix included), as the client must send it.
    """

    vendor = "kkiai"

    def __init__(
        self,
        *,
        running_statuses: tuple[str, ...] = ("pending", "processing", "video_generating"),
        success_status: str = "completed",
        failure_status: str = "failed",
        stale_error_text: bool = True,
        echo_id_without_prefix: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.running_statuses = running_statuses
        self.success_status = success_status
        self.failure_status = failure_status
        self.stale_error_text = stale_error_text
        self.echo_id_without_prefix = echo_id_without_prefix

    def routes(self) -> list[tuple[str, str, Handler, str]]:
        return [
            ("POST", "/v1/video/create", self._create, "create"),
            ("GET", "/v1/video/query", self._query, "query"),
        ]

    async def _create(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None or not body.get("model") or not body.get("prompt"):
            return web.json_response(
                {"error": {"message": "model and prompt are required", "type": "invalid_request_error"}}, status=400
            )
        now = self.clock.now()
        task_id = f"{body['model']}:{int(now)}-{secrets.token_urlsafe(8)}"
        self.new_task(task_id, body)
        return web.json_response({"id": task_id, "status": "pending", "status_update_time": int(now * 1000)})

    async def _query(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.query.get("id", ""))
        if task is None:
            return web.json_response({"error": {"message": "task not found", "type": "not_found"}}, status=404)
        task.status_calls += 1
        now = self.clock.now()
        echoed = task.id.split(":", 1)[-1] if self.echo_id_without_prefix else task.id
        detail: dict[str, Any] = {"id": task.id, "req": task.body, "created_at": int(task.created_at * 1000)}
        payload: dict[str, Any] = {"id": echoed, "video_url": None, "status_update_time": int(now * 1000),
                                   "detail": detail}
        if not task.done(now):
            statuses = self.running_statuses or ("processing",)
            status = statuses[min(len(statuses) - 1, int(task.fraction(now) * len(statuses)))]
            detail.update(status=status, running=True)
        elif task.outcome.success:
            status = self.success_status
            plain = self.video_url(task)
            detail.update(status=status, running=False, video_url=plain, completed_at=int(task.finishes_at * 1000))
            payload["video_url"] = plain
            if task.body.get("enable_upsample"):
                upsampled = self.video_url(task, "-1080p")
                detail["upsample_video_url"] = upsampled
                payload["video_url"] = upsampled
            if self.stale_error_text:
                detail["error_message"] = "[403] Request failed with status code 403 | reCAPTCHA evaluation failed"
                detail["video_generation_error"] = "your request contains unsafe prompt or images, has been rejected"
        else:
            status = self.failure_status
            detail.update(status=status, running=False, video_generation_error=task.outcome.reason,
                          error_message=task.outcome.reason)
        payload["status"] = status
        return web.json_response(payload)


# =============================================================================================
# kie.ai Veo 3.1: generate, record-info, 1080p, file upload, callbacks
# =============================================================================================


@dataclass
class UploadRecord:
    upload_path: str
    file_name: str
    content_type: str
    data: bytes


@dataclass
class CallbackRecord:
    task_id: str
    url: str
    payload: dict[str, Any]
    headers: dict[str, str]
    status: int | None = None  # the receiver's HTTP status; None if it could not be reached
    error: str = ""


class FakeKieVendor(FakeVendor):
    """kie.ai's Veo 3.1 API, its file host (serve both from one fake: set kie_upload_base_url to
    the same base_url) and its completion callbacks.

    Knobs: `result_urls_as_string` (record-info's resultUrls as a JSON string), `hd_delay` (seconds
    after completion before 1080p is ready; None = never), `failure_flag` (2 or 3),
    `callback_key` (sign callbacks with HMAC), `auto_callbacks` (default: on with the wall clock,
    off with an injected clock - then call `await fire_due_callbacks()`).
    """

    vendor = "kie"

    def __init__(
        self,
        *,
        result_urls_as_string: bool = False,
        hd_delay: float | None = 60.0,
        failure_flag: int = 2,
        callback_key: str | None = None,
        auto_callbacks: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.result_urls_as_string = result_urls_as_string
        self.hd_delay = hd_delay
        self.failure_flag = failure_flag
        self.callback_key = callback_key
        self.auto_callbacks = self.uses_wall_clock if auto_callbacks is None else auto_callbacks
        self.uploads: list[UploadRecord] = []
        self.callbacks: list[CallbackRecord] = []
        self._callback_loop: asyncio.Task[None] | None = None
        self._callback_http: httpx.AsyncClient | None = None

    def routes(self) -> list[tuple[str, str, Handler, str]]:
        return [
            ("POST", "/api/v1/veo/generate", self._generate, "create"),
            ("GET", "/api/v1/veo/record-info", self._record_info, "query"),
            ("GET", "/api/v1/veo/get-1080p-video", self._get_1080p, "1080p"),
            ("POST", "/api/file-stream-upload", self._upload, "upload"),
            ("GET", "/files/{path:.*}", self._serve_file, "files"),
        ]

    def auth_error(self) -> web.Response:
        return web.json_response({"code": 401, "msg": "You do not have access permissions", "data": None},
                                 status=401)

    async def on_started(self) -> None:
        if self._callback_http is None:
            self._callback_http = httpx.AsyncClient(timeout=5.0)
        if self.auto_callbacks and self._callback_loop is None:
            self._callback_loop = asyncio.create_task(self._fire_callbacks_forever())

    async def on_stopping(self) -> None:
        if self._callback_loop is not None:
            self._callback_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._callback_loop
            self._callback_loop = None
        if self._callback_http is not None:
            await self._callback_http.aclose()
            self._callback_http = None

    # --- generate / record-info / 1080p -------------------------------------------------------------
    async def _generate(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        if body is None or not str(body.get("prompt") or "").strip():
            return web.json_response({"code": 422, "msg": "prompt is required", "data": None})
        task = self.new_task(f"veo_task_{secrets.token_hex(8)}", body)
        task.callback_url = body.get("callBackUrl") or None
        return web.json_response({"code": 200, "msg": "success", "data": {"taskId": task.id}})

    def _urls(self, task: FakeTask) -> list[str]:
        return [self.video_url(task)]

    async def _record_info(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.query.get("taskId", ""))
        if task is None:
            return web.json_response({"code": 404, "msg": "task not found", "data": None})
        task.status_calls += 1
        now = self.clock.now()
        done = task.done(now)
        data: dict[str, Any] = {
            "taskId": task.id, "paramJson": json.dumps(task.body), "createTime": int(task.created_at * 1000),
            "completeTime": int(task.finishes_at * 1000) if done else None, "response": None,
            "successFlag": 0, "errorCode": None, "errorMessage": None, "fallbackFlag": False,
        }
        if done and task.outcome.success:
            urls = self._urls(task)
            data["successFlag"] = 1
            data["response"] = {
                "taskId": task.id, "resolution": "720p",
                "resultUrls": json.dumps(urls) if self.result_urls_as_string else urls,
                "originUrls": None,
            }
        elif done:
            data.update(successFlag=self.failure_flag, errorCode=task.outcome.code or 501,
                        errorMessage=task.outcome.reason)
        return web.json_response({"code": 200, "msg": "success", "data": data})

    async def _get_1080p(self, request: web.Request) -> web.Response:
        task = self.tasks.get(request.query.get("taskId", ""))
        if task is None:
            return web.json_response({"code": 404, "msg": "task not found", "data": None})
        task.hd_calls += 1
        now = self.clock.now()
        if task.done(now) and not task.outcome.success:
            return web.json_response({"code": 501, "msg": "generation failed", "data": None})
        ready = self.hd_delay is not None and task.done(now) and now >= task.finishes_at + self.hd_delay
        if not ready:
            return web.json_response(
                {"code": 400, "msg": "1080P is processing. It should be ready in 1-2 minutes.", "data": None})
        return web.json_response({"code": 200, "msg": "success",
                                  "data": {"resultUrl": self.video_url(task, "-1080p")}})

    # --- file host -------------------------------------------------------------------------------------
    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        file = form.get("file")
        if not isinstance(file, web.FileField):
            return web.json_response({"success": False, "code": 400, "msg": "file is required", "data": None})
        content = file.file.read()
        upload_path = str(form.get("uploadPath") or "uploads")
        file_name = str(form.get("fileName") or file.filename)
        self.uploads.append(UploadRecord(upload_path, file_name, file.content_type, content))
        url = f"{self.base_url}/files/{upload_path}/{file_name}"
        return web.json_response({"success": True, "code": 200, "msg": "File uploaded successfully", "data": {
            "fileName": file_name, "filePath": f"{upload_path}/{file_name}", "downloadUrl": url,
            "fileSize": len(content), "mimeType": file.content_type, "uploadedAt": int(self.clock.now() * 1000),
        }})

    async def _serve_file(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        for upload in reversed(self.uploads):
            if f"{upload.upload_path}/{upload.file_name}" == path:
                return web.Response(body=upload.data, content_type=upload.content_type)
        return web.Response(status=404)

    # --- callbacks ---------------------------------------------------------------------------------------
    def callback_payload(self, task: FakeTask) -> dict[str, Any]:
        """The documented callback JSON (URLs under data.info)."""
        if task.outcome.success:
            return {"code": 200, "msg": "Veo3.1 video generated successfully.", "data": {
                "taskId": task.id, "fallbackFlag": False,
                "info": {"resultUrls": self._urls(task), "originUrls": None, "resolution": "720p"},
            }}
        return {"code": task.outcome.code or 501, "msg": task.outcome.reason or "generation failed",
                "data": {"taskId": task.id, "fallbackFlag": False, "info": None}}

    def sign(self, task_id: str, timestamp: str) -> str:
        assert self.callback_key is not None
        digest = hmac.new(self.callback_key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
        return base64.b64encode(digest).decode()

    async def fire_due_callbacks(self) -> int:
        """POST the callback of every finished task not yet called back; returns how many were sent."""
        now = self.clock.now()
        due = [t for t in self.tasks.values() if t.callback_url and not t.callback_sent and t.done(now)]
        for task in due:
            task.callback_sent = True  # before awaiting: a concurrent call must not send it again
        for task in due:
            await self._send_callback(task)
        return len(due)

    async def _send_callback(self, task: FakeTask) -> None:
        assert task.callback_url is not None
        payload = self.callback_payload(task)
        headers = {"Content-Type": "application/json"}
        if self.callback_key:
            timestamp = str(int(self.clock.now()))
            headers["X-Webhook-Timestamp"] = timestamp
            headers["X-Webhook-Signature"] = self.sign(task.id, timestamp)
        record = CallbackRecord(task.id, task.callback_url, payload, headers)
        self.callbacks.append(record)
        client = self._callback_http or httpx.AsyncClient(timeout=5.0)
        try:
            response = await client.post(task.callback_url, content=json.dumps(payload), headers=headers)
            record.status = response.status_code
        except httpx.HTTPError as exc:
            record.error = type(exc).__name__
        finally:
            if client is not self._callback_http:
                await client.aclose()

    async def _fire_callbacks_forever(self) -> None:
        while True:
            await self.fire_due_callbacks()
            await asyncio.sleep(0.05)


# =============================================================================================
# OpenAI-style Kling gateway: /v1/video/generations, /v1/videos/{id}
# =============================================================================================

KlingShape = Literal["openai", "envelope", "envelope_legacy", "simple", "native"]

# (running statuses walked through, success, failure) per response shape.
_KLING_STATUSES: dict[str, tuple[tuple[str, ...], str, str]] = {
    "openai": (("queued", "in_progress"), "completed", "failed"),
    "envelope": (("NOT_START", "SUBMITTED", "QUEUED", "IN_PROGRESS"), "SUCCESS", "FAILURE"),
    "envelope_legacy": (("SUBMITTED", "IN_PROGRESS"), "SUCCESS", "FAILURE"),
    "simple": (("queued", "processing"), "succeeded", "failed"),
    "native": (("submitted", "processing"), "succeed", "failed"),
}


class FakeKlingVendor(FakeVendor):
    """The OpenAI-style video gateway serving Kling v3.

    Knobs: `shape` (openai | envelope | envelope_legacy (URL in fail_reason on SUCCESS) | simple |
    native) for create and poll answers; `serve_paths` (which poll paths exist: "videos" =
    /v1/videos/{id}, "generations" = /v1/video/generations/{id}; the other answers 404).
    """

    vendor = "kling"

    def __init__(
        self,
        *,
        shape: KlingShape = "openai",
        serve_paths: frozenset[str] = frozenset({"videos", "generations"}),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.shape: KlingShape = shape
        self.serve_paths = serve_paths

    def routes(self) -> list[tuple[str, str, Handler, str]]:
        return [
            ("POST", "/v1/video/generations", self._create, "create"),
            ("GET", "/v1/videos/{task_id}", self._query_videos, "query"),
            ("GET", "/v1/video/generations/{task_id}", self._query_generations, "query"),
        ]

    async def _create(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        extra = body.get("extra_body") if body and isinstance(body.get("extra_body"), dict) else {}
        if body is None or not body.get("model") or not (body.get("prompt") or extra.get("multi_prompt")):
            return web.json_response({"error": {"message": "model and prompt (or multi_prompt) are required",
                                                "type": "invalid_request_error", "code": "invalid_request"}},
                                     status=400)
        task = self.new_task(f"task_{secrets.token_hex(10)}", body)
        created = int(task.created_at)
        if self.shape == "openai":
            answer: dict[str, Any] = {"id": task.id, "object": "video", "model": body["model"], "status": "queued",
                                      "progress": 0, "created_at": created}
        elif self.shape in ("envelope", "envelope_legacy"):
            answer = {"code": "success", "message": "", "data": {"task_id": task.id}}
        elif self.shape == "simple":
            answer = {"task_id": task.id, "status": "queued"}
        else:
            answer = {"code": 0, "message": "SUCCEED", "request_id": secrets.token_hex(6),
                      "data": {"task_id": task.id, "task_status": "submitted", "created_at": created * 1000}}
        return web.json_response(answer)

    async def _query_videos(self, request: web.Request) -> web.Response:
        return self._query("videos", request.match_info["task_id"])

    async def _query_generations(self, request: web.Request) -> web.Response:
        return self._query("generations", request.match_info["task_id"])

    def _query(self, path: str, task_id: str) -> web.Response:
        task = self.tasks.get(task_id)
        if path not in self.serve_paths or task is None:
            return web.json_response({"error": {"message": "not found", "type": "not_found"}}, status=404)
        task.status_calls += 1
        return web.json_response(self.task_answer(task))

    def task_answer(self, task: FakeTask) -> dict[str, Any]:
        """The poll answer in the configured shape."""
        now = self.clock.now()
        running, success, failure = _KLING_STATUSES[self.shape]
        done = task.done(now)
        if not done:
            status = running[min(len(running) - 1, int(task.fraction(now) * len(running)))]
        else:
            status = success if task.outcome.success else failure
        ok = done and task.outcome.success
        url = self.video_url(task) if ok else None
        reason = task.outcome.reason if done and not task.outcome.success else ""
        code = task.outcome.code or "generation_failed"
        percent = int(task.fraction(now) * 100)
        if self.shape == "openai":
            answer: dict[str, Any] = {"id": task.id, "object": "video", "status": status, "progress": percent}
            if url:
                answer["metadata"] = {"url": url}
            if reason:
                answer["error"] = {"code": code, "message": reason}
            return answer
        if self.shape in ("envelope", "envelope_legacy"):
            data: dict[str, Any] = {"task_id": task.id, "status": status, "progress": f"{percent}%",
                                    "fail_reason": reason}
            if url and self.shape == "envelope":
                data["result_url"] = url
            elif url:
                data["fail_reason"] = url  # old gateway versions
            return {"code": "success", "message": "", "data": data}
        if self.shape == "simple":
            answer = {"task_id": task.id, "status": status, "url": url}
            if reason:
                answer["error"] = {"code": code, "message": reason}
            return answer
        data = {"task_id": task.id, "task_status": status, "task_status_msg": reason,
                "task_result": {"videos": [{"id": "v1", "url": url, "duration": "5"}] if url else []}}
        return {"code": 0, "message": "SUCCEED", "data": data}
