"""The poll schedule: catalog prior without history, learned quantiles with it, progress when given."""

from __future__ import annotations

import json
import math
import random

import pytest

from bot.catalog import get_model
from bot.clock import FakeClock
from bot.jobs.repository import JobRepository
import bot.jobs.schedule as schedule_module
from bot.jobs.placement import LATE_SECONDS, Distribution, expected_requests
from bot.jobs.schedule import REQUEST_BUDGET, PollPlan, PollSchedule
from storage.database import Database, change_rows

MODEL = "veo-fast-kie"


async def _finished_jobs(db: Database, durations: list[float], start: float, model: str = MODEL,
                         status: str = "succeeded", vendor_reported: bool = True) -> None:
    """Finished jobs submitted a second apart from `start`; `vendor_reported=False` leaves vendor_done_at
    empty, as for timeouts, lost submits and cancellations."""
    async with db.transaction() as conn:
        for n, took in enumerate(durations):
            submitted = start + n
            await change_rows(
                conn, "INSERT INTO jobs (guild_id, channel_id, user_id, family, model_key, provider, mode, prompt,"
                " request_json, status, created_at, submitted_at, vendor_done_at, finished_at)"
                " VALUES (1, 1, 1, 'veo', ?, 'kie', 'text', 'p', ?, ?, ?, ?, ?, ?)",
                (model, json.dumps({}), status, submitted, submitted,
                 submitted + took if vendor_reported else None, submitted + took))


def _polls_until(offsets: list[float], done_after: float) -> tuple[int, float]:
    """(requests, lag) for a job that finishes `done_after` seconds after submit."""
    for count, at in enumerate(offsets, start=1):
        if at >= done_after:
            return count, at - done_after
    raise AssertionError("never noticed")


async def _offsets(schedule: PollSchedule, now: float, horizon: float, progress_of=None) -> list[float]:  # type: ignore[no-untyped-def]
    """The poll times the schedule would produce for one job, walking forward (as the poller does: each
    poll passes the progress read now and the one read at the poll before)."""
    at, offsets, previous = now, [], None
    while at - now < horizon:
        progress = progress_of(at - now) if progress_of and at > now else None
        at = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=now, now=at, progress=progress,
                                         previous_progress=previous)
        offsets.append(at - now)
        previous = progress
    return offsets


async def test_without_history_the_catalog_prior_is_used(db: Database, fake_clock: FakeClock) -> None:
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3, max_interval=60)
    plan = await schedule.plan_for(MODEL, "text")
    timing = get_model(MODEL).timing
    assert not plan.learned
    prior = Distribution.from_prior(timing)
    assert prior.cdf(plan.offsets[0]) <= 0.2  # the fast end of the guess is not kept waiting...
    assert plan.offsets[0] >= timing.p10 * 0.4  # ...but nothing is asked at once either
    assert any(abs(o - timing.p50) < 30 for o in plan.offsets)
    # As dense as the request budget allows on average; the guess's jobs are mostly noticed in time.
    assert expected_requests(prior, plan.offsets) <= REQUEST_BUDGET
    lags = [_polls_until(list(plan.offsets), prior.quantile(q / 1000))[1] for q in range(1, 1000)]
    assert sum(lag > LATE_SECONDS for lag in lags) / len(lags) <= 0.15


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


async def test_jobs_of_a_kind_split_between_a_plan_pair_to_spend_the_budget(db: Database, fake_clock: FakeClock) -> None:
    await _finished_jobs(db, _lognormal(150, 0.15, 400, seed=3), fake_clock.now() - 10_000)
    schedule = PollSchedule(JobRepository(db), fake_clock, explore_share=0)
    plan = await schedule.plan_for(MODEL, "text")
    assert plan.dearer is not None and 0.0 < plan.dearer_share < 1.0
    dearer = plan.dearer
    followed = {job_id: plan.for_job(job_id) for job_id in range(1, 2001)}
    assert {id(chosen) for chosen in followed.values()} == {id(plan), id(dearer)}
    assert all(plan.for_job(job_id) is chosen for job_id, chosen in followed.items())  # fixed per job
    share = sum(chosen is dearer for chosen in followed.values()) / len(followed)
    assert share == pytest.approx(plan.dearer_share, abs=0.005)  # ids spread evenly, not by chance
    # What the kind spends, judged on its own history: the budget less the margin, not a step below.
    history = Distribution.smoothed(_lognormal(150, 0.15, 400, seed=3))
    spent = [expected_requests(history, [*chosen.early_checks, *chosen.offsets]) for chosen in followed.values()]
    assert sum(spent) / len(spent) == pytest.approx(REQUEST_BUDGET - schedule_module.PLAN_MARGIN, abs=0.02)
    assert expected_requests(history, plan.offsets) < REQUEST_BUDGET - schedule_module.PLAN_MARGIN - 0.05
    # The poller's question, per job: each follows its own plan of the pair.
    now = fake_clock.now()
    cheap_id = next(job_id for job_id, chosen in followed.items() if chosen is plan)
    dear_id = next(job_id for job_id, chosen in followed.items() if chosen is dearer)
    for job_id, chosen in ((cheap_id, plan), (dear_id, dearer)):
        walked, at = [], now
        while at - now < 400:
            at = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=now, now=at, job_id=job_id)
            walked.append(round(at - now, 6))
        planned = [round(offset, 6) for offset in (*chosen.early_checks, *chosen.offsets)]
        assert walked[:len(planned)] == planned
    assert plan.offsets != dearer.offsets


