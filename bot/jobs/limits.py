"""Per-provider brakes: the submit rate window and in-flight cap (numbers here, counted in SQL) and
a circuit breaker (in memory).

The window and the in-flight cap must hold across every bot process on the database, so both are
counted from the jobs table inside the submit transaction (`JobRepository.count_in_flight_in`,
`JobRepository.recent_submits_in`). The breaker only keeps *this* process from hammering a vendor.
"""

from __future__ import annotations

import asyncio
import time

from dataclasses import dataclass, field
from enum import StrEnum

from bot.catalog import ProviderName
from bot.clock import Clock

DEFAULT_SUBMITS_PER_WINDOW = 10
DEFAULT_WINDOW_SECONDS = 10.0
DEFAULT_FAILURE_THRESHOLD = 5
DEFAULT_COOL_DOWN_SECONDS = 30.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Open after `threshold` consecutive failures; after `cool_down`, let one probe through."""

    def __init__(self, clock: Clock, threshold: int = DEFAULT_FAILURE_THRESHOLD,
                 cool_down: float = DEFAULT_COOL_DOWN_SECONDS) -> None:
        self.clock = clock
        self.threshold = max(1, threshold)
        self.cool_down = cool_down
        self.failures = 0
        self.state = BreakerState.CLOSED
        self.opened_at = 0.0
        self._probe_out = False

    def allow(self) -> bool:
        """May a request go out now? In half-open state only one probe at a time."""
        if self.state is BreakerState.CLOSED:
            return True
        now = self.clock.now()
        if self.state is BreakerState.OPEN:
            if now < self.opened_at + self.cool_down:
                return False
            self.state = BreakerState.HALF_OPEN
            self._probe_out = False
        if self._probe_out:
            return False
        self._probe_out = True
        return True

    def retry_at(self) -> float:
        """When asking again makes sense."""
        if self.state is BreakerState.CLOSED:
            return self.clock.now()
        return max(self.clock.now(), self.opened_at + self.cool_down)

    def record_success(self) -> None:
        self.failures = 0
        self.state = BreakerState.CLOSED
        self._probe_out = False

    def record_failure(self) -> None:
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.threshold:
            self.state = BreakerState.OPEN
            self.opened_at = self.clock.now()
            self._probe_out = False

    def release_probe(self) -> None:
        """A probe slot was taken but no request was made (e.g. another limit said no)."""
        self._probe_out = False


@dataclass
class ProviderLimits:
    """The brakes for one provider."""

    submits_per_window: int
    window_seconds: float
    breaker: CircuitBreaker
    max_in_flight: int


@dataclass
class LimitsRegistry:
    """Brakes for every provider, built from settings."""

    clock: Clock
    max_in_flight: int
    submits_per_window: dict[ProviderName, int] = field(default_factory=dict)
    window_seconds: float = DEFAULT_WINDOW_SECONDS
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    cool_down_seconds: float = DEFAULT_COOL_DOWN_SECONDS
    _by_provider: dict[ProviderName, ProviderLimits] = field(default_factory=dict)

    def for_provider(self, provider: ProviderName) -> ProviderLimits:
        limits = self._by_provider.get(provider)
        if limits is None:
            per_window = self.submits_per_window.get(provider, DEFAULT_SUBMITS_PER_WINDOW)
            limits = ProviderLimits(
                submits_per_window=max(1, per_window), window_seconds=self.window_seconds,
                breaker=CircuitBreaker(self.clock, self.failure_threshold, self.cool_down_seconds),
                max_in_flight=self.max_in_flight,
            )
            self._by_provider[provider] = limits
        return limits


class LoopLagLimiter:
    """How much work the poller may have in flight: POLLER_CONCURRENCY, less while the loop is slow.

    Vendor round trips mostly wait, so a high cap keeps status checks flowing when vendors are far
    away. But when answers arrive faster than the one event loop handles them, every extra task
    lengthens each turn of the loop, and a member's slash command waits about a turn per database
    hop. One `await asyncio.sleep(0)` measures a turn: above LAG_HIGH the cap shrinks by a third,
    below LAG_LOW it grows back a few at a time (AIMD), never under `floor` nor over `ceiling`.
    Wall time on purpose: loop contention is real whatever clock the jobs run on.
    """

    LAG_HIGH = 0.004
    LAG_LOW = 0.001
    GROW = 4
    SHRINK = 2 / 3

    def __init__(self, ceiling: int, floor: int = 8) -> None:
        self.ceiling = max(1, ceiling)
        self.floor = min(self.ceiling, max(1, floor))
        self.limit = self.ceiling

    async def measure(self) -> int:
        """Time one turn of the loop, adjust and return the limit."""
        started = time.perf_counter()
        await asyncio.sleep(0)
        return self.observe(time.perf_counter() - started)

    def observe(self, lag: float) -> int:
        if lag > self.LAG_HIGH:
            self.limit = max(self.floor, int(self.limit * self.SHRINK))
        elif lag < self.LAG_LOW:
            self.limit = min(self.ceiling, self.limit + self.GROW)
        return self.limit
