"""Time as a dependency, so the poller and benchmarks can run on a simulated clock."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch (wall clock: it is stored in the database)."""

    async def sleep(self, seconds: float) -> None:
        """Wait; a fake clock may return as soon as simulated time has advanced."""


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that only moves when told to; `sleep` waits until `advance` passes the deadline."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._waiters: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((self._now + seconds, future))
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        self._now += seconds
        still_waiting = []
        for deadline, future in self._waiters:
            if deadline <= self._now:
                if not future.done():
                    future.set_result(None)
            else:
                still_waiting.append((deadline, future))
        self._waiters = still_waiting

    def next_deadline(self) -> float | None:
        pending = [d for d, f in self._waiters if not f.done()]
        return min(pending) if pending else None


async def sleep_or_wake(clock: Clock, wake: asyncio.Event, delay: float) -> None:
    """Sleep `delay` on `clock` (the benchmark's simulated one too), or until `wake` is set."""
    sleeper = asyncio.ensure_future(clock.sleep(delay))
    waker = asyncio.ensure_future(wake.wait())
    try:
        await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (sleeper, waker):
            pending.cancel()
