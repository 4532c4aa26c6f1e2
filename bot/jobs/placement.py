"""Where to put a job's status requests, given when jobs of its kind finish: the optimal placement.

A status request only tells "done" or "still running", so a job's polls are a fixed list of times
after submit, and the choice is a trade between these, per job:
- whether the lag (vendor finished -> result handed to Discord, NOTICE_SECONDS after the poll that
  found it was sent) exceeds LATE_SECONDS: the member notices the wait; this is what the p99 is about,
- whether it exceeds PROMPT_SECONDS: the result did not come "right away"; this is what the median
  is about,
- how long the lag is (a member waits for it),
- how many requests it takes (the vendor's rate limit and bill).

With finish times distributed as G (a CDF), polls t1 < t2 < ... cost, per job on average,
sum_i (1 - G(t_(i-1))) requests (poll i is made only if the job was still running at poll i-1), and a
job that finishes in (t_(i-1), t_i] is noticed at t_i. `optimal_polls` minimises

    P(lag > LATE_SECONDS) + PROMPT_WEIGHT * P(lag > PROMPT_SECONDS) + LAG_WEIGHT * E[lag]
        + price * E[requests],    lag = (the poll that found the job - its finish) + NOTICE_SECONDS

exactly, by dynamic programming over candidate poll instants (each cell between two polls adds its own
terms, so the best plan ending at a poll is the best plan ending at an earlier poll plus one cell),
and finds the price at which E[requests] meets the budget by bisection. Early checks for rejections
soon after submit, polls dense where the kind usually finishes, sparse ones in the tails: all come out
of the same sum, weighed by how many jobs finish where, instead of rules of thumb.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Sequence
from operator import add
from statistics import NormalDist
from typing import Protocol

LATE_SECONDS = 10.0  # a result noticed later than this after the vendor finished is late
PROMPT_SECONDS = 3.0  # ...and one noticed within this came right away
# A plan's instants are when status requests are sent; the member's lag ends when the result is handed
# to Discord, after that request's round trip and the bot's own work. Left out, the cheapest gap that
# keeps jobs on time would be exactly LATE_SECONDS, and every job that finished just after a poll
# would come a round trip too late.
NOTICE_SECONDS = 0.5
# Against one late job: 33 results that did not come right away, or 333 s of lag summed over jobs.
# The plan holds the late share down first (the p99 target) and spends what is left of the budget on
# results that come within PROMPT_SECONDS (the median target); lag in seconds is only a tie-breaker.
PROMPT_WEIGHT = 0.03
LAG_WEIGHT = 0.003
CANDIDATE_STEP = 1.0  # seconds between candidate poll instants...
MAX_CANDIDATES = 400  # ...coarser for very long kinds, so that planning stays a few milliseconds
# A candidate instant is kept only if this share of jobs finished since the one before (or it is
# the last): a poll right after nobody finished is never better than the same poll earlier.
MIN_CANDIDATE_MASS = 5e-4
MAX_CELL_CANDIDATES = 160  # the longest gap considered between two polls, in candidates
# Price of a request, in late jobs: at least PRICE_RANGE[0] (a request that saves fewer than 0.1% of
# jobs from being late, or 0.1 s of lag per job, is not worth making even with budget to spare).
PRICE_RANGE = (1e-3, 10.0)
PRICE_STEPS = 12  # the price to within ~2% over its four decades
# Smoothing a kind's past finish times: each past job stands for this many points spread over a
# Gaussian kernel on log time (the kernel's equal-mass quantiles, so the result is deterministic).
KERNEL_POINTS = 8
_KERNEL_OFFSETS = tuple(NormalDist().inv_cdf((k + 0.5) / KERNEL_POINTS) for k in range(KERNEL_POINTS))


class FinishCdf(Protocol):
    def cdf(self, seconds: float) -> float: ...


class Distribution:
    """A finish-time distribution, queried by quantile or CDF (piecewise linear)."""

    def __init__(self, points: Sequence[tuple[float, float]]) -> None:
        # points: (fraction, seconds), fractions increasing from 0 to 1, seconds non-decreasing.
        self._fractions = [p[0] for p in points]
        self._seconds = [p[1] for p in points]

    @classmethod
    def from_samples(cls, samples: Sequence[float]) -> Distribution:
        ordered = sorted(samples)
        if len(ordered) == 1:
            return cls([(0.0, ordered[0]), (1.0, ordered[0])])
        last = len(ordered) - 1
        return cls([(i / last, value) for i, value in enumerate(ordered)])

    @classmethod
    def smoothed(cls, samples: Sequence[float]) -> Distribution:
        """The samples' distribution with a Gaussian kernel on log time, bandwidth by Silverman's rule.

        Why: the placement is exact, so on a raw empirical CDF it fits the sample's accidents (a
        poll right after a clump, a long gap over a stretch where no past job happened to finish)
        and the next jobs do not repeat them; the shorter the history, the more so. Log time, because
        a job's spread grows with its length. Failures are not smoothed: they mix early rejections
        with late breaks, and one bandwidth blurs both.
        """
        positive = sorted(value for value in samples if value > 0)
        count = len(positive)
        if count < 2:
            return cls.from_samples(samples)
        logs = [math.log(value) for value in positive]
        mean = math.fsum(logs) / count
        deviation = math.sqrt(math.fsum((x - mean) ** 2 for x in logs) / (count - 1))
        iqr_spread = (logs[(3 * count) // 4] - logs[count // 4]) / 1.34  # a deviation robust to outliers
        bandwidth = 0.9 * (min(deviation, iqr_spread) if iqr_spread > 0 else deviation) * count ** -0.2
        if bandwidth <= 0:
            return cls.from_samples(positive)
        factors = [math.exp(bandwidth * offset) for offset in _KERNEL_OFFSETS]
        return cls.from_samples([value * factor for value in positive for factor in factors])

    @property
    def last(self) -> float:
        return self._seconds[-1]

    def quantile(self, fraction: float) -> float:
        return _interpolate(self._fractions, self._seconds, min(1.0, max(0.0, fraction)))

    def cdf(self, seconds: float) -> float:
        if seconds < self._seconds[0]:
            return 0.0
        if seconds >= self._seconds[-1]:
            return 1.0
        return _interpolate(self._seconds, self._fractions, seconds)


class FinishTimes:
    """When a job of one kind ends, successes and failures together: the kind's successes, and the
    vendor's failures (rarer, so read across the vendor's models) in their observed share."""

    def __init__(self, successes: Distribution, failures: Distribution | None = None,
                 failure_share: float = 0.0) -> None:
        self.successes = successes
        self.failures = failures
        self.failure_share = min(1.0, max(0.0, failure_share)) if failures is not None else 0.0

    @property
    def last(self) -> float:
        return max(self.successes.last, self.failures.last if self.failures is not None else 0.0)

    def cdf(self, seconds: float) -> float:
        done = self.successes.cdf(seconds)
        if self.failures is None:
            return done
        return (1.0 - self.failure_share) * done + self.failure_share * self.failures.cdf(seconds)


def _interpolate(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear y(x) for sorted xs (ties resolved to the first)."""
    index = bisect.bisect_left(xs, x)
    if index <= 0:
        return ys[0]
    if index >= len(xs):
        return ys[-1]
    x0, x1, y0, y1 = xs[index - 1], xs[index], ys[index - 1], ys[index]
    return y0 if x1 == x0 else y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def expected_requests(finish: FinishCdf, offsets: Sequence[float]) -> float:
    """Mean polls a job uses: poll i+1 happens when poll i still saw it running."""
    return 1.0 + sum(1.0 - finish.cdf(at) for at in offsets[:-1])


