"""The operators' HTTP server over real loopback HTTP: health, metrics, kie.ai callbacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from bot import metrics
from bot.clock import FakeClock
from bot.http_server import (
    HealthChecks,
    OperatorsServer,
    parse_listen,
    start_http_server,
)
from bot.settings import Settings
from bot.jobs.submission import callback_url_for
from fakes.settings import make_settings
from storage.database import Database, insert_row

HMAC_KEY = "webhook-test-key"


@dataclass
class RecordingReceiver:
    """Stands in for the poller: records what the server asked of it."""

    calls: list[tuple[int, str | None]] = field(default_factory=list)

    async def on_callback(self, job_id: int, task_id: str | None) -> bool:
        self.calls.append((job_id, task_id))
        return True


@dataclass
class Harness:
    base_url: str
    http: aiohttp.ClientSession
    receiver: RecordingReceiver
    clock: FakeClock
    state: dict[str, Any]
    db: Database


async def insert_job(
    db: Database, *, provider: str = "kie", family: str = "veo", status: str = "running",
    task_id: str | None = "task-1", next_due_at: float | None = 2_000_000_000.0, mode: str = "text",
) -> int:
    async with db.transaction() as conn:
        return await insert_row(
            conn,
            "INSERT INTO jobs (guild_id, channel_id, user_id, family, model_key, provider, mode, prompt,"
            " request_json, status, provider_task_id, created_at, next_due_at)"
            " VALUES (1, 2, 3, ?, 'veo-fast-kie', ?, ?, 'a cat', '{}', ?, ?, 1.0, ?)",
            (family, provider, mode, status, task_id, next_due_at),
        )


async def start(
    db: Database, *, settings: Settings, poller_max_age: float = 60.0, probe_timeout: float = 5.0
) -> tuple[OperatorsServer, Harness]:
    clock = FakeClock()
    state: dict[str, Any] = {"gateway": True, "ready": True, "last_tick": clock.now()}
    receiver = RecordingReceiver()
    health = HealthChecks(
        database=db,
        gateway_connected=lambda: state["gateway"],
        ready=lambda: state["ready"],
        poller_last_tick=lambda: state["last_tick"],
        poller_max_age_seconds=poller_max_age,
        database_probe_timeout_seconds=probe_timeout,
        clock=clock,
    )
    server = OperatorsServer(settings=settings, health=health, callbacks=receiver)
    addresses = await server.start("127.0.0.1", 0)
    host, port = addresses[0][:2]
    http = aiohttp.ClientSession()
    return server, Harness(f"http://{host}:{port}", http, receiver, clock, state, db)


@pytest.fixture
async def harness(db: Database) -> AsyncIterator[Harness]:
    server, h = await start(db, settings=make_settings(kie_webhook_hmac_key=HMAC_KEY))
    try:
        yield h
    finally:
        await h.http.close()
        await server.stop()


def sign(task_id: str, timestamp: str, key: str = HMAC_KEY) -> str:
    digest = hmac.new(key.encode(), f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def kie_success_body(task_id: str) -> dict[str, Any]:
    return {
        "code": 200, "msg": "success",
        "data": {"taskId": task_id, "info": {"resultUrls": ["https://cdn.example/v.mp4"],
                                             "originUrls": [], "resolution": "720p"}, "fallbackFlag": False},
    }


async def post_callback(
    h: Harness, job_id: int | str, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None,
) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    async with h.http.post(f"{h.base_url}/callbacks/kie/{job_id}", data=data,
                           headers={"Content-Type": "application/json", **(headers or {})}) as response:
        return response.status, await response.json(content_type=None)


async def job_row(db: Database, job_id: int) -> dict[str, Any]:
    row = await db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
    assert row is not None
    return dict(row)


# --- /healthz -------------------------------------------------------------------------------------

async def get_health(h: Harness) -> tuple[int, dict[str, Any]]:
    async with h.http.get(f"{h.base_url}/healthz") as response:
        return response.status, await response.json()


async def test_health_is_200_when_everything_is_fine(harness: Harness) -> None:
    status, body = await get_health(harness)
    assert status == 200
    assert body["ready"] and body["gateway_connected"] and body["database_writable"] and body["poller_alive"]
    assert body["healthy"] is True


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        (lambda s, c: s.update(gateway=False), "gateway_connected"),
        (lambda s, c: s.update(ready=False), "ready"),
        (lambda s, c: s.update(last_tick=None), "poller_alive"),
        (lambda s, c: c.advance(61.0), "poller_alive"),  # last tick older than the allowed age
    ],
)
async def test_health_is_503_when_one_check_fails(
    harness: Harness, change: Callable[[dict[str, Any], FakeClock], None], failing: str,
) -> None:
    change(harness.state, harness.clock)
    status, body = await get_health(harness)
    assert status == 503
    assert body[failing] is False
    assert body["healthy"] is False
    others = {"ready", "gateway_connected", "database_writable", "poller_alive"} - {failing}
    assert all(body[name] for name in others)


@pytest.mark.sqlite_only  # SQLite's single write lock; PostgreSQL has no such thing to hold
async def test_database_held_by_another_writer_is_not_writable_then_recovers(db: Database) -> None:
    server, h = await start(db, settings=make_settings(), probe_timeout=0.2)
    other = sqlite3.connect(db.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        status, body = await get_health(h)
        assert status == 503 and body["database_writable"] is False
        other.execute("ROLLBACK")
        # The timed-out probe finishes on its own; the writer must not be left inside a transaction.
        h_ok = False
        for _ in range(100):
            status, body = await get_health(h)
            if status == 200:
                h_ok = True
                break
        assert h_ok, body
        job_id = await insert_job(db)  # a normal write still works afterwards
        assert job_id > 0
    finally:
        other.close()
        await h.http.close()
        await server.stop()


# --- /metrics -------------------------------------------------------------------------------------

async def test_metrics_serves_the_registry_with_jobs_counted_from_the_database(harness: Harness) -> None:
    await insert_job(harness.db, task_id="a")
    await insert_job(harness.db, task_id="b")
    await insert_job(harness.db, task_id="c", provider="kling", family="kling", status="succeeded",
                     next_due_at=None)
    metrics.POLLER_HEARTBEAT.set(1234.0)
    async with harness.http.get(f"{harness.base_url}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        text = await response.text()
    assert 'framecast_jobs{family="veo",state="running"} 2.0' in text
    assert 'framecast_jobs{family="kling",state="succeeded"} 1.0' in text
    assert "framecast_poller_heartbeat_timestamp 1234.0" in text
    assert "# TYPE framecast_vendor_requests_total counter" in text


# --- /callbacks/kie/{job_id} ----------------------------------------------------------------------

async def test_signed_callback_asks_the_poller_for_a_confirming_check(harness: Harness) -> None:
    job_id = await insert_job(harness.db, task_id="task-ok")
    timestamp = str(int(harness.clock.now()))
    status, body = await post_callback(
        harness, job_id, kie_success_body("task-ok"),
        {"X-Webhook-Timestamp": timestamp, "X-Webhook-Signature": sign("task-ok", timestamp)},
    )
    assert status == 200, body
    assert harness.receiver.calls == [(job_id, "task-ok")]


async def test_a_4k_pass_is_called_back_under_its_source_task(harness: Harness) -> None:
    """kie names the source task in a 4K callback (and signs that id); the job holds "4k:<id>"."""
    job_id = await insert_job(harness.db, task_id="4k:task-src", mode="upscale_4k")
    timestamp = str(int(harness.clock.now()))
    status, body = await post_callback(
        harness, job_id, kie_success_body("task-src"),
        {"X-Webhook-Timestamp": timestamp, "X-Webhook-Signature": sign("task-src", timestamp)},
    )
    assert status == 200, body
    assert harness.receiver.calls == [(job_id, "4k:task-src")]


async def test_millisecond_timestamps_are_accepted(harness: Harness) -> None:
    job_id = await insert_job(harness.db, task_id="task-ms")
    timestamp = str(int(harness.clock.now() * 1000))
    status, _ = await post_callback(
        harness, job_id, kie_success_body("task-ms"),
        {"X-Webhook-Timestamp": timestamp, "X-Webhook-Signature": sign("task-ms", timestamp)},
    )
    assert status == 200
    assert harness.receiver.calls == [(job_id, "task-ms")]


@pytest.mark.parametrize(
    "headers_for",
    [
        pytest.param(lambda ts: {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": sign("task-x", ts, "wrong")},
                     id="wrong-key"),
        pytest.param(lambda ts: {"X-Webhook-Timestamp": ts, "X-Webhook-Signature": sign("other-task", ts)},
                     id="signed-another-task"),
        pytest.param(lambda ts: {"X-Webhook-Timestamp": str(int(ts) + 1), "X-Webhook-Signature": sign("task-x", ts)},
                     id="timestamp-altered"),
        pytest.param(lambda ts: {"X-Webhook-Timestamp": ts}, id="signature-missing"),
        pytest.param(lambda ts: {}, id="no-headers"),
        pytest.param(lambda ts: {"X-Webhook-Timestamp": str(int(ts) - 601),
                                 "X-Webhook-Signature": sign("task-x", str(int(ts) - 601))}, id="stale"),
        pytest.param(lambda ts: {"X-Webhook-Timestamp": "soon", "X-Webhook-Signature": sign("task-x", "soon")},
                     id="unreadable-timestamp"),
    ],
)
async def test_callback_without_a_valid_signature_is_rejected_and_changes_nothing(
    harness: Harness, headers_for: Callable[[str], dict[str, str]],
) -> None:
    job_id = await insert_job(harness.db, task_id="task-x")
    before = await job_row(harness.db, job_id)
    status, _ = await post_callback(harness, job_id, kie_success_body("task-x"),
                                    headers_for(str(int(harness.clock.now()))))
    assert status == 401
    assert harness.receiver.calls == []
    assert await job_row(harness.db, job_id) == before


async def test_callback_for_an_unknown_job_is_404(harness: Harness) -> None:
    timestamp = str(int(harness.clock.now()))
    headers = {"X-Webhook-Timestamp": timestamp, "X-Webhook-Signature": sign("task-1", timestamp)}
    assert (await post_callback(harness, 999, kie_success_body("task-1"), headers))[0] == 404
    assert (await post_callback(harness, "not-a-number", kie_success_body("task-1"), headers))[0] == 404
    kling_job = await insert_job(harness.db, provider="kling", family="kling", task_id="task-1")
    assert (await post_callback(harness, kling_job, kie_success_body("task-1"), headers))[0] == 404
    assert harness.receiver.calls == []


async def test_callback_naming_another_jobs_task_is_refused(harness: Harness) -> None:
    job_id = await insert_job(harness.db, task_id="task-mine")
    timestamp = str(int(harness.clock.now()))
    status, _ = await post_callback(
        harness, job_id, kie_success_body("task-theirs"),
        {"X-Webhook-Timestamp": timestamp, "X-Webhook-Signature": sign("task-theirs", timestamp)},
    )
    assert status == 409
    assert harness.receiver.calls == []


async def test_malformed_callback_body_is_400(harness: Harness) -> None:
    job_id = await insert_job(harness.db)
    assert (await post_callback(harness, job_id, None, raw=b"{not json"))[0] == 400
    assert (await post_callback(harness, job_id, ["a", "list"]))[0] == 400
    assert harness.receiver.calls == []


async def test_without_a_key_an_unsigned_callback_is_accepted_for_an_uncertain_job(db: Database) -> None:
    server, h = await start(db, settings=make_settings())
    try:
        job_id = await insert_job(db, status="uncertain", task_id=None)
        status, _ = await post_callback(h, job_id, kie_success_body("task-late"))
        assert status == 200
        assert h.receiver.calls == [(job_id, "task-late")]
    finally:
        await h.http.close()
        await server.stop()


# --- helpers --------------------------------------------------------------------------------------

def test_callback_url_follows_the_public_base_url() -> None:
    assert callback_url_for(make_settings(), 7) is None
    settings = make_settings(public_base_url="https://bot.example.org/hooks/")
    assert callback_url_for(settings, 7) == "https://bot.example.org/hooks/callbacks/kie/7"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("127.0.0.1:8080", ("127.0.0.1", 8080)), (":9000", ("0.0.0.0", 9000)), ("[::1]:81", ("::1", 81))],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["8080", "host:", "host:http", "host:70000"])
def test_parse_listen_rejects_nonsense(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(value)


async def test_server_starts_only_when_http_listen_is_set(db: Database) -> None:
    health = HealthChecks(database=db, gateway_connected=lambda: True)
    assert await start_http_server(make_settings(), health=health, callbacks=None) is None
    server = await start_http_server(make_settings(http_listen="127.0.0.1:0"), health=health, callbacks=None)
    assert server is not None
    await server.stop()
