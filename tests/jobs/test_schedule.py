"""The poll schedule: catalog prior without history, learned quantiles with it, progress when given."""

from __future__ import annotations

import json
import math
import random

from bot.catalog import get_model
from bot.clock import FakeClock
from bot.jobs.repository import JobRepository
from bot.jobs.schedule import REQUEST_BUDGET, Distribution, PollSchedule, expected_requests
from storage.database import Database

MODEL = "veo-fast-kie"


async def _finished_jobs(db: Database, durations: list[float], start: float, model: str = MODEL) -> None:
    async with db.transaction() as conn:
        for n, took in enumerate(durations):
            submitted = start + n
            await conn.execute(
                "INSERT INTO jobs (guild_id, channel_id, user_id, family, model_key, provider, mode, prompt,"
                " request_json, status, created_at, submitted_at, vendor_done_at, finished_at)"
                " VALUES (1, 1, 1, 'veo', ?, 'kie', 'text', 'p', ?, 'succeeded', ?, ?, ?, ?)",
                (model, json.dumps({}), submitted, submitted, submitted + took, submitted + took))


def _polls_until(offsets: list[float], done_after: float) -> tuple[int, float]:
    """(requests, lag) for a job that finishes `done_after` seconds after submit."""
    for count, at in enumerate(offsets, start=1):
        if at >= done_after:
            return count, at - done_after
    raise AssertionError("never noticed")


async def _offsets(schedule: PollSchedule, now: float, horizon: float, progress_of=None) -> list[float]:  # type: ignore[no-untyped-def]
    """The poll times the schedule would produce for one job, walking forward."""
    at, offsets = now, []
    while at - now < horizon:
        progress = progress_of(at - now) if progress_of else None
        at = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=now, now=at, progress=progress)
        offsets.append(at - now)
    return offsets


async def test_without_history_the_catalog_prior_is_used(db: Database, fake_clock: FakeClock) -> None:
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3, max_interval=60)
    plan = await schedule.plan_for(MODEL, "text")
    timing = get_model(MODEL).timing
    assert not plan.learned
    assert plan.offsets[0] < timing.p10  # not before the vendor is plausibly done...
    assert plan.offsets[0] >= timing.p10 * 0.4  # ...but not at once either
    assert any(abs(o - timing.p50) < 30 for o in plan.offsets)
    # As dense as the request budget allows on average, densest around the median.
    assert expected_requests(Distribution.from_prior(timing), plan.offsets) <= REQUEST_BUDGET
    gaps = {round(b - a, 1): a for a, b in zip(plan.offsets, plan.offsets[1:])}
    assert abs(gaps[min(gaps)] - timing.p50) < abs(gaps[max(gaps)] - timing.p50)


async def test_history_makes_polls_dense_where_jobs_finish(db: Database, fake_clock: FakeClock) -> None:
    # Jobs of this kind take 170-190 s.
    await _finished_jobs(db, [170 + (n * 7) % 21 for n in range(60)], fake_clock.now() - 10_000)
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=2, max_interval=60, explore_share=0)
    plan = await schedule.plan_for(MODEL, "text")
    assert plan.learned
    assert 165 <= plan.offsets[0] <= 172  # nothing before the fast end
    offsets = await _offsets(schedule, fake_clock.now(), 400)
    lags, counts = [], []
    for done_after in range(170, 191):
        count, lag = _polls_until(offsets, done_after)
        counts.append(count)
        lags.append(lag)
    assert max(counts) <= 10
    assert sorted(lags)[len(lags) // 2] <= 3.0 and max(lags) <= 10.0
    # Stragglers beyond everything seen are backed off, not hammered.
    tail = [b - a for a, b in zip(offsets, offsets[1:]) if a > 200]
    assert tail and all(later >= earlier for earlier, later in zip(tail, tail[1:]))


async def test_history_is_cached_per_model_and_mode(db: Database, fake_clock: FakeClock) -> None:
    schedule = PollSchedule(JobRepository(db), fake_clock, cache_seconds=120)
    first = await schedule.plan_for(MODEL, "text")
    await _finished_jobs(db, [30.0] * 20, fake_clock.now() - 5000)
    assert await schedule.plan_for(MODEL, "text") is first  # cached: no query per poll
    fake_clock.advance(121)
    refreshed = await schedule.plan_for(MODEL, "text")
    assert refreshed.learned and refreshed.offsets[0] <= 30


async def test_progress_estimates_the_finish(db: Database, fake_clock: FakeClock) -> None:
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=2, max_interval=60, explore_share=0)
    total = 300.0  # far from the prior's median: only progress can tell
    offsets = await _offsets(schedule, fake_clock.now(), 400, progress_of=lambda e: min(0.99, e / total))
    count, lag = _polls_until(offsets, total)
    assert count <= 10 and lag <= 3.0


