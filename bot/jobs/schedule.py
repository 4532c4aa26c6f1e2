"""When to ask a vendor about a running job next: a poll schedule learned from finished jobs.

Each (model, mode) has a distribution of submit-to-done times, read from its latest successful jobs
(bounded rows, cached for a few minutes, smoothed so that the plan does not fit the accidents of the
sample). The vendor's reported failures are read too, per vendor (one model's history holds too few
of them): most come at the normal finish (the output filter), but input rejections come 5-25 s after
submit (resellers retry a rejected request a few times) and infrastructure errors at any time.
A new server has no history: it plans on the history the catalog's `Timing` prior describes (its
durations and failures), through the same planner, until its own jobs replace it.
`bot/jobs/placement.py` then places the polls optimally for that mix within the request budget:
nothing before the vendor is plausibly done, dense where jobs of the kind usually finish, sparse in
the tails, and early checks only where enough jobs end early to be worth a request on every job.
The polls before the fastest success seen are the plan's early checks; the rest is its body.
Stragglers past the plan are backed off in proportion to how long they have run.

Planning (`plan_kinds`) is a pure function of the history: the reads are the repository's.

Two other signals override the plan:
- vendor progress (Kling's percentage): the finish is extrapolated and polled just after it, once the
  figure has moved since the job's previous reading (a job's first figure is read again soon, to
  see). Many gateways report a fixed figure per stage (new-api: 10% submitted, 20% queued, 30% in
  progress), which says nothing about the time left; a figure that stands still falls back to the
  plan. A finishing phase with no rate to go by (kie.ai's 1080p upsampling) is polled sparsely instead;
- a completion callback (kie.ai with PUBLIC_BASE_URL): the callback triggers the real check, so the
  plan is only a sparse safety net whose first poll comes after nearly every job of the kind is done.
  The callback reports failures as well, so it gets no early checks either.

POLL_INTERVAL_SECONDS replaces all of this with one fixed gap, for operators who prefer predictability.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Protocol

from bot.catalog import MODELS_BY_KEY, ProviderName, Timing
from bot.clock import Clock
from bot.jobs.models import KindHistory
from bot.jobs.placement import (
    Distribution,
    FinishTimes,
    PricedKind,
    optimal_polls,
    shared_polls,
)

MIN_HISTORY = 8  # a kind's own successes it takes to replace the prior (and to know what they cost)
HISTORY_ROWS = 1000  # a kind's latest successes: fewer leave the tails to chance
CACHE_SECONDS = 600.0  # 1,000 jobs deep, a plan moves little in minutes
# The cost budget: expected status requests per job (the target is <= 10), early checks included, as
# a mean over the server's recent mix of kinds (MIX_ROWS submitted jobs), not per kind: a request
# saves more lateness on a long, spread-out kind (Sora) than on a short, tight one (fast Veo), and a
# kind paced by progress (Kling) leaves most of its share unspent.
REQUEST_BUDGET = 10.0
# Plans are fitted to past jobs, and new jobs use a little more or less than that sample expects.
PLAN_MARGIN = 0.2
MIX_ROWS = 2000  # the latest submitted jobs the budget is shared over, in their mix of kinds
KIND_BUDGET_CAP = 1.5  # no kind is planned above 1.5 times the budget, whatever the others leave
SHARED_BUDGET_FLOOR = 0.5  # ...nor the planned kinds below half of it, whatever the paced ones spend
# A kind whose recent successes mostly reported progress is paced by it (extrapolated finishes), not
# by its plan: counted at what its jobs cost, not what its plan would.
SELF_PACED_PROGRESS = 0.5
# Callback safety net: the first poll once nearly every job of the kind has finished.
SAFETY_NET_QUANTILE = 0.99
SAFETY_NET_FACTOR = 1.3
# Progress: poll this long after the extrapolated finish (a hair late beats a wasted request).
PROGRESS_MARGIN_SECONDS = 1.0
PROGRESS_CHECK_SECONDS = 90.0  # extrapolations further out than this get an intermediate check
# A job's first figure (usually at an early check): read again this soon, to see whether it moves. If
# it does, the finish is extrapolated from then on, instead of waiting for the plan's body, which
# may be minutes away from a job rejected just after its early check.
PROGRESS_FOLLOW_SECONDS = 9.0
FINISHING_SHARE = 0.05  # a finishing phase (kie's 1080p) is polled every 5% of the elapsed time
# The vendor's failures are planned for only with this many among its latest finished jobs...
EARLY_MIN_FAILURES = 3
EARLY_HISTORY_ROWS = 2000  # ...read from this many of them...
VENDOR_MIN_JOBS = 100  # ...once it has finished this many; before, the catalog's failure prior stands in
PRIOR_JOBS = 1000  # jobs in the history a prior describes (equal-mass quantiles: deterministic)
_Z90 = NormalDist().inv_cdf(0.9)


@dataclass(frozen=True)
class Planning:
    """What plans aim at. The three switches exist so that `benchmarks/ablation.py` can show what each
    refinement buys; the bot runs with all of them on."""

    min_interval: float = 3.0
    request_budget: float = REQUEST_BUDGET
    callback_providers: frozenset[ProviderName] = frozenset()  # their kinds are paced by the callback
    smooth: bool = True  # successes through a kernel (Distribution.smoothed), not the raw sample
    vendor_failures: bool = True  # the vendor's failures mixed into each kind's finish times
    shared_budget: bool = True  # one budget over the mix, not each kind on its own

    @property
    def budget(self) -> float:
        """Requests per job the plans aim at: the budget less PLAN_MARGIN, the spare that new jobs use."""
        return max(1.0, self.request_budget - PLAN_MARGIN)


@dataclass(frozen=True)
class PollPlan:
    """Seconds after submit at which a job of this kind is polled, earliest first."""

    offsets: tuple[float, ...]  # the body: where jobs of the kind usually finish, and its tail
    learned: bool  # True when built from the server's own history rather than the catalog prior
    safety_net_first: float = 0.0  # with a completion callback: the first (and sparse) poll
    early_checks: tuple[float, ...] = ()  # before the body, where vendor rejections cluster


def prior_durations(timing: Timing, count: int = PRIOR_JOBS) -> list[float]:
    """`count` successes as the prior describes them: a log-normal through p10, p50 and p90 (each side
    its own spread), at equal-mass quantiles."""
    below, above = math.log(timing.p50 / timing.p10) / _Z90, math.log(timing.p90 / timing.p50) / _Z90
    normal = NormalDist()
    durations = []
    for k in range(count):
        z = normal.inv_cdf((k + 0.5) / count)
        durations.append(min(timing.max_runtime, timing.p50 * math.exp(z * (below if z < 0 else above))))
    return durations


def prior_failures(timing: Timing, successes: Sequence[float]) -> tuple[list[float], int]:
    """(failures, finished jobs) of a history of PRIOR_JOBS as the prior's failure rate and split say:
    rejections spread over `rejected_within`, the rest where these successes end."""
    if timing.failure_rate <= 0:
        return [], PRIOR_JOBS
    failed = max(EARLY_MIN_FAILURES, round(PRIOR_JOBS * timing.failure_rate))
    rejected = round(failed * timing.rejected_share)
    start, end = timing.rejected_within
    failures = [start + (end - start) * (k + 0.5) / rejected for k in range(rejected)]
    ordered = sorted(successes)
    late = failed - rejected
    failures += [ordered[int((k + 0.5) * len(ordered) / late)] for k in range(late)]
    return failures, round(failed / timing.failure_rate)


def plan_kinds(kinds: Sequence[KindHistory], planning: Planning) -> dict[tuple[str, str], PollPlan]:
    """Every kind's plan from its history (the catalog prior's where it has too little), the request
    budget shared over the mix: a mean per job over all of them, spent where a request saves the most.

    A kind paced by something other than its plan (progress, a callback) keeps its own plan within
    the budget and is counted at what its recent jobs really cost; the rest share what is left at one
    price per request (placement.shared_polls), none above KIND_BUDGET_CAP times the budget."""
    budget = planning.budget
    plans: dict[tuple[str, str], PollPlan] = {}
    shared: list[tuple[KindHistory, FinishTimes, Distribution, bool]] = []
    paced_spend = 0.0
    for kind in kinds:
        model = MODELS_BY_KEY.get(kind.model_key)
        if model is None:  # a model since removed from the catalog
            continue
        timing = model.timing_for(kind.mode)
        finish, successes, learned = _finish_times(kind, timing, planning)
        paced_cost = _paced_cost(kind, timing, model.provider in planning.callback_providers, budget)
        if paced_cost is not None or not planning.shared_budget:
            polls = optimal_polls(finish, budget, planning.min_interval)
            plans[(kind.model_key, kind.mode)] = _as_plan(polls, successes, learned, planning.min_interval)
            paced_spend += kind.jobs * (budget if paced_cost is None else paced_cost)
        else:
            shared.append((kind, finish, successes, learned))
    if not shared:
        return plans
    all_jobs = sum(kind.jobs for kind in kinds)
    shared_jobs = sum(kind.jobs for kind, *_ in shared) or 1
    shared_budget = max(budget * SHARED_BUDGET_FLOOR, (budget * all_jobs - paced_spend) / shared_jobs)
    priced = []
    for kind, finish, _, _ in shared:
        one = PricedKind(finish, planning.min_interval)
        one.cap(KIND_BUDGET_CAP * budget)
        priced.append((float(max(kind.jobs, 1)), one))
    for (kind, _, successes, learned), polls in zip(shared, shared_polls(priced, shared_budget), strict=True):
        plans[(kind.model_key, kind.mode)] = _as_plan(polls, successes, learned, planning.min_interval)
    return plans


def _paced_cost(kind: KindHistory, timing: Timing, called_back: bool, budget: float) -> float | None:
    """Requests a job of a kind paced by something other than its plan costs (None: the plan paces it).

    Its own recent successes say both whether it is paced (most reported progress) and what it costs;
    with too few of them, the catalog's prior says (`Timing.paced_requests`), and a kind paced by a
    callback whose cost is not known yet is booked at the whole budget."""
    if kind.costed_jobs >= MIN_HISTORY:
        if called_back or kind.progress_share >= SELF_PACED_PROGRESS:
            return kind.mean_requests
        return None
    if timing.paced_requests is not None:
        return timing.paced_requests
    return budget if called_back else None


def _finish_times(kind: KindHistory, timing: Timing, planning: Planning) -> tuple[FinishTimes, Distribution, bool]:
    """When a job of this kind ends: its successes (the prior's, with too few of its own) and the vendor's
    failures in their share (the prior's, while the vendor has finished too few jobs to tell)."""
    learned = len(kind.durations) >= MIN_HISTORY
    samples = list(kind.durations) if learned else prior_durations(timing)
    successes = Distribution.smoothed(samples) if planning.smooth else Distribution.from_samples(samples)
    if not planning.vendor_failures:
        return FinishTimes(successes), successes, learned
    failures, finished = list(kind.failures), kind.finished
    total = finished if finished is not None else len(kind.durations) + len(failures)
    if total < VENDOR_MIN_JOBS:
        failures, total = prior_failures(timing, samples)
    if len(failures) < EARLY_MIN_FAILURES:
        return FinishTimes(successes), successes, learned
    share = len(failures) / max(total, len(failures))
    return FinishTimes(successes, Distribution.from_samples(failures), share), successes, learned


def _as_plan(polls: Sequence[float], successes: Distribution, learned: bool, min_interval: float) -> PollPlan:
    fastest = successes.quantile(0.0)
    safety_net = max(min_interval, max(successes.quantile(SAFETY_NET_QUANTILE), successes.quantile(0.5)) * SAFETY_NET_FACTOR)
    return PollPlan(tuple(at for at in polls if at >= fastest), learned, safety_net,
                    tuple(at for at in polls if at < fastest))


class HistorySource(Protocol):
    """Where the finished jobs are read (storage.jobs.JobRepository)."""

    async def planning_history(self, also: tuple[str, str], *, mix_rows: int, history_rows: int,
                               vendor_rows: int) -> list[KindHistory]: ...


class PollSchedule:
    """Plans per (model_key, mode), cached; safe to share between tasks of one process."""

    def __init__(self, repository: HistorySource, clock: Clock, *, min_interval: float = 3.0,
                 max_interval: float = 60.0, history_rows: int = HISTORY_ROWS,
                 cache_seconds: float = CACHE_SECONDS, request_budget: float = REQUEST_BUDGET,
                 rng: random.Random | None = None, smooth_history: bool = True,
                 callback_providers: Collection[ProviderName] = (), fixed_interval: float | None = None,
                 vendor_failures: bool = True, shared_budget: bool = True) -> None:
        self.repository = repository
        self.clock = clock
        self.min_interval = max(0.1, min_interval)
        self.max_interval = max(self.min_interval, max_interval)
        self.history_rows = history_rows
        self.cache_seconds = cache_seconds
        self.rng = rng or random.Random()  # error back-off jitter
        self.planning = Planning(self.min_interval, max(1.0, request_budget), frozenset(callback_providers),
                                 smooth_history, vendor_failures, shared_budget)
        # POLL_INTERVAL_SECONDS: the operator chose one gap for every running job over the learned plans.
        self.fixed_interval = fixed_interval if fixed_interval and fixed_interval > 0 else None
        self._cache: dict[tuple[str, str], tuple[float, PollPlan]] = {}
        self._planning = asyncio.Lock()

    @property
    def planned_budget(self) -> float:
        return self.planning.budget

    async def plan_for(self, model_key: str, mode: str) -> PollPlan:
        key = (model_key, mode)
        cached = self._cache.get(key)
        if cached is not None and self.clock.now() - cached[0] < self.cache_seconds:
            return cached[1]
        async with self._planning:  # one replan at a time; the callers queued behind it reuse it
            cached = self._cache.get(key)
            if cached is None or self.clock.now() - cached[0] >= self.cache_seconds:
                await self._plan_all(key)
            return self._cache[key][1]

    async def _plan_all(self, wanted: tuple[str, str]) -> None:
        """Replan every kind in the recent mix (and `wanted`) together: they share one request budget."""
        now = self.clock.now()
        history = await self.repository.planning_history(wanted, mix_rows=MIX_ROWS, history_rows=self.history_rows,
                                                         vendor_rows=EARLY_HISTORY_ROWS)
        # Pure arithmetic, ~10 ms per kind: off the event loop, so commands are answered meanwhile.
        plans = await asyncio.to_thread(plan_kinds, history, self.planning)
        self._cache.update({key: (now, plan) for key, plan in plans.items()})

    def build_plans(self, kinds: Sequence[KindHistory]) -> dict[tuple[str, str], PollPlan]:
        """`plan_kinds` with this schedule's planning."""
        return plan_kinds(kinds, self.planning)

    def build_plan(self, model_key: str, samples: Sequence[float], failures: Sequence[float] = (),
                   finished: int | None = None) -> PollPlan:
        """One kind's plan on its own budget, from successful durations and the vendor's recent
        failures (`finished`: how many of the vendor's jobs those were read from; default successes +
        failures)."""
        kind = KindHistory(model_key, "", 1, samples, failures, finished)
        return plan_kinds([kind], replace(self.planning, shared_budget=False))[(model_key, "")]

    async def next_poll_at(self, *, model_key: str, mode: str, submitted_at: float, now: float,
                           progress: float | None = None, previous_progress: float | None = None,
                           finishing: bool = False, callback: bool = False) -> float:
        """The absolute time of the next status request for a running job.

        `progress`: the vendor's figure now; `previous_progress`: at the job's reading before (None
        if there was none). Only a figure that moved is a rate to extrapolate.
        `callback`: the vendor will call back on completion, so only a sparse safety net is planned.
        With POLL_INTERVAL_SECONDS set (`fixed_interval`), none of this: every job is polled at that gap.
        """
        if self.fixed_interval is not None:
            return now + self.fixed_interval
        elapsed = max(0.0, now - submitted_at)
        earliest = now + self.min_interval if elapsed > 0 else now
        if finishing and not callback:  # no rate to extrapolate, and minutes may be left
            return now + min(self.max_interval, max(self.min_interval, FINISHING_SHARE * elapsed))
        plan = await self.plan_for(model_key, mode)
        if self._progress_is_a_rate(plan, elapsed, progress, previous_progress) and not callback:
            assert progress is not None
            return max(earliest, self._after_progress(now, elapsed, progress))
        if callback:
            if elapsed < plan.safety_net_first:
                return max(earliest, submitted_at + plan.safety_net_first)
            return now + self._straggler_delay(elapsed - plan.safety_net_first)
        planned = self._planned(plan, submitted_at, now, elapsed, earliest)
        first_figure = progress is not None and previous_progress is None and 0.02 <= progress < 1.0
        if first_figure and elapsed >= self.min_interval:
            return min(planned, max(earliest, now + PROGRESS_FOLLOW_SECONDS))
        return planned

    def _progress_is_a_rate(self, plan: PollPlan, elapsed: float, progress: float | None,
                            previous: float | None) -> bool:
        """Whether the figure says when the job will end: it moved since the reading before, and the end
        it points to is one the kind's jobs reach (the plan's last poll). new-api's figures per stage
        (10%, 20%, 30%) move early on too, and read as a rate, "30%" at two minutes points far past
        any job of the kind; a job slower than all of them is left to the plan and its back-off."""
        if progress is None or previous is None or progress <= previous + 1e-9 or not 0.02 <= progress < 1.0:
            return False
        return elapsed >= self.min_interval and elapsed / progress <= plan.offsets[-1]

    def _planned(self, plan: PollPlan, submitted_at: float, now: float, elapsed: float, earliest: float) -> float:
        """The plan's next poll for this job; past the plan, a straggler's back-off."""
        for offset in (*plan.early_checks, *plan.offsets):
            at = submitted_at + offset
            if at > now + 1e-6:
                return max(earliest, at)
        return now + self._straggler_delay(elapsed - plan.offsets[-1])

    def _after_progress(self, now: float, elapsed: float, progress: float) -> float:
        """Just after the finish extrapolated from progress; a far estimate gets a check on the way.

        A vendor that rounds its percentage to the nearest whole one says 99% with a second or
        two left, so 99% is extrapolated like any other figure.
        """
        remaining = elapsed / progress - elapsed
        if remaining > PROGRESS_CHECK_SECONDS:
            return now + min(self.max_interval, 0.8 * remaining)
        return now + remaining + PROGRESS_MARGIN_SECONDS

    def _straggler_delay(self, beyond: float) -> float:
        """A job past everything planned: back off in proportion to how far past it is."""
        return min(self.max_interval, max(self.min_interval, 2 * self.min_interval + 0.25 * max(0.0, beyond)))

    def error_backoff(self, streak: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `streak`-th consecutive failed request (exponential, jittered)."""
        base = min(self.max_interval, self.min_interval * (2 ** max(0, min(streak, 16) - 1)))
        delay = base * (0.5 + 0.5 * self.rng.random())
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, 3600.0))
        return max(self.min_interval * 0.5, delay)
