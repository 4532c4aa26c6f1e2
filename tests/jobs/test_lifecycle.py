"""A job from creation to the delivered result, on a real SQLite file and a fake clock."""

from __future__ import annotations

from bot.audit import AuditService
from bot.clock import FakeClock
from bot.publishing.base import DeliveryError
from bot.errors import Refusal
from bot.jobs.outbox import MAX_FINAL_DELIVERY_ATTEMPTS
from bot.jobs.models import DeliveryState, JobStatus
from storage.jobs import JobRepository
from bot.jobs.schedule import PollSchedule
from bot.providers.base import ErrorKind, PollResult, ProviderError, TaskState
from storage.database import Database, change_rows
from tests.jobs.support import REQUESTER, build_rig


async def test_success_is_charged_once_and_delivered_once(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=120)
    job = await rig.create("a cat surfing @everyone")
    assert job.status is JobStatus.QUEUED
    assert await rig.ledger(job.id) == ["hold"]  # written with the row, before any vendor call
    provider = rig.providers[job.provider]
    assert provider.submits == []

    await rig.poller.run_once()
    running = await rig.job(job.id)
    assert running.status is JobStatus.RUNNING and running.provider_task_id
    assert running.submit_attempts == 1 and running.lease_owner is None

    async def delivered() -> bool:
        return (await rig.job(job.id)).delivery_state is DeliveryState.DELIVERED

    await rig.run_until(delivered)
    done = await rig.job(job.id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.video_url and done.video_url.endswith(".mp4")
    assert done.result_message_id is not None and done.next_due_at is None
    assert await rig.ledger(job.id) == ["hold", "charge"]
    assert len(provider.submits) == 1
    assert 1 <= done.poll_count <= 10
    # A few more ticks change nothing: no second post, no second charge.
    for _ in range(3):
        fake_clock.advance(60)
        await rig.poller.run_once()
    assert len(rig.publisher.delivered) == 1
    assert await rig.ledger(job.id) == ["hold", "charge"]
    job_id, message = rig.publisher.delivered[0]
    assert job_id == job.id and message.outcome is JobStatus.SUCCEEDED
    assert f"<@{REQUESTER.user_id}>" in message.content and done.video_url in message.content
    assert "@everyone" not in message.content  # member text never pings
    assert message.mention_user_id == REQUESTER.user_id and message.nonce == f"fc-job-{job.id}"
    kinds = [r["kind"] for r in await db.fetchall("SELECT kind FROM audit_events WHERE job_id = ? ORDER BY id",
                                                  (job.id,))]
    assert kinds == ["job_created", "job_succeeded"]


async def test_vendor_failure_releases_and_explains(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=60)
    job = await rig.create()
    provider = rig.providers[job.provider]
    provider.outcome = TaskState.FAILED
    provider.error_message = "The prompt was flagged by the content filter."

    async def finished() -> bool:
        return (await rig.job(job.id)).delivery_state is DeliveryState.DELIVERED

    await rig.run_until(finished)
    done = await rig.job(job.id)
    assert done.status is JobStatus.FAILED
    assert await rig.ledger(job.id) == ["hold", "release"]
    message = rig.publisher.delivered[0][1]
    assert message.outcome is JobStatus.FAILED and "content filter" in message.content


async def test_final_submit_error_fails_without_polling(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    provider = rig.providers[job.provider]
    provider.submit_script.append(ProviderError(ErrorKind.FINAL, "Your prompt was refused by the vendor."))
    await rig.poller.run_once()
    done = await rig.job(job.id)
    assert done.status is JobStatus.FAILED and done.delivery_state is DeliveryState.DELIVERED
    assert provider.polls == []
    assert await rig.ledger(job.id) == ["hold", "release"]
    assert "refused by the vendor" in rig.publisher.delivered[0][1].content


async def test_success_without_a_link_is_a_failure(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    await rig.poller.run_once()
    rig.providers[job.provider].poll_script.append(PollResult(state=TaskState.SUCCEEDED, raw_status="completed"))
    fake_clock.advance(3600 * 0 + 500)
    await rig.poller.run_once()
    done = await rig.job(job.id)
    assert done.status is JobStatus.FAILED and await rig.ledger(job.id) == ["hold", "release"]


async def test_deadline_times_out_and_releases(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=10_000_000)
    job = await rig.create()

    async def over() -> bool:
        return (await rig.job(job.id)).is_terminal

    waited = await rig.run_until(over, step=30, limit=3 * 3600)
    done = await rig.job(job.id)
    assert done.status is JobStatus.TIMED_OUT
    assert waited <= 20 * 60 + 120  # veo fast: 20 minutes from submit, noticed promptly
    assert await rig.ledger(job.id) == ["hold", "release"]
    assert rig.publisher.delivered[0][1].outcome is JobStatus.TIMED_OUT
    assert done.poll_count <= 40


async def test_delivery_failure_keeps_job_pending_until_a_message_exists(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=60)
    rig.publisher.faults = [DeliveryError("discord 503", retryable=True, retry_after=30.0),
                              DeliveryError("discord 503", retryable=True)]
    job = await rig.create()

    async def vendor_done() -> bool:
        return (await rig.job(job.id)).is_terminal

    await rig.run_until(vendor_done)
    pending = await rig.job(job.id)
    assert pending.status is JobStatus.SUCCEEDED and pending.delivery_state is DeliveryState.PENDING
    assert pending.result_message_id is None and pending.delivery_attempts == 1
    assert pending.next_due_at is not None and pending.next_due_at >= fake_clock.now() + 30  # Retry-After

    async def delivered() -> bool:
        return (await rig.job(job.id)).delivery_state is DeliveryState.DELIVERED

    await rig.run_until(delivered, step=5)
    assert rig.publisher.attempts == [job.id] * 3
    assert len(rig.publisher.delivered) == 1
    assert await rig.ledger(job.id) == ["hold", "charge"]


async def test_cancel_releases_and_tells_the_member(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    await rig.poller.run_once()
    cancelled = await rig.jobs.cancel_job(REQUESTER.guild_id, job.id, actor_id=99)
    assert cancelled.status is JobStatus.CANCELLED
    assert await rig.ledger(job.id) == ["hold", "release"]
    await rig.poller.run_once()
    assert rig.publisher.delivered[0][1].outcome is JobStatus.CANCELLED
    assert (await rig.job(job.id)).delivery_state is DeliveryState.DELIVERED
    try:
        await rig.jobs.cancel_job(REQUESTER.guild_id, job.id, actor_id=99)
    except Refusal as refusal:
        assert refusal.kind == "finished"
    else:
        raise AssertionError("a finished job cannot be cancelled twice")
    try:
        await rig.jobs.cancel_job(REQUESTER.guild_id + 1, job.id, actor_id=99)
    except Refusal as refusal:
        assert refusal.kind == "not_found"
    else:
        raise AssertionError("another server's job is not found")


async def test_lists_are_scoped_by_guild_and_user(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    mine = await rig.create()
    other_user = await rig.create(requester=REQUESTER.__class__(guild_id=10, channel_id=20, user_id=31))
    other_guild = await rig.create(requester=REQUESTER.__class__(guild_id=11, channel_id=21, user_id=30))
    assert [j.id for j in await rig.jobs.list_jobs(10, 30)] == [mine.id]
    assert await rig.jobs.get_job(10, other_guild.id) is None
    assert (await rig.jobs.get_job(10, other_user.id)) is not None
    await rig.jobs.attach_destination(mine.id, channel_id=20, thread_id=77, summary_message_id=78)
    assert (await rig.job(mine.id)).thread_id == 77


async def test_the_vendors_own_duration_dates_the_finish_not_our_late_look(db: Database, fake_clock: FakeClock) -> None:
    # The schedule learns from vendor_done_at, so "when we happened to look" would bias it late.
    # Polled in order, as the script below expects: one at a time, all due at one instant (jobs of a
    # kind may follow different plans of a pair, or get an exploratory poll).
    schedule = PollSchedule(JobRepository(db), fake_clock)
    rig = build_rig(db, fake_clock, duration=120, max_concurrency=1, schedule=schedule)
    dated, undated, absurd = [await rig.create(f"clip {n}") for n in range(3)]
    await rig.poller.run_once()  # all three submitted at this instant
    submitted = (await rig.job(dated.id)).submitted_at
    assert submitted is not None
    fake_clock.advance(150)  # we look 150 s in; the vendor says it took 123.5 s
    async with db.transaction() as conn:
        await change_rows(conn, "UPDATE jobs SET next_due_at = ?", (fake_clock.now() - 1,))
    provider = rig.providers[dated.provider]
    provider.poll_script = [
        PollResult(state=TaskState.SUCCEEDED, raw_status="completed", video_url="https://cdn.example/a.mp4",
                   vendor_seconds=123.5),
        PollResult(state=TaskState.FAILED, raw_status="failed", error_message="rejected"),
        PollResult(state=TaskState.SUCCEEDED, raw_status="completed", video_url="https://cdn.example/c.mp4",
                   vendor_seconds=400.0),  # a vendor clock that ran fast: never later than now
    ]
    await rig.poller.run_once()
    assert (await rig.job(dated.id)).vendor_done_at == submitted + 123.5
    assert (await rig.job(undated.id)).vendor_done_at == fake_clock.now()
    assert (await rig.job(absurd.id)).vendor_done_at == fake_clock.now()


async def test_a_result_discord_refuses_everywhere_is_handed_to_the_moderators(db: Database,
                                                                              fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=60, audit_service=AuditService(db, fake_clock))
    rig.publisher.faults = [DeliveryError("thread, channel and DM all refused: Missing Access", retryable=False)
                              for _ in range(MAX_FINAL_DELIVERY_ATTEMPTS)]
    job = await rig.create()

    async def given_up() -> bool:
        current = await rig.job(job.id)
        return current.is_terminal and current.next_due_at is None

    await rig.run_until(given_up, step=60)
    done = await rig.job(job.id)
    assert done.delivery_state is DeliveryState.PENDING and done.delivery_attempts == MAX_FINAL_DELIVERY_ATTEMPTS
    rows = await db.fetchall("SELECT kind, text FROM audit_events WHERE job_id = ? ORDER BY id", (job.id,))
    assert [r["kind"] for r in rows] == ["job_created", "job_succeeded", "delivery_failed"]
    text = rows[-1]["text"]
    assert "Missing Access" in text and f"/job id:{job.id}" in text and done.video_url and done.video_url in text
