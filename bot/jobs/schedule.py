"""When to ask a vendor about a running job next: a poll schedule learned from finished jobs.

Each (model, mode) has a distribution of submit-to-done times, read from the latest successful
jobs (bounded rows, cached for a few minutes, smoothed so that the plan does not fit the accidents of
the sample) or, with too little history, the catalog's `Timing` prior. The vendor's reported failures are read too, per vendor (one model's history holds too few of
them): most come at the normal finish (the output filter), but input rejections come 5-25 s after
submit (resellers retry a rejected request a few times) and infrastructure errors at any time.
`bot/jobs/placement.py` then places the polls optimally for that mix within the request budget:
nothing before the vendor is plausibly done, dense where jobs of the kind usually finish, sparse in
the tails, and early checks only where enough jobs end early to be worth a request on every job.
The polls before the fastest success seen are the plan's early checks; the rest is its body.
Stragglers past the plan are backed off in proportion to how long they have run.

Two other signals override the plan:
- vendor progress (Kling's percentage): the finish is extrapolated and polled just after it, once the
  figure has moved since the job's previous reading (a job's first figure is read again soon, to
  see). Many gateways report a fixed figure per stage (new-api: 10% submitted, 20% queued, 30% in
  progress), which says nothing about the time left; a figure that stands still falls back to the
  plan. A finishing phase with no rate to go by (kie.ai's 1080p upsampling) is polled sparsely instead;
- a completion callback (kie.ai with PUBLIC_BASE_URL): the callback triggers the real check, so the
  plan is only a sparse safety net whose first poll comes after nearly every job of the kind is done.
  The callback reports failures as well, so it gets no early checks either.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from bot.catalog import MODELS_BY_KEY, ProviderName, timing_for
from bot.clock import Clock
from bot.jobs.placement import Distribution, FinishTimes, PlanMix, PricedKind, optimal_mix, shared_mixes
from bot.jobs.repository import JobRepository

MIN_HISTORY = 8
HISTORY_ROWS = 1000  # a kind's latest successes: 200 left the tails to chance (benchmarks/bound.py)
CACHE_SECONDS = 600.0  # 1,000 jobs deep, a plan moves little in minutes; planning all kinds takes ~0.1 s
# The cost budget: expected status requests per job (the target is <= 10), early checks included, as
# a mean over the server's recent mix of kinds (MIX_ROWS submitted jobs), not per kind: a request
# saves more lateness on Sora (long, spread out) than on fast Veo, and Kling's progress leaves most of
# its share unspent. Offline (benchmarks/bound.py), sharing it took the Veo and Sora jobs noticed late
# from ~1.2% to ~0.6% of all jobs at the same mean (Sora ~13.7 requests, fast Veo ~10, Kling ~5).
# Plans are fitted to past jobs, and new jobs use a little more or less than that sample expects, so
# the budget is planned with PLAN_MARGIN to spare. Offline (5 kinds, each the mean of 4 histories),
# plan pairs that spend 9.8 exactly used 9.72-9.97 on new jobs (Sora the most); with 0.1 spare, 10.07.
REQUEST_BUDGET = 10.0
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
# Where a vendor does not date its own finish (Kling's gateway envelope), finish times are recorded
# when *observed*, so that history alone never moves earlier: a few jobs get one exploratory poll
# well before the fast end, so a vendor that got faster is noticed.
EXPLORE_SHARE = 0.03
EXPLORE_FACTOR = 0.6
# Progress: poll this long after the extrapolated finish (a hair late beats a wasted request).
PROGRESS_MARGIN_SECONDS = 1.0
PROGRESS_CHECK_SECONDS = 90.0  # extrapolations further out than this get an intermediate check
# A job's first figure (usually at an early check): read again this soon, to see whether it moves. If
# it does, the finish is extrapolated from then on, instead of waiting for the plan's body: a Kling
# job rejected just after its only early check was found only when the body began, minutes later.
PROGRESS_FOLLOW_SECONDS = 9.0
FINISHING_SHARE = 0.05  # a finishing phase (kie's 1080p) is polled every 5% of the elapsed time
# The vendor's failures are planned for only with this many among its latest finished jobs.
EARLY_MIN_FAILURES = 3
EARLY_HISTORY_ROWS = 2000   # the vendor's latest finished jobs they are learned from

_GOLDEN = (5 ** 0.5 - 1) / 2


def follows_dearer(job_id: int, dearer_share: float) -> bool:
    """Whether this job follows the dearer plan of a pair: its id times the golden ratio, mod 1, against
    the share. Fixed per job (a restart keeps it), and consecutive ids spread evenly over [0, 1)."""
    return (job_id * _GOLDEN) % 1.0 < dearer_share


@dataclass(frozen=True)
class KindHistory:
    """What planning one kind reads from the database: how often it is ordered, when its jobs end, and
    what its successes cost."""

    model_key: str
    mode: str
    jobs: int  # among the latest MIX_ROWS submitted jobs
    durations: Sequence[float]  # submit-to-done of its latest successes
    failures: Sequence[float] = ()  # submit-to-done of its vendor's latest failures...
    finished: int | None = None  # ...among this many of the vendor's finished jobs
    costed_jobs: int = 0  # successes the two figures below are read from
    mean_requests: float = 0.0
    progress_share: float = 0.0  # share of them that reported progress
    callback: bool = False  # the vendor calls back on completion


@dataclass(frozen=True)
class PollPlan:
    """Seconds after submit at which a job of this kind is polled, earliest first."""

    offsets: tuple[float, ...]  # the body: where jobs of the kind usually finish, and its tail
    learned: bool  # True when built from history rather than the catalog prior
    safety_net_first: float = 0.0  # with a completion callback: the first (and sparse) poll
    early_checks: tuple[float, ...] = ()  # before the body, where vendor rejections cluster
    # The plan a step dearer, for this share of jobs, so that the kind spends its budget exactly
    # (placement.PlanMix); None: every job follows this one.
    dearer: PollPlan | None = None
    dearer_share: float = 0.0

    def for_job(self, job_id: int | None) -> PollPlan:
        """The plan this job follows (this one when the job is not known)."""
        if self.dearer is None or job_id is None:
            return self
        return self.dearer if follows_dearer(job_id, self.dearer_share) else self


class PollSchedule:
    """Learned per (model_key, mode); safe to share between tasks of one process."""

    def __init__(self, repository: JobRepository, clock: Clock, *, min_interval: float = 3.0,
                 max_interval: float = 60.0, history_rows: int = HISTORY_ROWS,
                 cache_seconds: float = CACHE_SECONDS, request_budget: float = REQUEST_BUDGET,
                 explore_share: float = EXPLORE_SHARE, rng: random.Random | None = None,
                 smooth_history: bool = True, callback_providers: Collection[ProviderName] = (),
                 fixed_interval: float | None = None) -> None:
        self.repository = repository
        self.clock = clock
        self.min_interval = max(0.1, min_interval)
        self.max_interval = max(self.min_interval, max_interval)
        self.history_rows = history_rows
        self.cache_seconds = cache_seconds
        self.request_budget = max(1.0, request_budget)
        self.explore_share = min(1.0, max(0.0, explore_share))
        self.rng = rng or random.Random()
        self.smooth_history = smooth_history  # False: plan on the raw sample (benchmarks/bound.py compares)
        # Vendors that call back on completion: their kinds are paced by the callback, not the plan.
        self.callback_providers = frozenset(callback_providers)
        # POLL_INTERVAL_SECONDS: the operator chose one gap for every running job over the learned plans.
        self.fixed_interval = fixed_interval if fixed_interval and fixed_interval > 0 else None
        self._cache: dict[tuple[str, str], tuple[float, PollPlan]] = {}
        self._planning = asyncio.Lock()

    @property
    def planned_budget(self) -> float:
        """Requests per job the plans aim at: the budget less PLAN_MARGIN, the spare that new jobs use."""
        return max(1.0, self.request_budget - PLAN_MARGIN)

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
        mix = await self.repository.recent_mix(MIX_ROWS)
        mix.setdefault(wanted, 1)
        failures_by_vendor: dict[ProviderName, tuple[list[float], int]] = {}
        kinds: list[KindHistory] = []
        for (model_key, mode), jobs in sorted(mix.items()):
            model = MODELS_BY_KEY.get(model_key)
            if model is None:  # a model since removed from the catalog
                continue
            samples = await self.repository.recent_durations(model_key, mode, self.history_rows)
            failures: tuple[list[float], int | None] = ([], None)
            if len(samples) >= MIN_HISTORY:  # a prior plan gets no early checks anyway
                if model.provider not in failures_by_vendor:
                    failures_by_vendor[model.provider] = await self.repository.recent_vendor_failures(
                        model.provider, EARLY_HISTORY_ROWS)
                failures = failures_by_vendor[model.provider]
            costs = await self.repository.recent_kind_costs(model_key, mode, self.history_rows)
            kinds.append(KindHistory(model_key, mode, jobs, samples, *failures, *costs,
                                     callback=model.provider in self.callback_providers))
        # Pure arithmetic, ~10 ms per kind: off the event loop, so commands are answered meanwhile.
        plans = await asyncio.to_thread(self.build_plans, kinds)
        self._cache.update({key: (now, plan) for key, plan in plans.items()})

    def build_plans(self, kinds: Sequence[KindHistory]) -> dict[tuple[str, str], PollPlan]:
        """Every kind's plan, the request budget shared over the mix: it is a mean per job over all of
        them, and a request buys more on a long, spread-out kind than on a short, tight one.

        A kind paced by something other than its plan (progress, a callback) keeps its own plan within
        the budget and is counted at what its recent jobs really cost; the rest share what is left at one
        price per request (placement.shared_mixes), none above KIND_BUDGET_CAP times the budget."""
        budget = self.planned_budget
        plans: dict[tuple[str, str], PollPlan] = {}
        shared: list[tuple[KindHistory, FinishTimes, Distribution, bool]] = []
        paced_spend = 0.0
        for kind in kinds:
            finish, successes, learned = self._finish_times(kind.model_key, kind.durations, kind.failures,
                                                            kind.finished, kind.mode)
            if kind.callback or (kind.costed_jobs >= MIN_HISTORY and kind.progress_share >= SELF_PACED_PROGRESS):
                mix = optimal_mix(finish, budget, self.min_interval)
                plans[(kind.model_key, kind.mode)] = self._as_plan(mix, successes, learned)
                paced_spend += kind.jobs * (kind.mean_requests if kind.costed_jobs >= MIN_HISTORY else budget)
            else:
                shared.append((kind, finish, successes, learned))
        if not shared:
            return plans
        all_jobs = sum(kind.jobs for kind in kinds)
        shared_jobs = sum(kind.jobs for kind, *_ in shared)
        shared_budget = max(budget * SHARED_BUDGET_FLOOR, (budget * all_jobs - paced_spend) / shared_jobs)
        priced = []
        for kind, finish, _, _ in shared:
            one = PricedKind(finish, self.min_interval)
            one.cap(KIND_BUDGET_CAP * budget)
            priced.append((float(kind.jobs), one))
        for (kind, _, successes, learned), mix in zip(shared, shared_mixes(priced, shared_budget)):
            plans[(kind.model_key, kind.mode)] = self._as_plan(mix, successes, learned)
        return plans

    def build_plan(self, model_key: str, samples: Sequence[float], failures: Sequence[float] = (),
                   finished: int | None = None) -> PollPlan:
        """One kind's plan on its own budget, from successful durations and the vendor's recent
        failures (`finished`: how many of the vendor's jobs those were read from; default successes +
        failures)."""
        finish, successes, learned = self._finish_times(model_key, samples, failures, finished)
        mix = optimal_mix(finish, self.planned_budget, self.min_interval)
        return self._as_plan(mix, successes, learned)

    def _finish_times(self, model_key: str, samples: Sequence[float], failures: Sequence[float],
                      finished: int | None, mode: str = "") -> tuple[FinishTimes, Distribution, bool]:
        learned = len(samples) >= MIN_HISTORY
        successes = self._distribution(samples) if learned else Distribution.from_prior(timing_for(model_key, mode))
        finish = FinishTimes(successes)
        if learned and len(failures) >= EARLY_MIN_FAILURES:  # without history, no evidence of them
            total = finished if finished is not None else len(samples) + len(failures)
            finish = FinishTimes(successes, Distribution.from_samples(failures), len(failures) / max(total, len(failures)))
        return finish, successes, learned

    def _as_plan(self, mix: PlanMix, successes: Distribution, learned: bool) -> PollPlan:
        fastest = successes.quantile(0.0)
        safety_net = max(self.min_interval,
                         max(successes.quantile(SAFETY_NET_QUANTILE), successes.quantile(0.5)) * SAFETY_NET_FACTOR)

        def plan(polls: Sequence[float], dearer: PollPlan | None = None, share: float = 0.0) -> PollPlan:
            checks = tuple(at for at in polls if at < fastest)
            body = tuple(at for at in polls if at >= fastest)
            return PollPlan(body, learned, safety_net, checks, dearer, share)

        if mix.dearer_share <= 0.0 or mix.dearer == mix.cheaper:
            return plan(mix.cheaper)
        return plan(mix.cheaper, plan(mix.dearer), mix.dearer_share)

    def _distribution(self, samples: Sequence[float]) -> Distribution:
        return Distribution.smoothed(samples) if self.smooth_history else Distribution.from_samples(samples)

    async def next_poll_at(self, *, model_key: str, mode: str, submitted_at: float, now: float,
                           progress: float | None = None, previous_progress: float | None = None,
                           finishing: bool = False, callback: bool = False, job_id: int | None = None) -> float:
        """The absolute time of the next status request for a running job.

        `job_id` picks which of the kind's plan pair the job follows (PollPlan.for_job).

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
        moved = progress is not None and previous_progress is not None and progress > previous_progress + 1e-9
        if moved and progress is not None and 0.02 <= progress < 1.0 and elapsed >= self.min_interval \
                and not callback:
            return max(earliest, self._after_progress(now, elapsed, progress))
        plan = (await self.plan_for(model_key, mode)).for_job(job_id)
        if callback:
            if elapsed < plan.safety_net_first:
                return max(earliest, submitted_at + plan.safety_net_first)
            return now + self._straggler_delay(elapsed - plan.safety_net_first)
        planned = self._planned(plan, submitted_at, now, elapsed, earliest)
        first_figure = progress is not None and previous_progress is None and 0.02 <= progress < 1.0
        if first_figure and elapsed >= self.min_interval:
            return min(planned, max(earliest, now + PROGRESS_FOLLOW_SECONDS))
        return planned

    def _planned(self, plan: PollPlan, submitted_at: float, now: float, elapsed: float, earliest: float) -> float:
        """The plan's next poll for this job (or its exploratory one); past the plan, a straggler's back-off."""
        if self._explores(plan, elapsed):
            return max(earliest, submitted_at + max(self.min_interval, EXPLORE_FACTOR * plan.offsets[0]))
        for offset in (*plan.early_checks, *plan.offsets):
            at = submitted_at + offset
            if at > now + 1e-6:
                return max(earliest, at)
        return now + self._straggler_delay(elapsed - plan.offsets[-1])

    def _explores(self, plan: PollPlan, elapsed: float) -> bool:
        """Whether this job gets the exploratory poll before the body (decided once per job).

        Decided when the body's first poll would come next: at submit, or after the last early check
        (early checks are kept; exploring stays relative to the body, where the vendor may speed up).
        """
        if not self.explore_share:
            return False
        if plan.early_checks:
            explore_at = max(self.min_interval, EXPLORE_FACTOR * plan.offsets[0])
            if not plan.early_checks[-1] - 1e-6 <= elapsed < explore_at - 1e-6:
                return False
        elif elapsed != 0:
            return False
        return self.rng.random() < self.explore_share

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
