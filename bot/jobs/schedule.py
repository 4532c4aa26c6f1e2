"""When to ask a vendor about a running job next: a poll schedule learned from finished jobs.

Each (model, mode) has a distribution of submit-to-done times, read from the latest successful
jobs (bounded rows, cached for a few minutes) or, with too little history, the catalog's `Timing`
prior. Polls are then placed to minimise the expected delay between "the vendor finished" and "we
noticed" under a fixed request budget: with point density proportional to f(t)^ALPHA (f = the
finish-time density) the gaps are narrow where jobs of that kind usually finish and wider in the
tails; nothing is asked before the fast end of the distribution. Stragglers past the plan are backed
off in proportion to how long they have run.

Vendor-reported failures are read too, per vendor (how soon a vendor rejects is its own habit, and
one model's history holds too few rejections). Most fail at the normal finish time (output filter)
and are caught by the plan above, but an input rejection comes 5-25 s after submit (resellers retry
a rejected request a few times, ~5 s apart); the plan's first poll, a minute or two later, would
tell the member late. So where failures before that first poll *cluster* (within EARLY_CHECK_GAP:
at least EARLY_MIN_FAILURES of them, EARLY_MIN_SHARE of the vendor's latest finished jobs, and
EARLY_MIN_DENSITY times what an even spread of those failures would put there), up to
MAX_EARLY_CHECKS checks are placed at the end of the densest such windows; failures scattered
part-way (infrastructure errors) buy no check, since a check is a request on every job.
The body is then planned with what those checks leave of the budget. Catalog-prior plans get none:
without history there is no evidence of early failures.

Two other signals override the plan:
- vendor progress (Kling's percentage): the finish is extrapolated and polled just after it;
- a completion callback (kie.ai with PUBLIC_BASE_URL): the callback triggers the real check, so the
  plan is only a sparse safety net whose first poll comes after nearly every job of the kind is done.
  The callback reports failures as well, so it gets no early checks either.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass

from bot.catalog import Timing, get_model
from bot.clock import Clock
from bot.jobs.repository import JobRepository

MIN_HISTORY = 8
HISTORY_ROWS = 200
CACHE_SECONDS = 180.0
# The cost budget: expected status requests per job of a kind without progress or callback (the
# target is <= 10), early checks included. The realised average comes out below it (the plan's
# count is rounded down), but a job that finishes late in its distribution uses more, an early one fewer.
REQUEST_BUDGET = 10.0
MAX_PLANNED_POLLS = 24
# Point density ~ f^ALPHA: 0.5 minimises the mean lag, 0 is uniform (minimises the worst lag);
# 0.25 keeps the median lag near the optimum while holding the p99 down.
ALPHA = 0.25
PLAN_LOW_QUANTILE = 0.002   # nothing is polled before this share of jobs is done
PLAN_HIGH_QUANTILE = 0.998  # the last planned poll; past it the job is a straggler
DENSITY_BINS = 48
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
NEARLY_DONE_PROGRESS = 0.99
NEARLY_DONE_SHARE = 0.05
# Early checks for vendor rejections soon after submit: evidence needed, and how they are spaced.
EARLY_MIN_FAILURES = 3
EARLY_MIN_SHARE = 0.005     # of the vendor's latest finished jobs, per check
EARLY_MIN_DENSITY = 3.0     # times an even spread of the failures before the body
EARLY_CHECK_GAP = 10.0      # a rejection is noticed within this long
EARLY_HISTORY_ROWS = 2000   # the vendor's latest finished jobs they are learned from
MAX_EARLY_CHECKS = 2


class Distribution:
    """A finish-time distribution, queried by quantile or CDF (piecewise linear)."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        # points: (fraction, seconds), fractions increasing from 0 to 1, seconds non-decreasing.
        self._fractions = [p[0] for p in points]
        self._seconds = [p[1] for p in points]

    @classmethod
    def from_samples(cls, samples: Sequence[float]) -> "Distribution":
        ordered = sorted(samples)
        if len(ordered) == 1:
            return cls([(0.0, ordered[0]), (1.0, ordered[0])])
        last = len(ordered) - 1
        return cls([(i / last, value) for i, value in enumerate(ordered)])

    @classmethod
    def from_prior(cls, timing: Timing) -> "Distribution":
        spread = max(timing.p90 - timing.p50, 1.0)
        return cls([
            (0.0, timing.p10 * 0.5), (0.1, timing.p10), (0.5, timing.p50),
            (0.9, timing.p90), (1.0, min(timing.p90 + spread, timing.max_runtime)),
        ])

    def quantile(self, fraction: float) -> float:
        return _interpolate(self._fractions, self._seconds, min(1.0, max(0.0, fraction)))

    def cdf(self, seconds: float) -> float:
        if seconds <= self._seconds[0]:
            return 0.0
        if seconds >= self._seconds[-1]:
            return 1.0
        return _interpolate(self._seconds, self._fractions, seconds)


