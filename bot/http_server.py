"""The operators' HTTP server: `/healthz`, `/metrics` and kie.ai's completion callbacks.

Optional: started only when `HTTP_LISTEN` is set. It knows nothing of Discord; the bot hands it
small callables (is the gateway connected? when did the poller last tick?) and the database.

A kie.ai callback never finishes a job by itself. It only tells the poller "look now": the poller
records the task id for a job whose submit answer was lost and runs an immediate status check
(record-info stays the source of truth; a URL in a callback body is never trusted on its own).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bot import metrics
from bot.catalog import ProviderName
from bot.clock import Clock, SystemClock
from storage.jobs import JobRepository
from bot.jobs.submission import CALLBACK_PATH
from bot.providers.kie import callback_task_id, parse_kie_callback, verify_kie_signature
from bot.settings import Settings
from storage.database import Database

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Webhook-Signature"
TIMESTAMP_HEADER = "X-Webhook-Timestamp"
MAX_CALLBACK_AGE_SECONDS = 600.0  # a signed callback older (or further in the future) than this is a replay
MAX_BODY_BYTES = 256 * 1024  # kie's callback is a few hundred bytes; refuse anything absurd
JOB_GAUGE_MIN_REFRESH_SECONDS = 5.0  # two scrapers at once do not mean two GROUP BY scans


class CallbackReceiver(Protocol):
    """The poller's side of a callback (bot.jobs.poller.Poller implements it)."""

    async def on_callback(self, job_id: int, task_id: str | None) -> object:
        """Note the vendor's task id and make the job due for an immediate confirming check."""


def heartbeat_from_metrics() -> float | None:
    """The poller's last completed tick as published in `framecast_poller_heartbeat_timestamp`."""
    value = metrics.REGISTRY.get_sample_value("framecast_poller_heartbeat_timestamp")
    return value if value else None


@dataclass
class HealthChecks:
    """What `/healthz` asks. Each callable must be cheap and must not block.

    What "healthy" means follows the process's role: a part the role does not run is None and left
    out of the report. `all`: gateway + database + poller; `gateway`: gateway + database; `worker`
    (no gateway): Discord's REST API with our token + database + poller.
    """

    database: Database
    gateway_connected: Callable[[], bool] | None = None
    ready: Callable[[], bool] = lambda: True
    poller_last_tick: Callable[[], float | None] | None = heartbeat_from_metrics
    discord_rest: Callable[[], Awaitable[bool]] | None = None
    role: str = "all"
    poller_max_age_seconds: float = 180.0
    database_probe_timeout_seconds: float = 3.0
    clock: Clock = field(default_factory=SystemClock)


class _WriteProbe:
    """`BEGIN IMMEDIATE` + `ROLLBACK`: proves this process can take the write lock right now.

    The probe runs as its own task and is never cancelled: cancelling an aiosqlite call half way
    could leave the writer connection inside a transaction. A slow probe makes /healthz answer
    "not writable" after a timeout while it finishes in the background; the next check reuses it.
    """

    class _Rollback(Exception):
        pass

    def __init__(self, database: Database) -> None:
        self._database = database
        self._in_flight: asyncio.Task[bool] | None = None

    async def _probe(self) -> bool:
        try:
            async with self._database.transaction():
                raise self._Rollback
        except self._Rollback:
            return True
        except Exception:
            log.warning("database write probe failed", exc_info=True)
            return False

    async def check(self, timeout: float) -> bool:
        if self._in_flight is None or self._in_flight.done():
            self._in_flight = asyncio.create_task(self._probe(), name="healthz-db-probe")
        done, _ = await asyncio.wait({self._in_flight}, timeout=timeout)
        return bool(done) and self._in_flight.result()


class _JobGauge:
    """Refreshes JOBS_BY_STATE from the database when scraped, at most every few seconds."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._refreshed_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._refreshed_at < JOB_GAUGE_MIN_REFRESH_SECONDS:
                return
            rows = await JobRepository(self._database).count_by_state()
            # Clear, then set, with no await in between: a series that dropped to nothing disappears
            # and a concurrent scrape never sees a half-filled gauge.
            metrics.JOBS_BY_STATE.clear()
            for status, family, jobs in rows:
                metrics.JOBS_BY_STATE.labels(state=status, family=family).set(jobs)
            self._refreshed_at = time.monotonic()


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` (all interfaces) -> (host, port)."""
    host, sep, port_text = value.strip().rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"HTTP_LISTEN must be host:port, got {value!r}")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port_text)