def optimal_polls(finish: FinishTimes, budget: float, min_gap: float, lag_weight: float = LAG_WEIGHT,
                  prompt_weight: float = PROMPT_WEIGHT, notice: float = NOTICE_SECONDS) -> list[float]:
    """The poll offsets (seconds after submit) that minimise the weighted lateness, slowness and lag while
    the expected number of requests stays within `budget`; the last one is where every job seen
    has ended. Polls are at least `min_gap` apart, the first at `min_gap` or later. Both weights 0
    (or tiny) minimise the late share alone."""
    return shared_polls([(1.0, PricedKind(finish, min_gap, lag_weight, prompt_weight, notice))], budget)[0]


class PricedKind:
    """One kind's candidate poll instants and cell costs, computed once, then planned at any price per
    request: several kinds that share one budget are planned at one price (`shared_polls`)."""

    def __init__(self, finish: FinishTimes, min_gap: float, lag_weight: float = LAG_WEIGHT,
                 prompt_weight: float = PROMPT_WEIGHT, notice: float = NOTICE_SECONDS) -> None:
        self.last = max(finish.last, min_gap)
        self._instants, done = _candidates(finish, self.last, min_gap)
        self._running = [1.0 - d for d in done]
        self._cells = (_cell_costs(finish, self._instants, done, min_gap, lag_weight, prompt_weight, notice)
                       if len(self._instants) > 2 else [])
        self.floor_price = PRICE_RANGE[0]  # raised by `cap` for a kind that must not spend more

    def plan_at(self, price: float) -> tuple[list[float], float]:
        """(poll offsets, expected requests per job) of the best plan at this price per request."""
        if not self._cells:
            return [self.last], 1.0
        plan = _cheapest(self._cells, self._running, max(price, self.floor_price))
        return [self._instants[i] for i in plan], _cost(plan, self._running)

    def cap(self, most: float) -> None:
        """Never plan above `most` requests per job, whatever the shared price."""
        if self.plan_at(self.floor_price)[1] <= most:
            return
        low, high = self.floor_price, PRICE_RANGE[1]
        for _ in range(PRICE_STEPS):
            price = math.sqrt(low * high)
            low, high = (price, high) if self.plan_at(price)[1] > most else (low, price)
        self.floor_price = high


