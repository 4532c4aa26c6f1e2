"""Simulated time for the benchmark: run the real bot code on a FakeClock, skipping idle waits.

The driver advances the clock to the next sleeper's deadline only when the bot is idle: no
tracked database call, vendor call, publish or callback in flight, and nothing new started over a
few event-loop turns. Simulated time therefore never passes while real work is being done, and
each clock advance is stamped with the wall time at which it happened, so real processing time can
be added back to simulated latencies (see `Timeline.real_latency`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextvars
import resource
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, TypeVar

from bot.clock import FakeClock

T = TypeVar("T")

# Work done on behalf of a measured interaction is not "the bot is busy" for the clock driver:
# a member's slash command does not hold up simulated vendor time.
untracked: contextvars.ContextVar[bool] = contextvars.ContextVar("untracked", default=False)


class ActivityTracker:
    """Counts calls in flight at the boundaries where the bot waits on something outside the loop."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.epoch = 0  # bumps on every start and finish, so "nothing happened" is checkable

    @contextmanager
    def busy(self) -> Iterator[None]:
        if untracked.get():
            yield
            return
        self.in_flight += 1
        self.epoch += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self.epoch += 1

    def wrap(self, function: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def tracked(*args: Any, **kwargs: Any) -> T:
            with self.busy():
                return await function(*args, **kwargs)
        return tracked

    def track_database(self, database: Any) -> None:
        """Instance-level wrappers over storage.database.Database's async methods."""
        for name in ("fetchall", "fetchone", "fetchval", "execute"):
            setattr(database, name, self.wrap(getattr(database, name)))
        original_transaction = database.transaction

        @asynccontextmanager
        async def transaction() -> Any:
            with self.busy():
                async with original_transaction() as conn:
                    yield conn

        database.transaction = transaction

    def track_client(self, client: Any, methods: tuple[str, ...] = ("submit", "poll")) -> None:
        for name in methods:
            setattr(client, name, self.wrap(getattr(client, name)))


class Timeline:
    """(simulated time, wall time) of every clock advance: maps a simulated instant to when it was real."""

    def __init__(self, clock: FakeClock) -> None:
        self._sim: list[float] = [clock.now()]
        self._wall: list[float] = [time.perf_counter()]

    def mark(self, sim_now: float) -> None:
        self._sim.append(sim_now)
        self._wall.append(time.perf_counter())

    def wall_when(self, sim_time: float) -> float:
        """Wall time at which the simulated clock first reached `sim_time`."""
        index = bisect.bisect_right(self._sim, sim_time) - 1
        return self._wall[max(0, index)]

    def real_latency(self, sim_from: float, sim_to: float, wall_to: float) -> float:
        """Simulated gap plus the real processing time spent after the clock reached `sim_to`."""
        return max(0.0, sim_to - sim_from) + max(0.0, wall_to - self.wall_when(sim_to))

    @property
    def advances(self) -> int:
        return len(self._sim) - 1


class SimDriver:
    """Moves a FakeClock forward whenever the tracked system is idle.

    `real_pace`: (simulated seconds after the start, wall seconds): once the clock reaches that
    instant, it follows the wall clock for that long, whether or not the bot keeps up, so the work
    of that stretch (e.g. the peak of completions) is done at the pace a real server would see.
    """

    def __init__(self, clock: FakeClock, tracker: ActivityTracker, *, settle_turns: int = 6,
                 real_pace: tuple[float, float] | None = None,
                 on_real_pace: Callable[[bool], Awaitable[None]] | None = None) -> None:
        self.clock = clock
        self.tracker = tracker
        self.timeline = Timeline(clock)
        self.settle_turns = settle_turns
        self.hold = False  # set to stop advancing (e.g. while measuring idle CPU)
        self.origin = clock.now()
        self.real_pace = real_pace
        self.at_real_pace = False  # True while the clock follows the wall clock
        self.real_pace_done = False
        self.paced_cpu_share: float | None = None  # of one core, over the real-pace stretch
        self.paced_span: tuple[float, float] | None = None  # simulated instants it covered
        self.on_real_pace = on_real_pace  # told True when the stretch starts, False when it ends

    async def _follow_wall_clock(self, wall_seconds: float) -> None:
        if self.on_real_pace is not None:
            await self.on_real_pace(True)
        self.at_real_pace = True
        cpu0, wall0, sim0 = _cpu_seconds(), time.perf_counter(), self.clock.now()
        try:
            while (elapsed := time.perf_counter() - wall0) < wall_seconds:
                self.clock.advance(max(0.0, sim0 + elapsed - self.clock.now()))
                self.timeline.mark(self.clock.now())
                await asyncio.sleep(0.01)
        finally:
            self.at_real_pace = False
            self.real_pace_done = True
            self.paced_cpu_share = (_cpu_seconds() - cpu0) / max(1e-9, time.perf_counter() - wall0)
            self.paced_span = (sim0, self.clock.now())
            if self.on_real_pace is not None:
                await self.on_real_pace(False)

    async def wait_idle(self) -> None:
        while True:
            epoch = self.tracker.epoch
            if self.tracker.in_flight == 0:
                for _ in range(self.settle_turns):
                    await asyncio.sleep(0)
                if self.tracker.in_flight == 0 and self.tracker.epoch == epoch:
                    return
            else:
                await asyncio.sleep(0.0005)  # real I/O or a database thread is working

    async def run_until(self, finished: Callable[[], bool], *, sim_limit: float) -> None:
        """Advance through the simulation until `finished()` or `sim_limit` simulated seconds pass."""
        start = self.clock.now()
        while not finished():
            await self.wait_idle()
            if finished() or self.hold:
                await asyncio.sleep(0.001)
                continue
            deadline = self.clock.next_deadline()
            if deadline is None:
                raise RuntimeError("simulation stalled: nothing is sleeping and the work is not finished")
            if deadline - start > sim_limit:
                raise RuntimeError(f"simulation passed its limit of {sim_limit:.0f} simulated seconds")
            if self.real_pace and not self.real_pace_done and deadline >= self.origin + self.real_pace[0]:
                self.clock.advance(max(0.0, self.origin + self.real_pace[0] - self.clock.now()))
                self.timeline.mark(self.clock.now())
                await self._follow_wall_clock(self.real_pace[1])
                continue
            self.clock.advance(max(0.0, deadline - self.clock.now()))
            self.timeline.mark(self.clock.now())


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[rank]