async def test_a_first_figure_is_read_again_soon_so_that_progress_takes_over(db: Database,
                                                                          fake_clock: FakeClock) -> None:
    # A kind that reports progress, read first at an early check 20 s in; the plan's body is minutes away.
    await _finished_jobs(db, _lognormal(150, 0.15, 400, seed=3), fake_clock.now() - 10_000)
    schedule = PollSchedule(JobRepository(db), fake_clock, explore_share=0)
    plan = await schedule.plan_for(MODEL, "text")
    start = fake_clock.now()
    early = start + 20.0
    assert plan.offsets[0] > 60.0

    async def after(now: float, progress: float | None, previous: float | None) -> float:
        return await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=start, now=now,
                                           progress=progress, previous_progress=previous)

    follow = await after(early, 0.12, None)
    assert follow == pytest.approx(early + schedule_module.PROGRESS_FOLLOW_SECONDS)
    # It moved: a rate, so the finish is extrapolated from here on (a far one gets a check on the way).
    assert await after(follow, 0.17, 0.12) == pytest.approx(follow + min(60.0, 0.8 * (29.0 / 0.17 - 29.0)))
    # It stood still (a figure per stage) or there is none (Veo, Sora): the plan, as before.
    body = start + plan.offsets[0]
    assert await after(follow, 0.12, 0.12) == pytest.approx(body)
    assert await after(early, None, None) == pytest.approx(body)
    # Once read, a figure is not "first" again: no follow-up chain for a figure that stands.
    assert await after(early, 0.12, 0.12) == pytest.approx(body)


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


async def test_a_figure_per_stage_is_not_a_rate_the_plan_decides(db: Database, fake_clock: FakeClock) -> None:
    # new-api, which most resellers run, says 10% submitted, 20% queued, 30% in progress, whatever the
    # time left. Read as a rate, a 150 s job at "30%" would look 2.3x its age from done, and be asked
    # again only every minute. The plan decides instead, with one wasted request at most per change.
    await _finished_jobs(db, _lognormal(150, 0.15, 300, seed=1), fake_clock.now() - 10_000)
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3, max_interval=60, explore_share=0)
    start = fake_clock.now()
    plain = await _offsets(schedule, start, 400)
    stuck = await _offsets(schedule, start, 400, progress_of=lambda e: 0.3)
    assert stuck == plain
    staged = await _offsets(schedule, start, 400, progress_of=lambda e: 0.1 if e < 10 else 0.2 if e < 20 else 0.3)
    assert len([at for at in staged if at not in plain]) <= 2
    for finish in (140.0, 150.0, 175.0):
        assert _polls_until(staged, finish)[1] <= _polls_until(plain, finish)[1] + 1e-9


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


async def test_a_finishing_phase_is_not_hammered(fake_clock: FakeClock) -> None:
    # kie.ai's 1080p upsampling, after the 720p file exists, can take minutes.
    schedule = PollSchedule(None, fake_clock, min_interval=3, max_interval=60, explore_share=0)  # type: ignore[arg-type]
    start = fake_clock.now()
    at = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=start, now=start + 200, finishing=True)
    assert 9.0 <= at - (start + 200) <= 60.0


async def test_ninety_nine_percent_is_a_second_or_two_from_done(fake_clock: FakeClock) -> None:
    # A gateway that rounds its percentage says 99% with ~0.5% of the run left: asked again at once,
    # not after 5% of the elapsed time as a finishing phase would be.
    schedule = PollSchedule(None, fake_clock, min_interval=3, max_interval=60, explore_share=0)  # type: ignore[arg-type]
    start = fake_clock.now()
    at = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=start, now=start + 200, progress=0.99,
                                     previous_progress=0.97)
    assert 3.0 <= at - (start + 200) <= 3.1  # 200 / 0.99 - 200 left, and the 1 s margin


# --- early checks: vendor rejections soon after submit ---------------------------------------------