def shared_polls(kinds: Sequence[tuple[float, PricedKind]], budget: float) -> list[list[float]]:
    """Plans for kinds that share one request budget: the mean over their jobs (each kind weighted by its
    share of them) stays within `budget`, spent where a request saves the most.

    One price per request for every kind: at the optimum of the summed objective under one budget, a
    request is worth the same wherever it is made. The price is found by bisection."""
    total_weight = sum(weight for weight, _ in kinds) or 1.0

    def at(price: float) -> tuple[list[list[float]], float]:
        planned = [kind.plan_at(price) for _, kind in kinds]
        return [polls for polls, _ in planned], sum(w * cost for (w, _), (_, cost) in zip(kinds, planned)) / total_weight

    low, high = PRICE_RANGE
    best, cost = at(high)
    if cost > budget:  # even the sparsest useful plans are over: take them
        return best
    for _ in range(PRICE_STEPS):
        price = math.sqrt(low * high)
        plans, cost = at(price)
        if cost > budget:
            low = price
        else:
            high, best = price, plans
    return best


def _candidates(finish: FinishCdf, last: float, min_gap: float) -> tuple[list[float], list[float]]:
    """Index 0 is the submit itself (nothing done); then instants from `min_gap` to `last`."""
    step = max(CANDIDATE_STEP, last / MAX_CANDIDATES)
    instants, done = [0.0], [0.0]
    at = min_gap
    while True:
        at = min(at, last)
        share = finish.cdf(at)
        if share - done[-1] >= MIN_CANDIDATE_MASS or at >= last:
            instants.append(at)
            done.append(share)
        if at >= last:
            return instants, done
        at += step


def _cell_costs(finish: FinishCdf, instants: list[float], done: list[float], min_gap: float,
                lag_weight: float, prompt_weight: float = 0.0, notice: float = 0.0) -> list[tuple[int, list[float]]]:
    """cells[j] = (first, costs): costs[k] is the lag, lateness and slowness of the jobs that finish
    between polls at instants first + k and j, for the earlier polls that leave at least `min_gap`
    (the submit, index 0, always does) and are at most MAX_CELL_CANDIDATES back. A job's lag runs
    `notice` seconds past the poll that finds it (the same for every plan, so left out of the lag term)."""
    # Integral of the CDF from the submit to each instant (midpoint rule within each step).
    integral = [0.0]
    for a, b in itertools.pairwise(instants):
        width = (b - a) / 4
        integral.append(integral[-1] + width * sum(finish.cdf(a + (k + 0.5) * width) for k in range(4)))
    cells: list[tuple[int, list[float]]] = [(0, [])]
    for j in range(1, len(instants)):
        at, area = instants[j], integral[j]
        late, slow = finish.cdf(at + notice - LATE_SECONDS), finish.cdf(at + notice - PROMPT_SECONDS)
        first = max(0, j - MAX_CELL_CANDIDATES)
        stop = max(first, bisect.bisect_right(instants, at - min_gap + 1e-9, 0, j))  # keep the gap
        # From these indices on, done[i] >= late (resp. slow): no job of the cell is late (slow).
        on_time = max(first, min(stop, bisect.bisect_left(done, late, 0, j)))
        prompt = max(on_time, min(stop, bisect.bisect_left(done, slow, 0, j)))
        # Summed over jobs done in (t_i, t_j], (t_j - done) is the integral of G - G(t_i) there.
        costs = [lag_weight * (area - integral[i] - done[i] * (at - instants[i])) + late - done[i]
                 + prompt_weight * (slow - done[i]) for i in range(first, on_time)]
        costs += [lag_weight * (area - integral[i] - done[i] * (at - instants[i])) + prompt_weight * (slow - done[i])
                  for i in range(on_time, prompt)]
        costs += [lag_weight * (area - integral[i] - done[i] * (at - instants[i])) for i in range(prompt, stop)]
        cells.append((first, costs))
    return cells


def _cheapest(cells: list[tuple[int, list[float]]], running: list[float], price: float) -> list[int]:
    """The candidate indices of the best plan at this price per request (it ends at the last one).

    `onward[i]`: the best value of a plan whose latest poll is at i, plus the price of the next
    request (made if the job was still running at i). The inner minimum runs in C (map/min/index):
    planning runs on the event loop, a few times per kind per cache period.
    """
    count = len(cells)
    onward = [price * running[0]] + [math.inf] * (count - 1)
    came_from = [0] * count
    for j in range(1, count):
        first, costs = cells[j]
        if not costs:
            continue  # no earlier poll leaves the gap: this instant cannot be a poll
        totals = list(map(add, onward[first:first + len(costs)], costs))
        value = min(totals)
        came_from[j] = first + totals.index(value)
        onward[j] = value + price * running[j]
    plan, j = [], count - 1
    while j > 0:
        plan.append(j)
        j = came_from[j]
    return plan[::-1]


def _cost(plan: list[int], running: list[float]) -> float:
    return sum(running[i] for i in [0, *plan[:-1]])
