"""Provider brakes: submit rate window, in-flight cap, circuit breaker; and queue positions."""

from __future__ import annotations

import asyncio
import time

from bot.catalog import Family, ProviderName
from bot.clock import FakeClock
from bot.jobs.limits import BreakerState, CircuitBreaker, LoopLagLimiter
from bot.jobs.models import JobStatus
from bot.providers.base import ErrorKind, ProviderError
from storage.database import Database
from fakes.settings import make_settings
from tests.jobs.support import REQUESTER, Requester, build_rig


def test_breaker_opens_then_lets_one_probe_through(fake_clock: FakeClock) -> None:
    breaker = CircuitBreaker(fake_clock, threshold=3, cool_down=30)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    fake_clock.advance(30)
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # only one at a time
    breaker.record_failure()  # the probe failed: open again for a full cool-down
    assert breaker.state is BreakerState.OPEN and not breaker.allow()
    fake_clock.advance(30)
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow() and breaker.allow()


async def test_rate_window_queues_extra_jobs_and_positions_count_them(db: Database, fake_clock: FakeClock) -> None:
    settings = make_settings(kie_api_key="k", kie_submits_per_10s=2)
    rig = build_rig(db, fake_clock, settings=settings)
    jobs = [await rig.create(f"shot {n}", requester=Requester(guild_id=10, channel_id=20, user_id=100 + n))
            for n in range(5)]
    assert all(j.provider is ProviderName.KIE for j in jobs)
    assert [await rig.jobs.queue_position(j) for j in jobs] == [1, 2, 3, 4, 5]
    await rig.poller.run_once()
    statuses = [(await rig.job(j.id)).status for j in jobs]
    assert statuses == [JobStatus.RUNNING] * 2 + [JobStatus.QUEUED] * 3  # never failed, just waiting
    assert [await rig.jobs.queue_position(await rig.job(j.id)) for j in jobs] == [0, 0, 1, 2, 3]
    waiting = await rig.job(jobs[2].id)
    assert waiting.next_due_at is not None and waiting.next_due_at >= fake_clock.now() + 10
    fake_clock.advance(10)
    await rig.poller.run_once()
    assert len(rig.providers[ProviderName.KIE].submits) == 4
    assert (await rig.job(jobs[4].id)).status is JobStatus.QUEUED


async def test_unified_and_kling_submit_windows_come_from_their_settings(db: Database, fake_clock: FakeClock) -> None:
    """KKIAI_SUBMITS_PER_10S / KLING_SUBMITS_PER_10S: an operator whose accounts allow more raises them."""
    settings = make_settings(kkiai_api_key="k", kling_api_key="k", kling_base_url="http://kling.invalid",
                             kkiai_submits_per_10s=3, kling_submits_per_10s=1, quota_max_concurrent_jobs=10,
                             quota_daily_credits=1000)
    rig = build_rig(db, fake_clock, settings=settings)
    sora = [await rig.create(f"sora {n}", family=Family.SORA) for n in range(4)]
    kling = [await rig.create(f"kling {n}", family=Family.KLING) for n in range(2)]
    assert {j.provider for j in sora} == {ProviderName.KKIAI} and {j.provider for j in kling} == {ProviderName.KLING}
    await rig.poller.run_once()
    assert [(await rig.job(j.id)).status for j in sora] == [JobStatus.RUNNING] * 3 + [JobStatus.QUEUED]
    assert [(await rig.job(j.id)).status for j in kling] == [JobStatus.RUNNING, JobStatus.QUEUED]


async def test_in_flight_limit_holds_jobs_until_a_slot_frees(db: Database, fake_clock: FakeClock) -> None:
    settings = make_settings(kie_api_key="k", provider_max_in_flight=1)
    rig = build_rig(db, fake_clock, settings=settings, duration=20)
    first = await rig.create("one")
    second = await rig.create("two", requester=Requester(guild_id=10, channel_id=20, user_id=31))
    await rig.poller.run_once()
    assert (await rig.job(first.id)).status is JobStatus.RUNNING
    assert (await rig.job(second.id)).status is JobStatus.QUEUED

    async def second_running() -> bool:
        return (await rig.job(second.id)).status is JobStatus.RUNNING

    await rig.run_until(second_running)
    assert (await rig.job(first.id)).status is JobStatus.SUCCEEDED
    assert len(rig.providers[ProviderName.KIE].submits) == 2


