"""Vendor faults against the real JobService + Poller + vendor clients, the loopback vendor fakes and SQLite.

Time is a FakeClock (the vendors' task clocks, the poll schedule, deadlines, the circuit breaker); only
HTTP timeouts are real, and kept short. Each test ends by checking every invariant in `support`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.catalog import Family, ProviderName, get_model
from bot.clock import FakeClock
from bot.http_server import HealthChecks, OperatorsServer
from bot.jobs.models import JobStatus
from bot.jobs.submission import LOST_SUBMIT_MESSAGE
from bot.jobs.service import Requester
from bot.validation import GenerationRequest
from storage.database import Database, open_database
from tests.e2e.harness import free_port
from fakes.vendors import Fault, Outcome
from tests.reliability.support import CHANNEL_ID, GUILD_ID, RigFactory

GRACE = 300.0


@pytest.fixture
async def factory(db: Database, fake_clock: FakeClock) -> AsyncIterator[RigFactory]:
    async with RigFactory(db, fake_clock) as made:
        yield made


# --- submits whose answer was lost: never resent ---------------------------------------------------------

LOST_SUBMIT_FAULTS = {
    "http-500": Fault.http(500, {"error": {"message": "internal"}}),
    "reset-after-send": Fault.reset(),
    "non-json-200": Fault.non_json(200),
    "answer-lost": Fault.lost_response(),
    "timeout": Fault.delay(2.5),  # longer than SUBMIT_TIMEOUT_SECONDS below; the vendor then creates the task
}


@pytest.mark.parametrize("family", [Family.SORA, Family.KLING], ids=["kkiai", "kling"])
@pytest.mark.parametrize("fault_name", list(LOST_SUBMIT_FAULTS))
async def test_a_submit_that_may_have_reached_the_vendor_is_never_resent(
        factory: RigFactory, fake_clock: FakeClock, family: Family, fault_name: str) -> None:
    rig = factory.build(submit_timeout_seconds=0.5, uncertain_submit_grace_seconds=GRACE)
    vendor = rig.unified if family is Family.SORA else rig.kling
    vendor.inject("create", LOST_SUBMIT_FAULTS[fault_name])
    job = await rig.create(family)

    await rig.poller.run_once()
    uncertain = await rig.job(job.id)
    assert uncertain.status is JobStatus.UNCERTAIN, uncertain
    assert await rig.db.fetchval("SELECT COUNT(*) FROM credit_ledger WHERE job_id = ?", (job.id,)) == 1  # held

    waited = await rig.run_until(rig.all_delivered, step=20)
    assert waited <= GRACE + 20  # a bounded wait, then a plain answer
    done = await rig.job(job.id)
    assert done.status is JobStatus.FAILED and done.error_message == LOST_SUBMIT_MESSAGE
    assert vendor.create_calls == 1  # the one request that may have made a task; never a second
    [result] = rig.publisher.results_for(job.id)
    assert "did not resend" in result.content and "charged" in result.content
    assert await rig.violations() == []


async def test_kie_callback_reconciles_a_lost_submit(factory: RigFactory, db: Database,
                                                     fake_clock: FakeClock) -> None:
    port = free_port()
    rig = factory.build(public_base_url=f"http://127.0.0.1:{port}", kie_webhook_hmac_key="kie-hmac-rel-key")
    rig.kie.callback_key = "kie-hmac-rel-key"
    server = OperatorsServer(settings=rig.settings, callbacks=rig.poller,
                             health=HealthChecks(database=db, gateway_connected=lambda: True, clock=fake_clock))
    await server.start("127.0.0.1", port)
    try:
        rig.kie.inject("create", Fault.lost_response())
        job = await rig.create(Family.VEO, model="veo-fast-kie")
        await rig.poller.run_once()
        assert (await rig.job(job.id)).status is JobStatus.UNCERTAIN
        [task] = rig.kie.tasks.values()  # the vendor did make it; we only lost the answer
        assert task.callback_url == f"http://127.0.0.1:{port}/callbacks/kie/{job.id}"

        fake_clock.advance(task.duration)
        assert await rig.kie.fire_due_callbacks() == 1
        assert rig.kie.callbacks[0].status == 200
        reconciled = await rig.job(job.id)
        assert reconciled.status is JobStatus.RUNNING and reconciled.provider_task_id == task.id

        await rig.run_until(rig.all_delivered, step=1)
        done = await rig.job(job.id)
        assert done.status is JobStatus.SUCCEEDED and done.video_url
        assert rig.kie.create_calls == 1
        assert await rig.violations() == []
    finally:
        await server.stop()


# --- submits that provably never reached the vendor: retried --------------------------------------------


@pytest.mark.parametrize("fault", [
    Fault.http(429, {"code": 429, "msg": "rate limited"}, headers={"Retry-After": "45"}),
    Fault.http(503, "maintenance", headers={"Retry-After": "45"}),
], ids=["429", "503"])
async def test_a_refused_submit_is_resent_after_retry_after(factory: RigFactory, fake_clock: FakeClock,
                                                            fault: Fault) -> None:
    rig = factory.build()
    rig.kie.inject("create", fault)
    job = await rig.create(Family.VEO, model="veo-fast-kie")
    await rig.poller.run_once()
    assert (await rig.job(job.id)).status is JobStatus.QUEUED
    for _ in range(44):
        fake_clock.advance(1)
        await rig.poller.run_once()
    assert rig.kie.create_calls == 1  # Retry-After honoured to the second
    await rig.run_until(rig.all_delivered, step=2)
    assert rig.kie.create_calls == 2 and len(rig.kie.tasks) == 1
    assert (await rig.job(job.id)).status is JobStatus.SUCCEEDED
    assert await rig.violations() == []


async def test_connection_refused_is_retried_once_the_vendor_listens_again(
        factory: RigFactory, fake_clock: FakeClock) -> None:
    rig = factory.build()
    await rig.kling.close_listener()
    job = await rig.create(Family.KLING)
    await rig.poller.run_once()
    refused = await rig.job(job.id)
    assert refused.status is JobStatus.QUEUED and refused.submit_attempts == 1
    await rig.kling.reopen_listener()
    await rig.run_until(rig.all_delivered, step=2)
    assert len(rig.kling.tasks) == 1 and (await rig.job(job.id)).status is JobStatus.SUCCEEDED
    assert await rig.violations() == []


# --- polling faults ---------------------------------------------------------------------------------------


async def test_poll_faults_back_off_and_the_job_still_finishes(factory: RigFactory, fake_clock: FakeClock) -> None:
    rig = factory.build(http_timeout_seconds=0.5)
    job = await rig.create(Family.SORA)
    await rig.poller.run_once()
    rig.unified.inject("query", Fault.http(500), Fault.reset(), Fault.non_json(200), Fault.delay(1.5),
                       Fault.http(502, "<html>bad gateway</html>"), Fault.lost_response())
    seen: list[tuple[float, int]] = []

    async def note_request_times() -> None:
        count = rig.unified.requests["query"]
        if not seen or seen[-1][1] != count:
            seen.append((fake_clock.now(), count))

    await rig.run_until(rig.all_delivered, step=0.5, between=note_request_times)
    done = await rig.job(job.id)
    assert done.status is JobStatus.SUCCEEDED
    # The six failures came first; the gaps between them grow (exponential backoff with jitter).
    times = [at for at, count in seen if 1 <= count <= 7]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 5 and gaps[4] > gaps[0] * 2, gaps
    assert rig.unified.create_calls == 1
    assert await rig.violations() == []


async def test_poll_429_retry_after_is_honoured(factory: RigFactory, fake_clock: FakeClock) -> None:
    rig = factory.build()
    job = await rig.create(Family.KLING)
    await rig.poller.run_once()
    running = await rig.job(job.id)
    fake_clock.advance((running.next_due_at or 0) - fake_clock.now())
    rig.kling.inject("query", Fault.http(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "120"}))
    await rig.poller.run_once()
    assert rig.kling.requests["query"] == 1
    for _ in range(119):
        fake_clock.advance(1)
        await rig.poller.run_once()
    assert rig.kling.requests["query"] == 1
    await rig.run_until(rig.all_delivered, step=2)
    assert (await rig.job(job.id)).status is JobStatus.SUCCEEDED
    assert await rig.violations() == []


async def test_a_vendor_down_for_minutes_is_not_hammered_and_jobs_recover(
        factory: RigFactory, fake_clock: FakeClock) -> None:
    rig = factory.build(provider_max_in_flight=20)
    rig.kling.duration = 3600  # still running when the outage starts
    jobs = [await rig.create(Family.KLING) for _ in range(10)]
    await rig.poller.run_once()
    assert {(await rig.job(j.id)).status for j in jobs} == {JobStatus.RUNNING}

    rig.kling.unavailable = True
    before = sum(rig.kling.requests.values())
    outage = 600.0
    waited = 0.0
    while waited < outage:
        fake_clock.advance(1)
        waited += 1
        await rig.poller.run_once()
    during = sum(rig.kling.requests.values()) - before
    # Without a breaker 10 jobs backing off to POLL_MAX_INTERVAL (30 s) would send ~200+ requests;
    # with it: the polls already on their way when it opens, then about one probe per cool-down.
    breaker = rig.poller.limits.for_provider(ProviderName.KLING).breaker
    bound = len(jobs) + breaker.threshold + outage / breaker.cool_down + 5
    assert during <= bound, (during, bound)
    assert {(await rig.job(j.id)).status for j in jobs} == {JobStatus.RUNNING}  # nobody gave up

    rig.kling.unavailable = False
    for task in rig.kling.tasks.values():
        rig.kling.finish_now(task.id)
    await rig.run_until(rig.all_delivered, step=2, limit=600)
    assert {(await rig.job(j.id)).status for j in jobs} == {JobStatus.SUCCEEDED}
    assert await rig.violations() == []


async def test_jobs_accepted_while_a_vendor_is_down_wait_instead_of_failing(
        factory: RigFactory, fake_clock: FakeClock) -> None:
    """503 on create means nothing was made: the jobs wait for the vendor (up to their deadline)."""
    rig = factory.build()
    rig.unified.unavailable = True
    jobs = [await rig.create(Family.SORA) for _ in range(5)]
    for _ in range(300):  # five minutes of outage
        fake_clock.advance(1)
        await rig.poller.run_once()
    outage_requests = rig.unified.create_calls
    rig.unified.unavailable = False
    await rig.run_until(rig.all_delivered, step=2, limit=3600)
    statuses = [(await rig.job(j.id)).status for j in jobs]
    assert statuses == [JobStatus.SUCCEEDED] * 5, statuses
    assert outage_requests <= 5 + 300 / 30 + 5
    assert len(rig.unified.tasks) == 5
    assert await rig.violations() == []


# --- deadlines --------------------------------------------------------------------------------------------


async def test_a_job_past_its_vendor_maximum_times_out_released_and_told(
        factory: RigFactory, fake_clock: FakeClock) -> None:
    rig = factory.build()
    rig.kling.duration = 10 * 3600  # never finishes in time
    job = await rig.create(Family.KLING)
    await rig.run_until(rig.all_delivered, step=30, limit=3 * 3600)
    done = await rig.job(job.id)
    assert done.status is JobStatus.TIMED_OUT
    assert done.finished_at is not None and done.deadline_at is not None
    assert done.finished_at - done.deadline_at <= 30 + rig.settings.poll_max_interval_seconds
    [result] = rig.publisher.results_for(job.id)
    assert "took far longer" in result.content and "Nothing was charged" in result.content
    assert await rig.violations() == []


async def test_a_job_stuck_behind_a_dead_vendor_still_times_out(factory: RigFactory, fake_clock: FakeClock) -> None:
    rig = factory.build(job_timeout_seconds=900)
    job = await rig.create(Family.VEO, model="veo-fast-kie")
    await rig.poller.run_once()
    rig.kie.unavailable = True
    await rig.run_until(rig.all_delivered, step=15, limit=2 * 3600)
    done = await rig.job(job.id)
    assert done.status is JobStatus.TIMED_OUT and done.deadline_at is not None and done.finished_at is not None
    assert done.finished_at - done.deadline_at <= 60  # the breaker's cool-down does not push the deadline
    assert await rig.violations() == []


async def test_vendor_failure_is_released_and_explained(factory: RigFactory, fake_clock: FakeClock) -> None:
    rig = factory.build()
    rig.kie.outcome = Outcome.fail("content policy violation", code=400)
    job = await rig.create(Family.VEO, model="veo-fast-kie")
    await rig.run_until(rig.all_delivered, step=5)
    assert (await rig.job(job.id)).status is JobStatus.FAILED
    [result] = rig.publisher.results_for(job.id)
    assert "content policy" in result.content.lower()
    assert await rig.violations() == []


# --- limits queue work instead of failing it ----------------------------------------------------------------


async def test_kie_submit_window_and_in_flight_limit_queue_extra_jobs(
        factory: RigFactory, fake_clock: FakeClock) -> None:
    rig = factory.build(kie_submits_per_10s=20, provider_max_in_flight=30)
    rig.kie.duration = 40
    jobs = [await rig.create(Family.VEO, model="veo-fast-kie") for _ in range(45)]
    peak_in_flight = 0

    async def watch() -> None:
        nonlocal peak_in_flight
        value = await rig.db.fetchval(
            "SELECT COUNT(*) FROM jobs WHERE status IN ('submitting','running','uncertain')")
        peak_in_flight = max(peak_in_flight, int(value or 0))

    await rig.run_until(rig.all_delivered, step=0.5, between=watch)
    created = sorted(task.created_at for task in rig.kie.tasks.values())
    assert len(created) == 45
    busiest = max(sum(1 for t in created if start <= t < start + 10) for start in created)
    assert busiest <= 20, busiest
    assert peak_in_flight <= 30
    assert {(await rig.job(j.id)).status for j in jobs} == {JobStatus.SUCCEEDED}
    assert await rig.violations() == []


async def test_in_flight_limit_holds_the_rest_in_the_queue(factory: RigFactory, fake_clock: FakeClock) -> None:
    rig = factory.build(provider_max_in_flight=3)
    rig.kling.duration = 60
    jobs = [await rig.create(Family.KLING) for _ in range(10)]
    peak = 0

    async def watch() -> None:
        nonlocal peak
        unfinished = sum(1 for task in rig.kling.tasks.values() if not task.done(fake_clock.now()))
        peak = max(peak, unfinished)

    await rig.run_until(rig.all_delivered, step=1, between=watch)
    assert peak <= 3
    assert {(await rig.job(j.id)).status for j in jobs} == {JobStatus.SUCCEEDED}
    assert await rig.violations() == []


async def test_a_job_the_vendor_never_accepts_times_out_at_its_deadline(
        factory: RigFactory, fake_clock: FakeClock) -> None:
    rig = factory.build(job_timeout_seconds=1200)
    rig.kie.inject("create", *[Fault.http(429, {"code": 429, "msg": "busy"}, headers={"Retry-After": "300"})] * 50)
    job = await rig.create(Family.VEO, model="veo-fast-kie")
    await rig.run_until(rig.all_delivered, step=10, limit=3600)
    done = await rig.job(job.id)
    assert done.status is JobStatus.TIMED_OUT and done.finished_at is not None and done.deadline_at is not None
    assert done.finished_at - done.deadline_at <= 10
    assert rig.kie.tasks == {} and rig.kie.create_calls <= 1200 / 300 + 2  # Retry-After honoured throughout
    assert await rig.violations() == []


async def test_in_flight_limit_holds_across_two_pollers(db: Database, database_url: str, fake_clock: FakeClock) -> None:
    """The in-flight cap is counted in SQL inside the submit transaction, so two processes share it."""
    second = await open_database(database_url)  # another process's connection
    try:
        async with RigFactory(db, fake_clock) as factory:
            rig = factory.build(provider_max_in_flight=4)
            rig.add_poller(second, "poller-b")
            rig.kling.duration = 60
            for _ in range(16):
                await rig.create(Family.KLING)
            peak = 0

            async def watch() -> None:
                nonlocal peak
                peak = max(peak, sum(1 for t in rig.kling.tasks.values() if not t.done(fake_clock.now())))

            await rig.run_until(rig.all_delivered, step=1, between=watch)
            assert peak <= 4
            assert await rig.violations() == []
    finally:
        await second.close()


async def test_kie_submit_window_holds_across_two_pollers(db: Database, database_url: str, fake_clock: FakeClock) -> None:
    second = await open_database(database_url)  # another process's connection
    try:
        async with RigFactory(db, fake_clock) as factory:
            rig = factory.build(kie_submits_per_10s=20, provider_max_in_flight=100)
            rig.add_poller(second, "poller-b")
            rig.kie.duration = 40
            for _ in range(60):
                await rig.create(Family.VEO, model="veo-fast-kie")
            await rig.run_until(rig.all_delivered, step=0.5)
            created = sorted(task.created_at for task in rig.kie.tasks.values())
            busiest = max(sum(1 for t in created if start <= t < start + 10) for start in created)
            assert busiest <= 20, busiest
    finally:
        await second.close()


async def test_a_1080p_job_finishing_near_its_deadline_still_delivers_a_video(
        factory: RigFactory, fake_clock: FakeClock) -> None:
    """The 720p result exists; waiting for a 1080p file that never comes must not time the job out."""
    rig = factory.build()
    rig.kie.hd_delay = None  # the 1080p file never becomes ready
    spec = rig.jobs.validate(GenerationRequest(family=Family.VEO, prompt="a slow 1080p scene", model="veo-fast-kie",
                                               upsample=True))
    job = await rig.jobs.create_job(Requester(guild_id=GUILD_ID, channel_id=CHANNEL_ID, user_id=30), spec)
    rig.kie.inject("1080p", Fault.http(500), Fault.reset())
    rig.kie.duration = get_model("veo-fast-kie").timing.max_runtime - 120  # done two minutes before the deadline
    await rig.run_until(rig.all_delivered, step=15, limit=2 * 3600)
    done = await rig.job(job.id)
    assert done.status is JobStatus.SUCCEEDED and done.video_url, (done.status, done.error_message)
    assert await rig.violations() == []


async def test_cancel_while_the_submit_is_on_the_wire(factory: RigFactory, fake_clock: FakeClock) -> None:
    """The late answer must not revive a cancelled job; the member hears "cancelled" once, nothing is charged."""
    rig = factory.build(submit_timeout_seconds=5)
    rig.unified.inject("create", Fault.delay(0.5))
    job = await rig.create(Family.SORA)
    submitting = asyncio.create_task(rig.poller.run_once())
    while rig.unified.create_calls == 0:
        await asyncio.sleep(0.01)
    cancelled = await rig.jobs.cancel_job(GUILD_ID, job.id, actor_id=99)
    assert cancelled.status is JobStatus.CANCELLED
    await asyncio.wait_for(submitting, timeout=10)
    await rig.run_until(rig.all_delivered, step=5)
    done = await rig.job(job.id)
    assert done.status is JobStatus.CANCELLED and done.provider_task_id is None
    [result] = rig.publisher.results_for(job.id)
    assert "cancelled" in result.content
    assert len(rig.unified.tasks) == 1 and rig.unified.tasks[next(iter(rig.unified.tasks))].status_calls == 0
    assert await rig.violations() == []
