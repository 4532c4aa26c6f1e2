"""The poller posts the audit outbox once per event; build_services wires everything to one database."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from bot.audit import AuditService
from bot.clock import FakeClock
from bot.delivery.base import DeliveryError
from storage.database import Database
from tests.jobs.support import RecordingPublisher, build_rig, make_settings


async def test_audit_events_are_posted_once_and_retried_on_failure(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    rig.poller.audit_service = AuditService(db, fake_clock)
    await db.execute("INSERT INTO guild_settings (guild_id, audit_channel_id, paused) VALUES (10, 555, 0)")
    job = await rig.create()

    async def failing_post(guild_id: int, channel_id: int, text: str, nonce: str) -> int:
        raise DeliveryError("discord 502", retryable=True, retry_after=50)

    posted = rig.publisher.post_audit
    rig.publisher.post_audit = failing_post  # type: ignore[method-assign]
    await rig.poller.run_once()
    row = await db.fetchone("SELECT attempts, posted_at, next_attempt_at FROM audit_events WHERE job_id = ?", (job.id,))
    assert row["posted_at"] is None and row["attempts"] == 1 and row["next_attempt_at"] >= fake_clock.now() + 50

    rig.publisher.post_audit = posted  # type: ignore[method-assign]
    fake_clock.advance(60)
    await rig.poller.run_once()
    await rig.poller.run_once()
    assert [(g, c, n) for g, c, _, n in rig.publisher.audits] == [(10, 555, "fc-audit-1")]
    assert "started job" in rig.publisher.audits[0][2]


async def test_build_services_wires_one_database(tmp_path: Path, fake_clock: FakeClock,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        import bot.moderation.policy  # noqa: F401
    except ModuleNotFoundError:  # built alongside; until it lands, a stand-in with the same constructor shape
        stand_in = types.ModuleType("bot.moderation.policy")

        class PolicyService:
            def __init__(self, db: Database, store: object) -> None:
                self.db, self.store = db, store

        stand_in.PolicyService = PolicyService  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "bot.moderation.policy", stand_in)
    from bot.services import build_services

    settings = make_settings(kie_api_key="k", database_url=f"sqlite:///{tmp_path / 'svc' / 'bot.db'}")
    services = await build_services(settings, RecordingPublisher(), clock=fake_clock, instance_id="svc-1")
    try:
        assert services.poller.owner == "svc-1"
        assert services.jobs.db is services.db and services.poller.db is services.db
        assert (tmp_path / "svc" / "bot.db").exists()
        assert services.jobs.available_providers() == set(services.providers) != set()
        assert services.policy is services.jobs.policy and services.quota is services.poller.quota
        assert await services.poller.run_once() == 0
    finally:
        await services.aclose()
