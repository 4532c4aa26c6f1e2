"""When to ask a vendor about a running job next: a poll schedule learned from finished jobs.

Each (model, mode) has a distribution of submit-to-done times, read from the latest successful
jobs (bounded rows, cached for a few minutes) or, with too little history, the catalog's `Timing`
prior. Polls are placed at quantiles of that distribution: nothing before the fast end, densest
where jobs of that kind usually finish, then backing off for the stragglers. When the vendor
reports progress, the remaining time is estimated from it instead and the poll lands just after the
estimated finish, approached in shrinking steps so a bad estimate costs only a few requests.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Sequence
from dataclasses import dataclass

from bot.catalog import Timing, get_model
from bot.clock import Clock
from bot.jobs.repository import JobRepository

# Quantiles of the finish-time distribution at which a job is polled (9 planned polls).
PLAN_FRACTIONS = (0.02, 0.12, 0.25, 0.4, 0.55, 0.7, 0.82, 0.92, 0.98)
MIN_HISTORY = 8
HISTORY_ROWS = 200
CACHE_SECONDS = 180.0


class Distribution:
    """A finish-time distribution, queried by quantile (piecewise linear)."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        # points: (fraction, seconds), fractions strictly increasing from 0 to 1.
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
        fraction = min(1.0, max(0.0, fraction))
        index = bisect.bisect_left(self._fractions, fraction)
        if index <= 0:
            return self._seconds[0]
        if index >= len(self._fractions):
            return self._seconds[-1]
        f0, f1 = self._fractions[index - 1], self._fractions[index]
        s0, s1 = self._seconds[index - 1], self._seconds[index]
        return s0 if f1 == f0 else s0 + (s1 - s0) * (fraction - f0) / (f1 - f0)


@dataclass(frozen=True)
class PollPlan:
    """Seconds after submit at which a job of this kind is polled, earliest first."""

    offsets: tuple[float, ...]
    learned: bool  # True when built from history rather than the catalog prior


class PollSchedule:
    """Learned per (model_key, mode); safe to share between tasks of one process."""

    def __init__(self, repository: JobRepository, clock: Clock, *, min_interval: float = 3.0,
                 max_interval: float = 60.0, history_rows: int = HISTORY_ROWS,
                 cache_seconds: float = CACHE_SECONDS, rng: random.Random | None = None) -> None:
        self.repository = repository
        self.clock = clock
        self.min_interval = max(0.1, min_interval)
        self.max_interval = max(self.min_interval, max_interval)
        self.history_rows = history_rows
        self.cache_seconds = cache_seconds
        self.rng = rng or random.Random()
        self._cache: dict[tuple[str, str], tuple[float, PollPlan]] = {}

    async def plan_for(self, model_key: str, mode: str) -> PollPlan:
        key = (model_key, mode)
        cached = self._cache.get(key)
        now = self.clock.now()
        if cached is not None and now - cached[0] < self.cache_seconds:
            return cached[1]
        samples = await self.repository.recent_durations(model_key, mode, self.history_rows)
        plan = self.build_plan(model_key, samples)
        self._cache[key] = (now, plan)
        return plan

    def build_plan(self, model_key: str, samples: Sequence[float]) -> PollPlan:
        learned = len(samples) >= MIN_HISTORY
        distribution = Distribution.from_samples(samples) if learned else Distribution.from_prior(get_model(model_key).timing)
        fast_end = distribution.quantile(PLAN_FRACTIONS[0])
        # Start a little before the fastest finish seen, so a vendor that got faster is noticed
        # (finish times are recorded when *observed*, so history alone never moves earlier).
        first = max(self.min_interval, fast_end - max(self.min_interval, 0.05 * fast_end))
        offsets = [first]
        for fraction in PLAN_FRACTIONS[1:]:
            at = distribution.quantile(fraction)
            if at - offsets[-1] >= self.min_interval:
                offsets.append(at)
        return PollPlan(tuple(offsets), learned)

    async def next_poll_at(self, *, model_key: str, mode: str, submitted_at: float, now: float,
                           progress: float | None = None) -> float:
        """The absolute time of the next status request for a running job."""
        elapsed = max(0.0, now - submitted_at)
        earliest = now + self.min_interval if elapsed > 0 else now
        if progress is not None and 0.02 <= progress < 1.0 and elapsed >= self.min_interval:
            estimated_total = elapsed / progress
            remaining = estimated_total - elapsed
            if remaining > 3 * self.min_interval:
                step = min(self.max_interval, 0.6 * remaining)
                return max(earliest, now + step)
            return max(earliest, submitted_at + estimated_total)
        plan = await self.plan_for(model_key, mode)
        for offset in plan.offsets:
            at = submitted_at + offset
            if at > now + 1e-6:
                return max(earliest, at)
        # A straggler past everything seen: back off in proportion to how long it has run.
        beyond = elapsed - plan.offsets[-1]
        delay = min(self.max_interval, max(self.min_interval, 2 * self.min_interval + 0.25 * beyond))
        return now + delay

    def error_backoff(self, streak: int, retry_after: float | None = None) -> float:
        """Seconds to wait after the `streak`-th consecutive failed request (exponential, jittered)."""
        base = min(self.max_interval, self.min_interval * (2 ** max(0, min(streak, 16) - 1)))
        delay = base * (0.5 + 0.5 * self.rng.random())
        if retry_after is not None and retry_after > 0:
            delay = max(delay, min(retry_after, 3600.0))
        return max(self.min_interval * 0.5, delay)