def _early_failures(count: int, seed: int | None = None) -> list[float]:
    """Input rejections: the reseller retries a few times ~5 s apart, then reports failure at 5-25 s.

    Without a seed they are spread evenly over that range (a history that shows the whole range).
    """
    if seed is None:
        return [5.0 + 20.0 * n / (count - 1) for n in range(count)]
    rng = random.Random(seed)
    return [rng.uniform(5.0, 25.0) for _ in range(count)]


async def test_early_failures_get_early_checks_within_the_budget(db: Database, fake_clock: FakeClock) -> None:
    # 3% of the jobs of this kind are rejected 5-25 s after submit; the rest take ~150 s.
    successes, failures = _lognormal(150, 0.15, 194, seed=1), _early_failures(6)
    start = fake_clock.now() - 10_000
    await _finished_jobs(db, successes, start)
    await _finished_jobs(db, failures, start + 200, status="failed")  # among the successes
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3, max_interval=60, explore_share=0)
    plan = await schedule.plan_for(MODEL, "text")
    assert plan.learned and plan.early_checks and max(plan.early_checks) <= 25.0
    assert plan.offsets[0] > 100  # the body still starts at the fast end of the successes
    offsets = await _offsets(schedule, fake_clock.now(), 400)
    for rejected_after in (5.5, 7.0, 18.0, 23.0):
        _, lag = _polls_until(offsets, rejected_after)
        assert lag <= LATE_SECONDS
    # The budget covers the early checks and the body, judged on new jobs of the same mix.
    mix = _lognormal(150, 0.15, 3880, seed=2) + _early_failures(120, seed=5)
    outcomes = [_polls_until(offsets, took) for took in mix]
    assert sum(count for count, _ in outcomes) / len(outcomes) <= REQUEST_BUDGET
    success_lags = sorted(lag for (_, lag), took in zip(outcomes, mix) if took > 50)
    assert success_lags[len(success_lags) // 2] <= 5.0 and success_lags[int(0.99 * len(success_lags))] <= 12.0


def _success_only(schedule: PollSchedule, successes: list[float]) -> PollPlan:
    return schedule.build_plan(MODEL, successes)


async def test_failures_at_the_normal_finish_time_change_nothing(fake_clock: FakeClock) -> None:
    schedule = PollSchedule(None, fake_clock, min_interval=3, explore_share=0)  # type: ignore[arg-type]
    successes = _lognormal(150, 0.15, 194, seed=1)
    at_finish = _lognormal(150, 0.15, 6, seed=6)  # the output filter: failed when the video was done
    plan, alone = schedule.build_plan(MODEL, successes, at_finish), _success_only(schedule, successes)
    assert plan.early_checks == () and plan.offsets[0] == alone.offsets[0]  # no checks, the same start
    assert abs(len(plan.offsets) - len(alone.offsets)) <= 1  # 3% more jobs ending there: a poll at most


async def test_too_little_evidence_of_early_failures_adds_no_checks(fake_clock: FakeClock) -> None:
    schedule = PollSchedule(None, fake_clock, min_interval=3, explore_share=0)  # type: ignore[arg-type]
    successes = _lognormal(150, 0.15, 800, seed=1)
    baseline = _success_only(schedule, successes)
    assert schedule.build_plan(MODEL, successes, [12.0, 14.0]) == baseline  # fewer than 3: no evidence
    clustered = [11.0, 12.0, 13.0, 14.0, 15.0]
    assert schedule.build_plan(MODEL, successes, clustered).early_checks == (15.0,)  # 0.6% of the jobs
    # A check is a request on every job: the same 5 among the vendor's 20,000 finished jobs buy nothing.
    assert schedule.build_plan(MODEL, successes, clustered, finished=20_000).early_checks == ()
    # And the budget decides: with 6 requests a job, the body needs them more.
    frugal = PollSchedule(None, fake_clock, min_interval=3, explore_share=0, request_budget=6)  # type: ignore[arg-type]
    assert frugal.build_plan(MODEL, successes, clustered).early_checks == ()


async def test_failures_scattered_part_way_buy_few_checks(fake_clock: FakeClock) -> None:
    # Infrastructure errors at random moments: catching them takes a check every 10 s, each a request
    # on every job.
    schedule = PollSchedule(None, fake_clock, min_interval=3, explore_share=0)  # type: ignore[arg-type]
    successes = _lognormal(150, 0.15, 194, seed=1)
    scattered = [40.0 + 11.0 * n for n in range(7)]  # 40-106 s
    assert schedule.build_plan(MODEL, successes, scattered, finished=2000).early_checks == ()  # 0.35%
    # Rejections clustered at 5-25 s among them (1% of the vendor's jobs) get checks that catch them
    # in time.
    plan = schedule.build_plan(MODEL, successes, [*scattered, *_early_failures(20)], finished=2000)
    assert plan.early_checks and plan.early_checks[0] <= 16.0
    offsets = [*plan.early_checks, *plan.offsets]
    assert all(_polls_until(offsets, rejected)[1] <= LATE_SECONDS for rejected in _early_failures(20))


async def test_a_prior_plan_gets_no_early_checks(fake_clock: FakeClock) -> None:
    schedule = PollSchedule(None, fake_clock, min_interval=3, explore_share=0)  # type: ignore[arg-type]
    plan = schedule.build_plan(MODEL, [150.0] * 5, _early_failures(20, seed=8))
    assert not plan.learned and plan.early_checks == ()


async def test_tight_early_failures_get_one_check_not_a_wasted_second(fake_clock: FakeClock) -> None:
    schedule = PollSchedule(None, fake_clock, min_interval=3, explore_share=0)  # type: ignore[arg-type]
    plan = schedule.build_plan(MODEL, _lognormal(150, 0.15, 194, seed=1), [12.0, 12.5, 13.0, 13.5, 14.0, 14.0])
    assert len(plan.early_checks) == 1 and 13.5 <= plan.early_checks[0] <= 14.0


async def test_only_the_vendors_latest_reported_failures_count(db: Database, fake_clock: FakeClock,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(schedule_module, "EARLY_HISTORY_ROWS", 300)
    start = fake_clock.now() - 20_000
    # Early failures that finished before the vendor's 300 latest jobs: another era of the vendor.
    await _finished_jobs(db, _early_failures(12, seed=9), start, status="failed")
    await _finished_jobs(db, _lognormal(150, 0.15, 300, seed=1), start + 100)
    # Among them, but not reported by the vendor: timeouts, lost submits, cancellations.
    window = start + 100 + 350
    for status in ("failed", "timed_out", "cancelled"):
        await _finished_jobs(db, _early_failures(12, seed=10), window, status=status, vendor_reported=False)
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3, explore_share=0)
    plan = await schedule.plan_for(MODEL, "text")
    assert plan.learned and plan.early_checks == ()
    # The same failures reported by the vendor, recently, do count (another model of the vendor too).
    await _finished_jobs(db, _early_failures(12, seed=10), window, status="failed", model="veo-quality-kie")
    fake_clock.advance(schedule.cache_seconds + 1)
    assert (await schedule.plan_for(MODEL, "text")).early_checks


@pytest.mark.sqlite_only  # SQLite's EXPLAIN QUERY PLAN
async def test_failure_history_reads_its_own_index(db: Database) -> None:
    rows = await db.fetchall(
        "EXPLAIN QUERY PLAN SELECT status, vendor_done_at, submitted_at FROM jobs"
        " WHERE provider = ? AND vendor_done_at IS NOT NULL AND finished_at >= ?"
        " AND status IN ('succeeded', 'failed') AND submitted_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?",
        ("kie", 0.0, 10))
    assert any("jobs_vendor_outcomes" in str(tuple(row)) for row in rows)


async def test_with_a_callback_there_are_no_early_checks(db: Database, fake_clock: FakeClock) -> None:
    start = fake_clock.now() - 10_000
    await _finished_jobs(db, _lognormal(150, 0.15, 194, seed=1), start)
    await _finished_jobs(db, _early_failures(6, seed=4), start + 200, status="failed")
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3, explore_share=0)
    now = fake_clock.now()
    assert (await schedule.plan_for(MODEL, "text")).early_checks
    first = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=now, now=now, callback=True)
    assert first - now > 150  # the callback reports rejections too: only the sparse safety net


async def test_exploring_keeps_the_early_checks_and_stays_relative_to_the_body(fake_clock: FakeClock) -> None:
    schedule = PollSchedule(None, fake_clock, explore_share=0.25, rng=random.Random(7))  # type: ignore[arg-type]
    plan = schedule.build_plan(MODEL, _lognormal(150, 0.15, 194, seed=1), _early_failures(6, seed=4))
    schedule._cache[(MODEL, "text")] = (fake_clock.now(), plan)
    now, explored = fake_clock.now(), 0
    for _ in range(200):
        walk = [now]
        while walk[-1] - now < plan.offsets[0] - 1e-6:
            walk.append(await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=now, now=walk[-1]))
        polls = [at - now for at in walk[1:]]
        assert polls[:len(plan.early_checks)] == pytest.approx(plan.early_checks)
        if len(polls) > len(plan.early_checks) + 1:
            explored += 1
            assert plan.early_checks[-1] < polls[len(plan.early_checks)] <= 0.7 * plan.offsets[0]
    assert 20 <= explored <= 80  # about a quarter of the jobs, one exploratory poll each
