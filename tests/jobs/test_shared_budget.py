"""The request budget is a mean over the server's mix of kinds: spent where a request saves the most."""

from __future__ import annotations

import asyncio
import json
import math
import random

import pytest

from bot.catalog import ProviderName, get_model, timing_for
from bot.clock import FakeClock
from bot.jobs.placement import (
    LATE_SECONDS,
    Distribution,
    FinishTimes,
    PricedKind,
    expected_requests,
    shared_polls,
)
from bot.jobs.models import KindHistory
from storage.jobs import JobRepository
from bot.jobs.schedule import (
    KIND_BUDGET_CAP,
    MIN_HISTORY,
    MIX_ROWS,
    PLAN_MARGIN,
    REQUEST_BUDGET,
    Planning,
    PollPlan,
    PollSchedule,
    plan_kinds,
    prior_durations,
)
from storage.database import Database, execute_many

PLANNED = REQUEST_BUDGET - PLAN_MARGIN
FAST, SLOW, KLING = "veo-fast-kie", "sora-2", "kling-v3-std-silent"


def _lognormal(median: float, sigma: float, count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(median), sigma) for _ in range(count)]


async def _history(db: Database, model_key: str, durations: list[float], start: float, *, requests: int = 0,
                   progress: float | None = None) -> None:
    """Successes of one kind, a second apart from `start`, each having cost `requests` status requests."""
    model = get_model(model_key)
    async with db.transaction() as conn:
        await execute_many(
            conn, "INSERT INTO jobs (guild_id, channel_id, user_id, family, model_key, provider, mode, prompt, request_json,"
            " status, created_at, submitted_at, vendor_done_at, finished_at, poll_count, progress)"
            " VALUES (1, 1, 1, ?, ?, ?, 'text', 'p', ?, 'succeeded', ?, ?, ?, ?, ?, ?)",
            [(model.family.value, model_key, model.provider.value, json.dumps({}), start + n, start + n,
              start + n + took, start + n + took, requests, progress) for n, took in enumerate(durations)])


def _cost(plan: PollPlan, durations: list[float]) -> float:
    """Mean requests of the plan on these durations."""
    return expected_requests(Distribution.from_samples(durations), [*plan.early_checks, *plan.offsets])


def _late(plan: PollPlan, durations: list[float]) -> float:
    finish = Distribution.from_samples(durations)
    late, previous = 0.0, 0.0
    for at in [*plan.early_checks, *plan.offsets]:
        late += max(0.0, finish.cdf(at - LATE_SECONDS) - finish.cdf(previous))
        previous = at
    return late


async def test_a_long_spread_out_kind_gets_more_of_the_budget_than_a_short_tight_one(
        db: Database, fake_clock: FakeClock) -> None:
    fast, slow = _lognormal(145, 0.12, 400, seed=1), _lognormal(280, 0.2, 400, seed=2)
    start = fake_clock.now() - 10_000
    await _history(db, FAST, fast, start)
    await _history(db, SLOW, slow, start + 1000)
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3)
    fast_plan, slow_plan = await schedule.plan_for(FAST, "text"), await schedule.plan_for(SLOW, "text")
    fast_cost, slow_cost = _cost(fast_plan, fast), _cost(slow_plan, slow)
    # Half the jobs of each kind: the mean is the budget, but the spread-out kind gets the larger part.
    assert (fast_cost + slow_cost) / 2 == pytest.approx(PLANNED, abs=0.15)
    assert slow_cost > PLANNED + 1 and fast_cost < PLANNED - 1
    # ...and fewer jobs are late overall than with each kind on its own budget.
    alone = [schedule.build_plan(FAST, fast), schedule.build_plan(SLOW, slow)]
    assert _late(slow_plan, slow) + _late(fast_plan, fast) < _late(alone[0], fast) + _late(alone[1], slow) - 0.005


async def test_the_mix_weighs_each_kind_by_how_often_it_is_ordered(db: Database, fake_clock: FakeClock) -> None:
    fast, slow = _lognormal(145, 0.12, 900, seed=1), _lognormal(280, 0.2, 100, seed=2)
    start = fake_clock.now() - 10_000
    await _history(db, SLOW, slow, start)
    await _history(db, FAST, fast, start + 200)
    assert await JobRepository(db).recent_mix(MIX_ROWS) == {(FAST, "text"): 900, (SLOW, "text"): 100}
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3)
    fast_plan, slow_plan = await schedule.plan_for(FAST, "text"), await schedule.plan_for(SLOW, "text")
    assert PLANNED - 0.6 <= 0.9 * _cost(fast_plan, fast) + 0.1 * _cost(slow_plan, slow) <= PLANNED + 0.15


async def test_a_kind_paced_by_progress_counts_what_its_jobs_cost(db: Database, fake_clock: FakeClock) -> None:
    slow = _lognormal(280, 0.2, 300, seed=2)
    start = fake_clock.now() - 10_000
    await _history(db, KLING, _lognormal(150, 0.15, 300, seed=3), start, requests=4, progress=0.93)
    await _history(db, SLOW, slow, start + 500)
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3)
    # Kling's jobs took 4 requests, not the ~9.8 its plan would: Sora may spend much of the rest.
    slow_cost = _cost(await schedule.plan_for(SLOW, "text"), slow)
    assert slow_cost > PLANNED + 2
    assert slow_cost <= KIND_BUDGET_CAP * PLANNED + 0.1  # never past the cap
    kling_plan = await schedule.plan_for(KLING, "text")
    assert kling_plan == schedule.build_plan(KLING, await JobRepository(db).recent_durations(KLING, "text", 1000))