def test_error_backoff_grows_with_jitter_and_honours_retry_after(fake_clock: FakeClock) -> None:
    schedule = PollSchedule(None, fake_clock, min_interval=2, max_interval=60)  # type: ignore[arg-type]
    delays = [schedule.error_backoff(streak) for streak in range(1, 10)]
    assert all(0.9 <= d <= 60 for d in delays)
    assert delays[-1] > delays[0]
    assert schedule.error_backoff(1, retry_after=90) >= 90


def _lognormal(median: float, sigma: float, count: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.lognormvariate(math.log(median), sigma) for _ in range(count)]


async def test_budgeted_plan_on_a_concentrated_kind_meets_the_latency_targets(fake_clock: FakeClock) -> None:
    # A realistic kind: log-normal, sigma 0.15 around 150 s. Plan from 200 past jobs, judge on new ones.
    schedule = PollSchedule(None, fake_clock, min_interval=3, explore_share=0)  # type: ignore[arg-type]
    plan = schedule.build_plan(MODEL, _lognormal(150, 0.15, 200, seed=1))
    offsets = list(plan.offsets)
    while offsets[-1] < 400:
        offsets.append(offsets[-1] + schedule._straggler_delay(offsets[-1] - plan.offsets[-1]))
    outcomes = sorted((_polls_until(offsets, took) for took in _lognormal(150, 0.15, 4000, seed=2)),
                      key=lambda outcome: outcome[1])
    lags = [lag for _, lag in outcomes]
    assert lags[len(lags) // 2] <= 3.0 and lags[int(0.99 * len(lags))] <= 10.0
    assert sum(count for count, _ in outcomes) / len(outcomes) <= REQUEST_BUDGET + 0.5
    assert plan.offsets[0] > 100  # p0.2 of this kind is ~96 s: nothing is asked before


async def test_with_a_callback_only_a_sparse_safety_net_is_planned(db: Database, fake_clock: FakeClock) -> None:
    await _finished_jobs(db, _lognormal(150, 0.15, 100, seed=3), fake_clock.now() - 10_000)
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3, max_interval=60, explore_share=0)
    start = fake_clock.now()
    first = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=start, now=start, callback=True)
    slowest_seen = max(await JobRepository(db).recent_durations(MODEL, "text", 200))
    assert first - start >= slowest_seen  # after (nearly) every job of the kind is done
    later = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=start, now=first, callback=True)
    assert later - first >= 3.0
    dense_first = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=start, now=start)
    assert dense_first < first


async def test_a_few_jobs_explore_before_the_fast_end(fake_clock: FakeClock) -> None:
    schedule = PollSchedule(None, fake_clock, explore_share=0.25, rng=random.Random(7))  # type: ignore[arg-type]
    plan = schedule.build_plan(MODEL, [150.0 + n for n in range(20)])
    schedule._cache[(MODEL, "text")] = (fake_clock.now(), plan)
    now = fake_clock.now()
    firsts = [await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=now, now=now) - now
              for _ in range(200)]
    early = [f for f in firsts if f < plan.offsets[0] - 1]
    assert 20 <= len(early) <= 80  # about a quarter, well before the fastest seen
    assert all(f <= 0.7 * plan.offsets[0] for f in early)


async def test_a_nearly_done_phase_is_not_hammered(fake_clock: FakeClock) -> None:
    # kie.ai reports 0.99 while it upsamples to 1080p, which can take minutes.
    schedule = PollSchedule(None, fake_clock, min_interval=3, max_interval=60, explore_share=0)  # type: ignore[arg-type]
    start = fake_clock.now()
    at = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=start, now=start + 200, progress=0.99)
    assert 9.0 <= at - (start + 200) <= 60.0