def _interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear y(x) for sorted xs (ties resolved to the first)."""
    index = bisect.bisect_left(xs, x)
    if index <= 0:
        return ys[0]
    if index >= len(xs):
        return ys[-1]
    x0, x1, y0, y1 = xs[index - 1], xs[index], ys[index - 1], ys[index]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def place_polls(distribution: Distribution, count: int, min_gap: float) -> list[float]:
    """`count` poll offsets over the distribution's body, point density ~ f^ALPHA.

    Each poll closes a cell of equal f^ALPHA-mass; the last one sits at PLAN_HIGH_QUANTILE. The
    density is a histogram of DENSITY_BINS bins (cheap: no event-loop stall, at most once per cache
    period per kind). Polls closer than `min_gap` are merged.
    """
    low = distribution.quantile(PLAN_LOW_QUANTILE)
    high = distribution.quantile(PLAN_HIGH_QUANTILE)
    if high - low < min_gap or count <= 1:
        return [max(min_gap, high)]
    width = (high - low) / DENSITY_BINS
    edges = [low + i * width for i in range(DENSITY_BINS + 1)]
    masses = [distribution.cdf(b) - distribution.cdf(a) for a, b in zip(edges, edges[1:])]
    weights = [max(m / width, 1e-12) ** ALPHA for m in masses]
    total = sum(weights)
    cumulative = [0.0]
    for weight in weights:
        cumulative.append(cumulative[-1] + weight / total)
    offsets: list[float] = []
    for index in range(1, count + 1):
        at = _interpolate(cumulative, edges, index / count)
        if not offsets or at - offsets[-1] >= min_gap:
            offsets.append(at)
    if offsets[-1] < high - 1e-6:
        offsets.append(high)
    return offsets


def expected_requests(distribution: Distribution, offsets: Sequence[float]) -> float:
    """Mean polls a job of this distribution uses: poll i+1 happens when poll i still saw it running."""
    return 1.0 + sum(1.0 - distribution.cdf(at) for at in offsets[:-1])


def plan_within_budget(distribution: Distribution, budget: float, min_gap: float) -> list[float]:
    """The densest placement whose expected request count stays within `budget`."""
    best = place_polls(distribution, 1, min_gap)
    for count in range(2, MAX_PLANNED_POLLS + 1):
        offsets = place_polls(distribution, count, min_gap)
        if expected_requests(distribution, offsets) > budget:
            break
        best = offsets
    return best


def place_early_checks(early_failures: Sequence[float], finished: int, min_gap: float,
                       span: float) -> list[float]:
    """Checks where failures before the body (which starts at `span`) cluster, earliest first.

    Greedy: a check at t notices every failure in (t - EARLY_CHECK_GAP, t] within the gap; the
    densest window is taken first, its failures removed, and so on, while a window holds at least
    EARLY_MIN_FAILURES failures, EARLY_MIN_SHARE of the `finished` jobs and EARLY_MIN_DENSITY times
    an even spread's share (else the check, one request on every job, would buy almost nothing, or
    would be placed on a chance bunching of failures that come at any time). Checks closer than
    `min_gap` are merged.
    """
    remaining = sorted(early_failures)
    checks: list[float] = []
    while remaining and len(checks) < MAX_EARLY_CHECKS:
        even_spread = len(remaining) * EARLY_CHECK_GAP / max(span, EARLY_CHECK_GAP)
        needed = max(EARLY_MIN_FAILURES, EARLY_MIN_SHARE * finished, EARLY_MIN_DENSITY * even_spread)
        best_at, best_count = remaining[0], 0
        for index, at in enumerate(remaining):
            count = index + 1 - bisect.bisect_right(remaining, at - EARLY_CHECK_GAP)
            if count > best_count:
                best_at, best_count = at, count
        if best_count < needed:
            break
        checks.append(max(min_gap, best_at))
        remaining = [f for f in remaining if not best_at - EARLY_CHECK_GAP < f <= best_at]
    merged: list[float] = []
    for check in sorted(checks):
        if merged and check - merged[-1] < min_gap:
            merged[-1] = check  # the later one notices both windows' failures
        else:
            merged.append(check)
    return merged


def early_check_cost(checks: Sequence[float], finished_sorted: Sequence[float]) -> float:
    """Expected requests per job the checks use: each is made if the job was running at the one before.

    `finished_sorted`: submit-to-done seconds of every finished job (successes and failures).
    """
    cost, previous = 0.0, None
    for at in checks:
        if previous is None:
            cost += 1.0
        else:
            cost += 1.0 - bisect.bisect_right(finished_sorted, previous) / max(1, len(finished_sorted))
        previous = at
    return cost


@dataclass(frozen=True)
class PollPlan:
    """Seconds after submit at which a job of this kind is polled, earliest first."""

    offsets: tuple[float, ...]  # the body: where jobs of the kind usually finish, and its tail
    learned: bool  # True when built from history rather than the catalog prior
    safety_net_first: float = 0.0  # with a completion callback: the first (and sparse) poll
    early_checks: tuple[float, ...] = ()  # before the body, where vendor rejections cluster


class PollSchedule:
    """Learned per (model_key, mode); safe to share between tasks of one process."""

    def __init__(self, repository: JobRepository, clock: Clock, *, min_interval: float = 3.0,
                 max_interval: float = 60.0, history_rows: int = HISTORY_ROWS,
                 cache_seconds: float = CACHE_SECONDS, request_budget: float = REQUEST_BUDGET,
                 explore_share: float = EXPLORE_SHARE, rng: random.Random | None = None) -> None:
        self.repository = repository
        self.clock = clock
        self.min_interval = max(0.1, min_interval)
        self.max_interval = max(self.min_interval, max_interval)
        self.history_rows = history_rows
        self.cache_seconds = cache_seconds
        self.request_budget = max(1.0, request_budget)
        self.explore_share = min(1.0, max(0.0, explore_share))
        self.rng = rng or random.Random()
        self._cache: dict[tuple[str, str], tuple[float, PollPlan]] = {}

    async def plan_for(self, model_key: str, mode: str) -> PollPlan:
        key = (model_key, mode)
        cached = self._cache.get(key)
        now = self.clock.now()
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        samples = await self.repository.recent_durations(model_key, mode, self.history_rows)
        failures: list[float] = []
        finished: int | None = None
        if len(samples) >= MIN_HISTORY:  # a prior plan gets no early checks anyway
            failures, finished = await self.repository.recent_vendor_failures(
                get_model(model_key).provider, EARLY_HISTORY_ROWS)
        plan = self.build_plan(model_key, samples, failures, finished)
        self._cache[key] = (now, plan)
        return plan

    def build_plan(self, model_key: str, samples: Sequence[float], failures: Sequence[float] = (),
                   finished: int | None = None) -> PollPlan:
        """The plan from successful durations, and the vendor's recent failures (`finished`: how many
        of the vendor's jobs those were read from; default successes + failures)."""
        learned = len(samples) >= MIN_HISTORY
        distribution = Distribution.from_samples(samples) if learned else Distribution.from_prior(get_model(model_key).timing)
        offsets = self._body(distribution, self.request_budget)
        total = finished if finished is not None else len(samples) + len(failures)
        ends = sorted([*samples, *failures])  # the kind's successes and the vendor's failures
        checks = self._early_checks(failures, ends, offsets[0], total) if learned else []
        if checks:
            offsets = self._body(distribution, self.request_budget - early_check_cost(checks, ends))
            # A thinner body starts later, never earlier; a check right before it is merged into it.
            checks = [c for c in checks if offsets[0] - c >= self.min_interval]
        safety_net = max(distribution.quantile(SAFETY_NET_QUANTILE), distribution.quantile(0.5)) * SAFETY_NET_FACTOR
        return PollPlan(tuple(offsets), learned, max(self.min_interval, safety_net), tuple(checks))

    def _body(self, distribution: Distribution, budget: float) -> list[float]:
        offsets = plan_within_budget(distribution, budget, self.min_interval)
        first = max(self.min_interval, offsets[0])
        return [first, *(o for o in offsets[1:] if o - first >= self.min_interval)]

    def _early_checks(self, failures: Sequence[float], ends: Sequence[float], body_first: float,
                      total: int) -> list[float]:
        """Early checks where failures before `body_first` cluster, within the request budget."""
        early = [f for f in failures if f < body_first]
        checks = place_early_checks(early, total, self.min_interval, body_first)
        while checks and self.request_budget - early_check_cost(checks, ends) < 1.0:
            checks.pop(0)  # the body needs at least one request: the earliest check goes first
        return checks

    async def next_poll_at(self, *, model_key: str, mode: str, submitted_at: float, now: float,
                           progress: float | None = None, callback: bool = False) -> float:
        """The absolute time of the next status request for a running job.

        `callback`: the vendor will call back on completion, so only a sparse safety net is planned.
        """
        elapsed = max(0.0, now - submitted_at)
        earliest = now + self.min_interval if elapsed > 0 else now
        if progress is not None and 0.02 <= progress < 1.0 and elapsed >= self.min_interval and not callback:
            return max(earliest, self._after_progress(now, elapsed, progress))
        plan = await self.plan_for(model_key, mode)
        if callback:
            if elapsed < plan.safety_net_first:
                return max(earliest, submitted_at + plan.safety_net_first)
            return now + self._straggler_delay(elapsed - plan.safety_net_first)
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

        A "nearly done" phase (kie.ai's 1080p upsampling reports 0.99) is no rate to extrapolate
        from: it is polled every NEARLY_DONE_SHARE of the elapsed time instead of every few seconds.
        """
        if progress >= NEARLY_DONE_PROGRESS:
            return now + min(self.max_interval, max(self.min_interval, NEARLY_DONE_SHARE * elapsed))
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
