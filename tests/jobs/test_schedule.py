"""The poll schedule: catalog prior without history, learned quantiles with it, progress when given."""

from __future__ import annotations

import json
import math
import random

import pytest

import bot.jobs.schedule as schedule_module
from bot.catalog import MODELS, Timing, get_model, timing_for
from bot.clock import FakeClock
from bot.jobs.placement import LATE_SECONDS, NOTICE_SECONDS
from storage.jobs import JobRepository
from bot.jobs.schedule import (
    REQUEST_BUDGET,
    KindHistory,
    Planning,
    PollPlan,
    PollSchedule,
    plan_kinds,
)
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
    assert timing.p10 * 0.6 <= plan.offsets[0] <= timing.p10  # nothing before the fast end of the guess
    assert any(abs(o - timing.p50) < 5 for o in plan.offsets)
    assert plan.early_checks and max(plan.early_checks) <= timing.rejected_within[1]  # the failure prior


def _draw_from_prior(rng: random.Random, timing: Timing) -> float:
    """One job as the prior describes it: a failure at its rate and split, else a success."""
    if rng.random() < timing.failure_rate:
        if rng.random() < timing.rejected_share:
            return rng.uniform(*timing.rejected_within)
    z = max(-3.0, min(3.0, rng.gauss(0.0, 1.0)))
    spread = math.log((timing.p50 if z < 0 else timing.p90) / (timing.p10 if z < 0 else timing.p50)) / 1.2816
    return timing.p50 * math.exp(z * spread)


def _judge(plans: dict[tuple[str, str], PollPlan], kinds: list[KindHistory], seed: int) -> tuple[float, float, float]:
    """(p50, p99, requests per job) of these plans on 20,000 jobs drawn from the priors, the kinds ordered
    alike; a job past its plan counts as never noticed. A kind paced by its progress (Kling) costs what
    its prior says and is judged by the progress tests, not here: its plan is only its fallback."""
    rng = random.Random(seed)
    lags: list[float] = []
    requests = 0.0
    for _ in range(20_000):
        kind = rng.choice(kinds)
        plan = plans[(kind.model_key, kind.mode)]
        timing = timing_for(kind.model_key, kind.mode)
        took = _draw_from_prior(rng, timing)
        if timing.paced_requests is not None:
            requests += timing.paced_requests
            continue
        polls = [*plan.early_checks, *plan.offsets]
        found = next((n for n, at in enumerate(polls) if at >= took), None)
        requests += len(polls) if found is None else found + 1
        lags.append(math.inf if found is None else polls[found] + NOTICE_SECONDS - took)
    lags.sort()
    return lags[len(lags) // 2], lags[int(0.99 * len(lags))], requests / 20_000


def test_plans_on_the_priors_alone_do_as_well_as_plans_on_history_when_jobs_follow_them() -> None:
    """A new server: no history at all, every model of the catalog ordered alike. On jobs drawn from the
    priors (their durations and failures) its plans do as well as plans learned from 1,000 such jobs
    per model: 99% noticed within 10 s, at most 10 status requests per job, Kling's paced jobs counted
    at their cost. (The all-jobs median within 3 s needs Kling's progress beside these, as in the
    benchmark: the polled kinds alone are noticed in 3-4.5 s at the median, with history as without.)"""
    empty = [KindHistory(model.key, "text", 1, ()) for model in MODELS]
    rng = random.Random(7)
    learned = []
    for kind in empty:
        timing = timing_for(kind.model_key, kind.mode)
        ends = [_draw_from_prior(rng, timing) for _ in range(1100)]
        failures = [took for took in ends if took < timing.rejected_within[1] + 1]
        successes = [t for t in ends if t not in failures][:1000]
        paced = timing.paced_requests is not None  # its own jobs reported progress and cost what the prior says
        learned.append(KindHistory(kind.model_key, kind.mode, 1, successes, failures, len(ends),
                                   costed_jobs=len(successes), mean_requests=timing.paced_requests or 0.0,
                                   progress_share=1.0 if paced else 0.0))
    cold = _judge(plan_kinds(empty, Planning()), empty, seed=20240601)
    warm = _judge(plan_kinds(learned, Planning()), empty, seed=20240601)
    assert cold[1] <= LATE_SECONDS and cold[2] <= REQUEST_BUDGET
    assert cold[0] <= warm[0] + 0.5 and cold[1] <= warm[1] + 0.3 and cold[2] <= warm[2] + 0.2


async def test_history_makes_polls_dense_where_jobs_finish(db: Database, fake_clock: FakeClock) -> None:
    # Jobs of this kind take 170-190 s.
    await _finished_jobs(db, [170 + (n * 7) % 21 for n in range(120)], fake_clock.now() - 10_000)
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=2, max_interval=60)
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


async def test_a_first_figure_is_read_again_soon_so_that_progress_takes_over(db: Database,
                                                                          fake_clock: FakeClock) -> None:
    # A kind that reports progress, read first at an early check 20 s in; the plan's body is minutes away.
    await _finished_jobs(db, _lognormal(150, 0.15, 400, seed=3), fake_clock.now() - 10_000)
    schedule = PollSchedule(JobRepository(db), fake_clock)
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
    assert refreshed.learned and refreshed.offsets[0] <= 35


async def test_progress_estimates_the_finish(db: Database, fake_clock: FakeClock) -> None:
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=2, max_interval=60)
    total = 200.0  # far from the prior's median (140 s), within its reach: only progress can tell
    offsets = await _offsets(schedule, fake_clock.now(), 400, progress_of=lambda e: min(0.99, e / total))
    count, lag = _polls_until(offsets, total)
    assert count <= 10 and lag <= 3.0