def _timestamp_seconds(raw: str) -> float | None:
    """The webhook timestamp as Unix seconds; kie's docs do not pin the unit, so accept ms too."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value / 1000.0 if value > 1e11 else value


class OperatorsServer:
    """The aiohttp application plus its runner; `start()` binds, `stop()` releases."""

    def __init__(
        self,
        *,
        settings: Settings,
        health: HealthChecks,
        callbacks: CallbackReceiver | None,
    ) -> None:
        self._settings = settings
        self._health = health
        self._callbacks = callbacks
        self._probe = _WriteProbe(health.database)
        self._job_gauge = _JobGauge(health.database)
        self._jobs = JobRepository(health.database)
        self._runner: web.AppRunner | None = None
        self.app = self._build_app()

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_get("/healthz", self.handle_health)
        app.router.add_get("/metrics", self.handle_metrics)
        app.router.add_post(CALLBACK_PATH, self.handle_kie_callback)
        return app

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self, host: str, port: int) -> list[Any]:
        """Bind and serve; returns the bound addresses (port 0 picks a free one)."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        log.info("operators' HTTP server listening on %s", self._runner.addresses)
        return list(self._runner.addresses)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- /healthz ----------------------------------------------------------------------------
    async def health_report(self) -> dict[str, Any]:
        checks = self._health
        report: dict[str, Any] = {"ready": bool(checks.ready())}
        if checks.gateway_connected is not None:
            report["gateway_connected"] = bool(checks.gateway_connected())
        if checks.discord_rest is not None:
            report["discord_rest"] = bool(await checks.discord_rest())
        report["database_writable"] = await self._probe.check(checks.database_probe_timeout_seconds)
        tick_age: float | None = None
        if checks.poller_last_tick is not None:
            last_tick = checks.poller_last_tick()
            tick_age = None if last_tick is None else max(0.0, checks.clock.now() - last_tick)
            report["poller_alive"] = tick_age is not None and tick_age <= checks.poller_max_age_seconds
        report["healthy"] = all(report.values())
        report["role"] = str(checks.role)
        if checks.poller_last_tick is not None:
            report["poller_last_tick_age_seconds"] = None if tick_age is None else round(tick_age, 3)
        return report

    async def handle_health(self, request: web.Request) -> web.Response:
        report = await self.health_report()
        return web.json_response(report, status=200 if report["healthy"] else 503)

    # --- /metrics ----------------------------------------------------------------------------
    async def handle_metrics(self, request: web.Request) -> web.Response:
        try:
            await self._job_gauge.refresh()
        except Exception:  # a metrics scrape must still answer with what it has
            log.warning("could not refresh the jobs gauge", exc_info=True)
        body = generate_latest(metrics.REGISTRY)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- /callbacks/kie/{job_id} -------------------------------------------------------------
    def _signature_problem(self, request: web.Request, task_id: str | None) -> str | None:
        """Why this callback's signature is not acceptable, or None when it is (or none is required)."""
        key = self._settings.kie_webhook_hmac_key
        if key is None:
            return None
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if not signature or not timestamp or not task_id:
            return "missing signature, timestamp or taskId"
        sent_at = _timestamp_seconds(timestamp)
        if sent_at is None:
            return "unreadable timestamp"
        if abs(self._health.clock.now() - sent_at) > MAX_CALLBACK_AGE_SECONDS:
            return "stale timestamp"
        if not verify_kie_signature(task_id, timestamp, signature, key.get_secret_value()):
            return "bad signature"
        return None

    async def handle_kie_callback(self, request: web.Request) -> web.Response:
        try:
            job_id = int(request.match_info["job_id"])
        except ValueError:
            return web.json_response({"error": "unknown job"}, status=404)
        try:
            payload = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError):
            return web.json_response({"error": "malformed JSON"}, status=400)
        if not isinstance(payload, dict):
            return web.json_response({"error": "malformed callback"}, status=400)
        task_id, result = parse_kie_callback(payload)

        problem = self._signature_problem(request, task_id)
        if problem is not None:
            log.warning("rejected kie callback for job %s: %s", job_id, problem)
            return web.json_response({"error": "unauthorized"}, status=401)

        job = await self._jobs.get(job_id)
        if job is None or job.provider is not ProviderName.KIE:
            return web.json_response({"error": "unknown job"}, status=404)
        task_id = callback_task_id(job.mode, task_id)  # a 4K pass is called back by its source task's id
        if task_id and job.provider_task_id and job.provider_task_id != task_id:
            log.warning("kie callback for job %s names another task", job_id)
            return web.json_response({"error": "task does not belong to this job"}, status=409)
        if self._callbacks is None:
            return web.json_response({"error": "callbacks not accepted"}, status=503)

        log.info("kie callback for job %s: %s", job_id, result.state.value)
        await self._callbacks.on_callback(job_id, task_id)
        return web.json_response({"ok": True})


async def start_http_server(
    settings: Settings,
    *,
    health: HealthChecks,
    callbacks: CallbackReceiver | None,
) -> OperatorsServer | None:
    """Start the server when HTTP_LISTEN is set; None (and nothing listening) otherwise."""
    if not settings.http_listen:
        return None
    host, port = parse_listen(settings.http_listen)
    server = OperatorsServer(settings=settings, health=health, callbacks=callbacks)
    await server.start(host, port)
    return server


__all__ = [
    "CallbackReceiver",
    "HealthChecks",
    "OperatorsServer",
    "heartbeat_from_metrics",
    "parse_listen",
    "start_http_server",
]