async def test_failing_vendor_is_slowed_down_then_recovers(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=10, max_concurrency=1)  # one request at a time: deterministic
    jobs = [await rig.create(f"job {n}", requester=Requester(guild_id=10, channel_id=20, user_id=200 + n))
            for n in range(8)]
    provider = rig.providers[ProviderName.KIE]
    provider.submit_script = [ProviderError(ErrorKind.RETRYABLE, "vendor down", status_code=503)] * 100
    await rig.poller.run_once()
    breaker = rig.poller.limits.for_provider(ProviderName.KIE).breaker
    assert breaker.state is BreakerState.OPEN
    calls_when_open = len(provider.submits)
    assert calls_when_open == breaker.threshold  # the rest waited instead of hammering
    for _ in range(5):
        fake_clock.advance(5)
        await rig.poller.run_once()
    assert len(provider.submits) == calls_when_open  # still cooling down
    assert [(await rig.job(j.id)).status for j in jobs] == [JobStatus.QUEUED] * len(jobs)

    provider.submit_script = []  # the vendor is back

    async def all_running() -> bool:
        statuses = [(await rig.job(j.id)).status for j in jobs]
        return all(s in (JobStatus.RUNNING, JobStatus.SUCCEEDED) for s in statuses)

    await rig.run_until(all_running, step=5, limit=600)
    assert breaker.state is BreakerState.CLOSED
    assert await rig.ledger(jobs[0].id) in (["hold"], ["hold", "charge"])


async def test_poll_errors_back_off_and_count_the_streak(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock, duration=1000)
    job = await rig.create()
    await rig.poller.run_once()
    provider = rig.providers[job.provider]
    provider.poll_script = [ProviderError(ErrorKind.UNCERTAIN, "timeout"),
                            ProviderError(ErrorKind.RETRYABLE, "slow down", retry_after=120.0)]
    running = await rig.job(job.id)
    assert running.next_due_at is not None
    fake_clock.advance(running.next_due_at - fake_clock.now())
    await rig.poller.run_once()
    first = await rig.job(job.id)
    assert first.error_streak == 1 and first.status is JobStatus.RUNNING
    assert first.next_due_at is not None
    fake_clock.advance(first.next_due_at - fake_clock.now())
    await rig.poller.run_once()
    second = await rig.job(job.id)
    assert second.error_streak == 2 and second.next_due_at is not None
    assert second.next_due_at >= fake_clock.now() + 120  # Retry-After honoured
    fake_clock.advance(second.next_due_at - fake_clock.now())
    await rig.poller.run_once()
    assert (await rig.job(job.id)).error_streak == 0


async def test_queue_position_is_zero_when_not_waiting(db: Database, fake_clock: FakeClock) -> None:
    rig = build_rig(db, fake_clock)
    job = await rig.create(requester=REQUESTER)
    await rig.poller.run_once()
    assert await rig.jobs.queue_position(job) == 0


async def test_poller_concurrency_bounds_the_vendor_requests_in_flight(db: Database, fake_clock: FakeClock) -> None:
    settings = make_settings(kie_api_key="k", kkiai_api_key="k", poller_concurrency=3)
    rig = build_rig(db, fake_clock, settings=settings, duration=10)
    assert rig.poller.max_concurrency == 3
    jobs = [await rig.create(f"job {n}", requester=Requester(guild_id=10, channel_id=20, user_id=300 + n))
            for n in range(7)]
    provider = rig.providers[ProviderName.KIE]
    provider.submit_gate = asyncio.Event()
    run = asyncio.create_task(rig.poller.run_once())
    for _ in range(500):  # until three submits are held at the vendor
        if len(provider.submits) >= 3:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # room for a fourth, were the bound broken
    assert len(provider.submits) == 3  # three held at the vendor, four waiting their turn
    provider.submit_gate.set()
    await asyncio.wait_for(run, 10)
    assert len(provider.submits) == 7
    assert {(await rig.job(j.id)).status for j in jobs} == {JobStatus.RUNNING}


def test_loop_lag_limiter_shrinks_fast_and_grows_back_slowly() -> None:
    limiter = LoopLagLimiter(ceiling=128, floor=8)
    assert limiter.limit == 128
    assert [limiter.observe(0.010) for _ in range(3)] == [85, 56, 37]  # a slow loop: a third off each time
    for _ in range(20):
        limiter.observe(0.050)
    assert limiter.limit == 8  # never under the floor
    assert limiter.observe(0.002) == 8  # in between: hold
    assert [limiter.observe(0.0001) for _ in range(2)] == [12, 16]  # a quick loop: a few more at a time
    for _ in range(100):
        limiter.observe(0.0001)
    assert limiter.limit == 128  # never over the ceiling
    assert LoopLagLimiter(ceiling=3).floor == 3  # a small ceiling is its own floor


async def test_loop_lag_limiter_measures_a_busy_loop() -> None:
    limiter = LoopLagLimiter(ceiling=64)

    def hog() -> None:  # a ready callback that holds the loop, as a burst of vendor answers does
        deadline = time.perf_counter() + 0.02
        while time.perf_counter() < deadline:
            pass

    asyncio.get_running_loop().call_soon(hog)
    assert await limiter.measure() < 64