async def test_a_figure_per_stage_is_not_a_rate_the_plan_decides(db: Database, fake_clock: FakeClock) -> None:
    # new-api, which most resellers run, says 10% submitted, 20% queued, 30% in progress, whatever the
    # time left. Read as a rate, a 150 s job at "30%" would look 2.3x its age from done, and be asked
    # again only every minute. The plan decides instead, with one wasted request at most per change.
    await _finished_jobs(db, _lognormal(150, 0.15, 300, seed=1), fake_clock.now() - 10_000)
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3, max_interval=60)
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
    schedule = PollSchedule(None, fake_clock, min_interval=3)  # type: ignore[arg-type]
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
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3, max_interval=60)
    start = fake_clock.now()
    first = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=start, now=start, callback=True)
    slowest_seen = max(await JobRepository(db).recent_durations(MODEL, "text", 200))
    assert first - start >= slowest_seen  # after (nearly) every job of the kind is done
    later = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=start, now=first, callback=True)
    assert later - first >= 3.0
    dense_first = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=start, now=start)
    assert dense_first < first


async def test_a_finishing_phase_is_not_hammered(fake_clock: FakeClock) -> None:
    # kie.ai's 1080p upsampling, after the 720p file exists, can take minutes.
    schedule = PollSchedule(None, fake_clock, min_interval=3, max_interval=60)  # type: ignore[arg-type]
    start = fake_clock.now()
    at = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=start, now=start + 200, finishing=True)
    assert 9.0 <= at - (start + 200) <= 60.0


async def test_ninety_nine_percent_is_a_second_or_two_from_done(db: Database, fake_clock: FakeClock) -> None:
    # A gateway that rounds its percentage says 99% with ~0.5% of the run left: asked again at once,
    # not after 5% of the elapsed time as a finishing phase would be.
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3, max_interval=60)
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
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3, max_interval=60)
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
    schedule = PollSchedule(None, fake_clock, min_interval=3)  # type: ignore[arg-type]
    successes = _lognormal(150, 0.15, 194, seed=1)
    at_finish = _lognormal(150, 0.15, 6, seed=6)  # the output filter: failed when the video was done
    plan, alone = schedule.build_plan(MODEL, successes, at_finish), _success_only(schedule, successes)
    assert plan.early_checks == () and plan.offsets[0] == alone.offsets[0]  # no checks, the same start
    assert abs(len(plan.offsets) - len(alone.offsets)) <= 1  # 3% more jobs ending there: a poll at most


async def test_too_little_evidence_of_early_failures_adds_no_checks(fake_clock: FakeClock) -> None:
    schedule = PollSchedule(None, fake_clock, min_interval=3)  # type: ignore[arg-type]
    successes = _lognormal(150, 0.15, 800, seed=1)
    baseline = _success_only(schedule, successes)
    assert schedule.build_plan(MODEL, successes, [12.0, 14.0]) == baseline  # fewer than 3: no evidence
    clustered = [11.0, 12.0, 13.0, 14.0, 15.0]
    assert schedule.build_plan(MODEL, successes, clustered).early_checks == (15.0,)  # 0.6% of the jobs
    # A check is a request on every job: the same 5 among the vendor's 20,000 finished jobs buy nothing.
    assert schedule.build_plan(MODEL, successes, clustered, finished=20_000).early_checks == ()
    # And the budget decides: with 6 requests a job, the body needs them more.
    frugal = PollSchedule(None, fake_clock, min_interval=3, request_budget=6)  # type: ignore[arg-type]
    assert frugal.build_plan(MODEL, successes, clustered).early_checks == ()


async def test_failures_scattered_part_way_buy_few_checks(fake_clock: FakeClock) -> None:
    # Infrastructure errors at random moments: catching them takes a check every 10 s, each a request
    # on every job.
    schedule = PollSchedule(None, fake_clock, min_interval=3)  # type: ignore[arg-type]
    successes = _lognormal(150, 0.15, 194, seed=1)
    scattered = [40.0 + 11.0 * n for n in range(7)]  # 40-106 s
    assert schedule.build_plan(MODEL, successes, scattered, finished=2000).early_checks == ()  # 0.35%
    # Rejections clustered at 5-25 s among them (1% of the vendor's jobs) get checks that catch them
    # in time.
    plan = schedule.build_plan(MODEL, successes, [*scattered, *_early_failures(20)], finished=2000)
    assert plan.early_checks and plan.early_checks[0] <= 16.0
    offsets = [*plan.early_checks, *plan.offsets]
    assert all(_polls_until(offsets, rejected)[1] <= LATE_SECONDS for rejected in _early_failures(20))


async def test_a_prior_plan_checks_early_for_the_rejections_the_prior_expects(fake_clock: FakeClock) -> None:
    schedule = PollSchedule(None, fake_clock, min_interval=3)  # type: ignore[arg-type]
    plan = schedule.build_plan(MODEL, [150.0] * 5)
    assert not plan.learned and plan.early_checks and max(plan.early_checks) <= 25.0
    # Once the vendor has finished enough jobs of its own, its failures (here: none early) decide.
    learned = schedule.build_plan(MODEL, _lognormal(150, 0.15, 194, seed=1), finished=2000)
    assert learned.learned and learned.early_checks == ()


async def test_tight_early_failures_get_one_check_not_a_wasted_second(fake_clock: FakeClock) -> None:
    schedule = PollSchedule(None, fake_clock, min_interval=3)  # type: ignore[arg-type]
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
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3)
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
    schedule = PollSchedule(JobRepository(db), fake_clock, min_interval=3)
    now = fake_clock.now()
    assert (await schedule.plan_for(MODEL, "text")).early_checks
    first = await schedule.next_poll_at(model_key=MODEL, mode="text", submitted_at=now, now=now, callback=True)
    assert first - now > 150  # the callback reports rejections too: only the sparse safety net