async def test_without_progress_the_same_kind_shares_the_budget_like_any_other(db: Database,
                                                                               fake_clock: FakeClock) -> None:
    slow = _lognormal(280, 0.2, 300, seed=2)
    start = fake_clock.now() - 10_000
    await _history(db, KLING, _lognormal(150, 0.15, 300, seed=3), start, requests=4)  # progress never read
    await _history(db, SLOW, slow, start + 500)
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3)
    kling = await JobRepository(db).recent_durations(KLING, "text", 1000)
    assert (_cost(await schedule.plan_for(SLOW, "text"), slow)
            + _cost(await schedule.plan_for(KLING, "text"), kling)) / 2 == pytest.approx(PLANNED, abs=0.15)


def test_a_new_server_books_a_progress_paced_kind_at_its_prior_cost() -> None:
    """No history at all: Kling's prior says its percentage paces it (`Timing.paced_requests`), so the
    planner books it at that, not at the whole budget, and Sora gets the rest, as once history shows it.
    A kind whose own jobs show no progress is planned like any other, whatever its prior says."""
    sora = prior_durations(timing_for(SLOW, "text"))
    prior = timing_for(KLING, "text").paced_requests
    assert prior is not None and prior < PLANNED / 2
    cold = plan_kinds([KindHistory(KLING, "text", 1, ()), KindHistory(SLOW, "text", 1, ())], Planning())
    assert _cost(cold[(SLOW, "text")], sora) > PLANNED + 2
    kling = prior_durations(timing_for(KLING, "text"))[::50]
    unpaced = KindHistory(KLING, "text", 1, kling, costed_jobs=len(kling), mean_requests=9.0, progress_share=0.0)
    assert len(kling) >= MIN_HISTORY
    shared = plan_kinds([unpaced, KindHistory(SLOW, "text", 1, ())], Planning())
    both = (_cost(shared[(SLOW, "text")], sora) + _cost(shared[(KLING, "text")], kling)) / 2
    assert both == pytest.approx(PLANNED, abs=0.3)


async def test_a_kind_with_callbacks_counts_what_its_jobs_cost(db: Database, fake_clock: FakeClock) -> None:
    slow = _lognormal(280, 0.2, 300, seed=2)
    start = fake_clock.now() - 10_000
    await _history(db, FAST, _lognormal(145, 0.12, 300, seed=1), start, requests=1)
    await _history(db, SLOW, slow, start + 500)
    polled = PollSchedule(JobRepository(db), fake_clock, min_interval=3)
    called_back = PollSchedule(JobRepository(db), fake_clock, min_interval=3,
                               callback_providers={ProviderName.KIE})
    # Polled, fast Veo takes its part of the budget; called back, its jobs cost one request, and Sora
    # may spend up to the cap.
    with_callbacks = _cost(await called_back.plan_for(SLOW, "text"), slow)
    assert with_callbacks > _cost(await polled.plan_for(SLOW, "text"), slow) + 1
    assert with_callbacks >= KIND_BUDGET_CAP * PLANNED - 0.5


async def test_kinds_replan_together_once_however_many_ask(db: Database, fake_clock: FakeClock) -> None:
    class CountingRepository(JobRepository):
        mixes = 0

        async def recent_mix(self, limit: int) -> dict[tuple[str, str], int]:
            CountingRepository.mixes += 1
            return await super().recent_mix(limit)

    await _history(db, FAST, _lognormal(145, 0.12, 100, seed=1), fake_clock.now() - 10_000)
    await _history(db, SLOW, _lognormal(280, 0.2, 100, seed=2), fake_clock.now() - 5_000)
    schedule = PollSchedule(CountingRepository(db), fake_clock, cache_seconds=600)
    plans = await asyncio.gather(*(schedule.plan_for(kind, "text") for kind in [FAST, SLOW] * 10))
    assert CountingRepository.mixes == 1 and all(plan.learned for plan in plans)
    fake_clock.advance(601)
    await schedule.plan_for(SLOW, "text")
    assert CountingRepository.mixes == 2


def test_one_kind_alone_is_planned_as_on_its_own_budget() -> None:
    finish = FinishTimes(Distribution.from_samples(_lognormal(200, 0.15, 500, seed=4)))
    alone = shared_polls([(3.0, PricedKind(finish, 3.0))], 9.8)[0]
    assert 9.3 <= expected_requests(finish, alone) <= 9.8


def test_shared_plans_keep_the_budget_and_respect_each_cap() -> None:
    short = FinishTimes(Distribution.from_samples(_lognormal(145, 0.12, 500, seed=5)))
    long = FinishTimes(Distribution.from_samples(_lognormal(300, 0.25, 500, seed=6)))
    capped = PricedKind(long, 3.0)
    capped.cap(12.0)
    plans = shared_polls([(2.0, PricedKind(short, 3.0)), (1.0, capped)], 9.8)
    spent = (2 * expected_requests(short, plans[0]) + expected_requests(long, plans[1])) / 3
    assert 9.3 <= spent <= 9.8
    assert expected_requests(long, plans[1]) <= 12.0 + 1e-9
