"""The poller posts the audit outbox once per event; build_services wires everything to one database."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.audit import AuditService
from bot.catalog import Family
from bot.clock import FakeClock
from bot.publishing.base import DeliveryError
from bot.errors import Refusal
from bot.services import build_services
from bot.validation import GenerationRequest
from storage.database import Database
from tests.jobs.support import REQUESTER, RecordingPublisher, build_rig, make_settings


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


async def test_build_services_wires_one_database(tmp_path: Path, fake_clock: FakeClock) -> None:
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


async def test_every_refusal_reaches_the_audit_trail_and_names_when_credits_return(
        tmp_path: Path, fake_clock: FakeClock) -> None:
    """Budget, concurrency and policy refusals are audited (who, where, why); the early budget answer already
    says the cost, the balance and when credits come back, like the decision inside the job transaction."""
    settings = make_settings(kie_api_key="k", quota_daily_credits=5, quota_max_concurrent_jobs=5,
                             database_url=f"sqlite:///{tmp_path / 'bot.db'}")
    services = await build_services(settings, RecordingPublisher(), clock=fake_clock)
    try:
        fast = services.jobs.validate(GenerationRequest(family=Family.VEO, prompt="a fox", model="veo-fast-kie"))
        job = await services.jobs.create_job(REQUESTER, fast)
        async with services.db.transaction() as conn:
            await services.quota.settle_in(conn, job_id=job.id, charge=True, now=fake_clock.now())
        fake_clock.advance(60)
        await services.jobs.create_job(REQUESTER, fast)  # 4 of 5 credits used or held

        with pytest.raises(Refusal) as early:
            await services.jobs.precheck(REQUESTER, fast)
        assert early.value.kind == "budget"
        assert "costs 2 credits; you have 1 left" in early.value.user_message
        assert f"<t:{int(fake_clock.now() - 60 + 24 * 3600)}:R>" in early.value.user_message
        with pytest.raises(Refusal):
            await services.jobs.create_job(REQUESTER, fast)

        await services.guild_settings.set_family_enabled(REQUESTER.guild_id, "veo", False)
        with pytest.raises(Refusal) as family:
            await services.jobs.precheck(REQUESTER, fast)
        assert family.value.kind == "family"

        events = await services.audit.recent(REQUESTER.guild_id, 10)
        refusals = [e.text for e in events if e.kind.startswith("refused_")]
        assert len(refusals) == 3, refusals
        assert all(f"<@{REQUESTER.user_id}>" in t and f"<#{REQUESTER.channel_id}>" in t for t in refusals)
        assert sum("veo is turned off" in t for t in refusals) == 1
        created = [e.text for e in events if e.kind == "job_created"]
        assert len(created) == 2 and all("a fox" in t and f"<#{REQUESTER.channel_id}>" in t for t in created)
    finally:
        await services.aclose()


async def test_a_finished_job_is_audited_with_its_outcome_link_and_cost(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    for _ in range(40):  # the scripted vendor finishes after two minutes
        await rig.poller.run_once()
        fake_clock.advance(10)
    [text] = [row["text"] for row in await db.fetchall(
        "SELECT text FROM audit_events WHERE kind = 'job_succeeded' AND job_id = ?", (job.id,))]
    done = await rig.poller.repository.get(job.id)
    assert done is not None and done.video_url
    assert text.endswith(f"credits charged: {done.video_url}") and f"<@{job.user_id}>" in text
