"""Crashes, lost answers and two processes on one database: nothing is sent, charged or posted twice."""

from __future__ import annotations

import asyncio

from bot.clock import FakeClock
from bot.jobs.models import DeliveryState, JobRecord, JobStatus
from bot.jobs.poller import Poller
from bot.jobs.submission import LOST_SUBMIT_MESSAGE
from bot.providers.base import ErrorKind, PollResult, ProviderError
from bot.validation import JobSpec
from storage.database import Database, open_database
from tests.jobs.support import build_rig


async def test_row_left_in_submitting_becomes_uncertain_and_is_never_resent(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    # A process claimed the job, committed `submitting`, and was SIGKILLed before the answer came.
    await db.execute("UPDATE jobs SET status = 'submitting', submit_attempts = 1, lease_owner = 'dead',"
                     " lease_until = ? WHERE id = ?", (fake_clock.now() + 120, job.id))
    await rig.poller.run_once()
    assert (await rig.job(job.id)).status is JobStatus.SUBMITTING  # the dead lease is respected until it ends
    fake_clock.advance(121)
    await rig.poller.run_once()
    assert (await rig.job(job.id)).status is JobStatus.UNCERTAIN

    async def finished() -> bool:
        return (await rig.job(job.id)).delivery_state is DeliveryState.DELIVERED

    waited = await rig.run_until(finished, step=60)
    assert waited <= rig.settings.uncertain_submit_grace_seconds + 60
    done = await rig.job(job.id)
    assert done.status is JobStatus.FAILED and done.error_message == LOST_SUBMIT_MESSAGE
    assert rig.providers[job.provider].submits == []  # never resent
    assert await rig.ledger(job.id) == ["hold", "release"]
    assert "did not resend" in rig.publisher.delivered[0][1].content


async def test_uncertain_submit_waits_then_fails_plainly(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    provider = rig.providers[job.provider]
    provider.submit_script.append(ProviderError(ErrorKind.UNCERTAIN, "The vendor did not answer in time."))
    await rig.poller.run_once()
    assert (await rig.job(job.id)).status is JobStatus.UNCERTAIN
    fake_clock.advance(rig.settings.uncertain_submit_grace_seconds - 1)
    await rig.poller.run_once()
    assert (await rig.job(job.id)).status is JobStatus.UNCERTAIN
    fake_clock.advance(2)
    await rig.poller.run_once()
    assert (await rig.job(job.id)).status is JobStatus.FAILED
    assert len(provider.submits) == 1
    assert await rig.ledger(job.id) == ["hold", "release"]


async def test_callback_reveals_the_task_of_an_uncertain_job(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=30)
    job = await rig.create()
    provider = rig.providers[job.provider]
    provider.submit_script.append(ProviderError(ErrorKind.UNCERTAIN, "timeout"))
    await rig.poller.run_once()
    provider.tasks["kie-task-lost"] = fake_clock.now()  # the vendor did create it, and it is done
    assert await rig.poller.on_callback(job.id, "kie-task-lost")
    recorded = await rig.job(job.id)
    assert recorded.status is JobStatus.RUNNING and recorded.provider_task_id == "kie-task-lost"
    assert recorded.next_due_at == fake_clock.now()  # confirmed right away
    await rig.poller.run_once()
    done = await rig.job(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.delivery_state is DeliveryState.DELIVERED
    assert await rig.ledger(job.id) == ["hold", "charge"]
    assert len(provider.submits) == 1


async def test_callback_makes_a_running_job_due_now(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=30)
    job = await rig.create()
    await rig.poller.run_once()
    running = await rig.job(job.id)
    assert running.next_due_at is not None and running.next_due_at > fake_clock.now()
    assert not await rig.poller.on_callback(job.id, "someone-else's-task")
    assert await rig.poller.on_callback(job.id, running.provider_task_id)
    assert (await rig.job(job.id)).next_due_at == fake_clock.now()
    assert not await rig.poller.on_callback(987654, "x")


async def test_callback_that_loses_the_race_to_the_submit_answer_still_makes_the_job_due_now(
        db: Database, fake_clock: FakeClock) -> None:
    """kie.ai can call back before its submit answer is read. If that answer records the task between the
    callback's read of the job (submitting) and its own write, the callback must still bring the first
    poll forward; before, it was dropped and the member waited for the sparse callback-job schedule."""
    rig = build_rig(db, fake_clock, duration=0)
    job = await rig.create()
    provider = rig.providers[job.provider]
    provider.submit_gate = asyncio.Event()
    submitting = asyncio.create_task(rig.poller.run_once())
    while not provider.submits:  # the submit is on the wire, the row says `submitting`
        await asyncio.sleep(0.01)
    record = rig.poller.submission.record_task_id

    async def submit_answer_wins(stale: JobRecord, task_id: str, *, owned: bool) -> bool:
        if not owned:  # the callback read `submitting`; now the submit's answer lands first
            provider.submit_gate.set()
            await asyncio.wait_for(submitting, timeout=10)
        return await record(stale, task_id, owned=owned)

    rig.poller.submission.record_task_id = submit_answer_wins  # type: ignore[method-assign]
    assert await rig.poller.on_callback(job.id, "kie-task-1")
    running = await rig.job(job.id)
    assert running.status is JobStatus.RUNNING and running.provider_task_id == "kie-task-1"
    assert running.next_due_at == fake_clock.now()
    await rig.poller.run_once()
    assert (await rig.job(job.id)).delivery_state is DeliveryState.DELIVERED
    assert len(provider.submits) == 1


async def test_late_submit_answer_is_recorded_after_another_process_marked_it_uncertain(
        db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    provider = rig.providers[job.provider]
    provider.submit_gate = asyncio.Event()
    slow = asyncio.create_task(rig.poller.run_once())
    while not provider.submits:  # the submit is in flight, its lease committed
        await asyncio.sleep(0.01)
    fake_clock.advance(rig.settings.lease_seconds + 1)
    other = Poller(settings=rig.settings, db=db, clock=fake_clock, providers=rig.providers, quota=rig.poller.quota,
                   publisher=rig.publisher, instance_id="poller-b")
    await other.run_once()
    assert (await rig.job(job.id)).status is JobStatus.UNCERTAIN
    provider.submit_gate.set()
    await asyncio.wait_for(slow, timeout=10)
    late = await rig.job(job.id)
    assert late.status is JobStatus.RUNNING and late.provider_task_id == "kie-task-1"
    assert len(provider.submits) == 1


async def test_retryable_submit_requeues_and_honours_retry_after(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    provider = rig.providers[job.provider]
    provider.submit_script.append(ProviderError(ErrorKind.RETRYABLE, "busy", retry_after=42.0, status_code=429))
    await rig.poller.run_once()
    queued = await rig.job(job.id)
    assert queued.status is JobStatus.QUEUED and queued.submit_attempts == 1
    assert queued.next_due_at is not None and queued.next_due_at >= fake_clock.now() + 42
    fake_clock.advance(41)
    await rig.poller.run_once()
    assert len(provider.submits) == 1
    fake_clock.advance(2)
    await rig.poller.run_once()
    again = await rig.job(job.id)
    assert again.status is JobStatus.RUNNING and again.submit_attempts == 2 and len(provider.submits) == 2


async def test_two_pollers_on_one_database_never_double_submit_or_post(database_url: str,
                                                                       fake_clock: FakeClock) -> None:
    first_db, second_db = await open_database(database_url), await open_database(database_url)
    try:
        rig = build_rig(first_db, fake_clock, duration=45, batch_size=3)
        second = Poller(settings=rig.settings, db=second_db, clock=fake_clock, providers=rig.providers,
                        quota=rig.poller.quota, publisher=rig.publisher,
                        instance_id="poller-b", batch_size=3)
        handled: dict[str, int] = {"poller-a": 0, "poller-b": 0}
        for poller in (rig.poller, second):
            original = poller.process

            async def counted(job, original=original, owner=poller.owner):  # type: ignore[no-untyped-def]
                handled[owner] += 1
                await asyncio.sleep(0)  # let the other process interleave
                await original(job)

            poller.process = counted  # type: ignore[method-assign]
        jobs = [await rig.create(f"scene {n}") for n in range(12)]

        async def all_delivered() -> bool:
            rows = await first_db.fetchall("SELECT COUNT(*) AS n FROM jobs WHERE delivery_state = 'delivered'")
            return rows[0]["n"] == len(jobs)

        await rig.run_until(all_delivered, step=2, pollers=[rig.poller, second])
        assert handled["poller-a"] > 0 and handled["poller-b"] > 0  # both really worked the queue
        submitted = [spec.prompt for provider in rig.providers.values() for spec in provider.submits]
        assert sorted(submitted) == sorted(j.prompt for j in jobs)
        delivered_ids = [job_id for job_id, _ in rig.publisher.delivered]
        assert sorted(delivered_ids) == sorted(j.id for j in jobs)
        settles = await first_db.fetchall("SELECT job_id, COUNT(*) AS n FROM credit_ledger"
                                          " WHERE kind = 'charge' GROUP BY job_id")
        assert len(settles) == len(jobs) and all(r["n"] == 1 for r in settles)
    finally:
        await first_db.close()
        await second_db.close()


async def test_stop_does_not_wait_out_a_slow_submit_and_the_job_is_never_resent(
        db: Database, fake_clock: FakeClock) -> None:
    """A clean stop must beat the supervisor's kill timeout; the submit it cancels is reconciled, not resent."""
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    provider = rig.providers[job.provider]
    provider.submit_gate = asyncio.Event()  # the vendor never answers
    rig.poller.start()
    while not provider.submits:
        await asyncio.sleep(0.01)
    await asyncio.wait_for(rig.poller.stop(grace=0.05), timeout=5)
    assert (await rig.job(job.id)).status is JobStatus.SUBMITTING

    restarted = Poller(settings=rig.settings, db=db, clock=fake_clock, providers=rig.providers, quota=rig.poller.quota,
                       publisher=rig.publisher, instance_id="after-restart")
    fake_clock.advance(rig.settings.lease_seconds + 1)
    await restarted.run_once()
    assert (await rig.job(job.id)).status is JobStatus.UNCERTAIN
    assert len(provider.submits) == 1


async def test_a_callback_while_a_poll_of_the_job_is_in_flight_is_not_lost(db: Database, fake_clock: FakeClock) -> None:
    """The vendor answered the poll "running", then finished and called back before that answer was
    handled: the poll's plan ("look again later") must not bury the callback. The job stays due at
    once and is delivered on the next pass, not at the plan's next look minutes later."""
    rig = build_rig(db, fake_clock)
    job = await rig.create()
    await rig.poller.run_once()  # submitted
    running = await rig.job(job.id)
    assert running.status is JobStatus.RUNNING and running.next_due_at is not None
    fake_clock.advance(running.next_due_at - fake_clock.now())
    provider, task_id = rig.providers[job.provider], running.provider_task_id
    assert task_id is not None
    answered, handled = asyncio.Event(), asyncio.Event()
    vendor_poll = provider.poll

    async def answer_then_wait(task: str, spec: JobSpec) -> PollResult:
        result = await vendor_poll(task, spec)  # still running when the vendor answers
        answered.set()
        await handled.wait()
        return result

    provider.poll = answer_then_wait  # type: ignore[method-assign]
    polling = asyncio.create_task(rig.poller.run_once())
    await asyncio.wait_for(answered.wait(), timeout=10)
    provider.tasks[task_id] = fake_clock.now()  # the vendor finishes...
    assert await rig.poller.on_callback(job.id, task_id)  # ...and calls back, while our poll is in flight
    handled.set()
    await asyncio.wait_for(polling, timeout=10)
    provider.poll = vendor_poll  # type: ignore[method-assign]
    await rig.poller.run_once()  # the clock has not moved: only a job still due is looked at
    done = await rig.job(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.delivery_state is DeliveryState.DELIVERED
    assert provider.polls == [task_id, task_id]
