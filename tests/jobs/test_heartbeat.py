"""Rescue by heartbeat: a dead process's jobs move at once, a live one's are left alone, and a member
whose submit's outcome is unknown hears so at once, and again when it is settled."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from bot.clock import FakeClock
from bot.jobs.heartbeat import HEARTBEAT_SECONDS, HEARTBEAT_STALE_SECONDS
from bot.jobs.models import JobStatus
from bot.jobs.poller import Poller
from bot.jobs.submission import uncertain_notice
from fakes.publisher import RecordingPublisher
from storage.database import Database
from tests.jobs.support import REQUESTER, Rig, build_rig


def _other(rig: Rig, name: str) -> Poller:
    return Poller(settings=rig.settings, db=rig.db, clock=rig.clock, providers=rig.providers,
                  quota=rig.poller.quota, publisher=rig.publisher, instance_id=name)


async def _leave_in_submitting(rig: Rig, job_id: int, owner: str) -> None:
    """What a process SIGKILLed mid-submit leaves: `submitting`, its lease minutes from running out."""
    await rig.db.execute("UPDATE jobs SET status = 'submitting', submit_attempts = 1, lease_owner = ?,"
                         " lease_until = ? WHERE id = ?", (owner, rig.clock.now() + rig.settings.lease_seconds, job_id))


async def test_a_dead_owners_lease_is_taken_over_as_soon_as_its_heartbeat_is_stale(
        db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    dead = _other(rig, "poller-dead")
    await dead.heartbeat.beat()  # it was alive ...
    await _leave_in_submitting(rig, job.id, "poller-dead")  # ... and was killed mid-submit

    await rig.poller.heartbeat.beat()
    await rig.poller.run_once()
    assert (await rig.job(job.id)).status is JobStatus.SUBMITTING  # a fresh heartbeat: still its job
    fake_clock.advance(HEARTBEAT_STALE_SECONDS + 0.5)  # far inside the 180 s lease
    await rig.poller.run_once()
    moved = await rig.job(job.id)
    assert moved.status is JobStatus.UNCERTAIN  # never resent, and not left waiting out the lease
    assert rig.providers[job.provider].submits == []
    [(job_id, text, _)] = rig.publisher.notices  # the member hears at once what happened and what comes next
    assert job_id == job.id and "lost its answer" in text and "will not send it again" in text


async def test_a_live_owner_keeps_its_jobs_while_it_beats(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    live = _other(rig, "poller-live")
    await _leave_in_submitting(rig, job.id, "poller-live")
    for _ in range(5):
        await live.heartbeat.beat()
        await rig.poller.run_once()
        assert (await rig.job(job.id)).status is JobStatus.SUBMITTING
        fake_clock.advance(HEARTBEAT_SECONDS)
    assert rig.publisher.notices == []


async def test_an_owner_without_a_heartbeat_keeps_its_lease_until_it_runs_out(db: Database, fake_clock: FakeClock) -> None:
    """A process from before heartbeats (or a test's bare poller) is never presumed dead."""
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    await _leave_in_submitting(rig, job.id, "poller-old")
    fake_clock.advance(rig.settings.lease_seconds - 1)
    await rig.poller.run_once()
    assert (await rig.job(job.id)).status is JobStatus.SUBMITTING
    fake_clock.advance(2)
    await rig.poller.run_once()
    assert (await rig.job(job.id)).status is JobStatus.UNCERTAIN


async def test_a_cleanly_stopped_process_frees_what_it_held_at_once(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    provider = rig.providers[job.provider]
    provider.submit_gate = asyncio.Event()  # the vendor never answers
    rig.poller.start()
    while not provider.submits:
        await asyncio.sleep(0.01)
    await asyncio.wait_for(rig.poller.stop(grace=0.05), timeout=5)
    assert (await rig.poller.repository.heartbeats())["poller-a"] < rig.poller.heartbeat.stale_before()

    successor = _other(rig, "poller-next")
    await successor.heartbeat.beat()
    await successor.run_once()  # no clock advance: not a second of waiting
    assert (await rig.job(job.id)).status is JobStatus.UNCERTAIN
    assert len(provider.submits) == 1


async def test_the_member_hears_again_when_an_uncertain_submit_is_settled(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=30)
    job = await rig.create()
    await _other(rig, "poller-dead").heartbeat.beat()
    await _leave_in_submitting(rig, job.id, "poller-dead")
    fake_clock.advance(HEARTBEAT_STALE_SECONDS + 1)
    await rig.poller.run_once()
    assert (await rig.job(job.id)).status is JobStatus.UNCERTAIN
    rig.providers[job.provider].tasks["kie-task-late"] = fake_clock.now()
    assert await rig.poller.on_callback(job.id, "kie-task-late")  # the vendor's callback names the task
    await rig.poller.run_once()  # the outbox posts the queued notice
    assert [nonce.split("-")[-1] for _, _, nonce in rig.publisher.notices] == ["lost", "found"]
    assert "being made" in rig.publisher.notices[1][1]
    assert (await rig.job(job.id)).status is JobStatus.SUCCEEDED


async def test_heartbeats_of_long_gone_processes_are_forgotten(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    await _other(rig, "poller-gone").heartbeat.beat()
    fake_clock.advance(2 * 24 * 3600)
    await rig.poller.heartbeat.beat()
    assert set(await rig.poller.repository.heartbeats()) == {"poller-a"}


async def test_an_uncertain_submit_notice_waits_out_a_discord_outage_and_a_restart(
        db: Database, fake_clock: FakeClock) -> None:
    """Discord is down when the submit's answer is lost, and the process dies before it is back: the
    notice is kept on the job, and the next process posts it once, in the member's language."""
    rig = build_rig(db, fake_clock)
    job = await rig.create(requester=replace(REQUESTER, locale="es-ES"))
    await _other(rig, "poller-dead").heartbeat.beat()
    await _leave_in_submitting(rig, job.id, "poller-dead")
    fake_clock.advance(HEARTBEAT_STALE_SECONDS + 1)
    rig.publisher.notice_faults = ["503", "503"]
    await rig.poller.run_once()
    assert (await rig.job(job.id)).status is JobStatus.UNCERTAIN
    assert rig.publisher.notices == [] and rig.publisher.notice_faults == ["503"]  # tried once, Discord down

    restarted = RecordingPublisher()  # a new process: nothing in memory, Discord back
    successor = Poller(settings=rig.settings, db=rig.db, clock=rig.clock, providers=rig.providers,
                       quota=rig.poller.quota, publisher=restarted, instance_id="poller-next")
    await successor.run_once()
    assert restarted.notices == []  # not before its retry is due
    fake_clock.advance(rig.settings.poll_max_interval_seconds + 1)
    for _ in range(3):
        await successor.run_once()
        fake_clock.advance(1)
    [(job_id, text, nonce)] = restarted.notices
    assert job_id == job.id and nonce.endswith("-lost")
    assert "No la volveremos a enviar" in text and text != str(uncertain_notice(1))  # Spanish, not English
    assert await successor.repository.due_notices(fake_clock.now() + 10**6, 10) == []  # posted: not queued again


async def test_a_notice_no_place_accepts_is_given_up_not_retried_forever(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    await _other(rig, "poller-dead").heartbeat.beat()
    await _leave_in_submitting(rig, job.id, "poller-dead")
    fake_clock.advance(HEARTBEAT_STALE_SECONDS + 1)
    rig.publisher.notice_faults = ["gone"]
    await rig.poller.run_once()
    assert rig.publisher.notices == [] and rig.publisher.notice_faults == []
    assert await rig.poller.repository.due_notices(fake_clock.now() + 10**6, 10) == []
