"""The poller's heartbeat: a row in `heartbeats` beaten every HEARTBEAT_SECONDS while the process lives.

Why: a job's lease lasts LEASE_SECONDS (minutes, so that a slow submit is never taken over from a
live worker), and a SIGKILLed process cannot give its leases back. Other processes, and the
process that replaces it, read the heartbeats instead: a lease whose owner has not beaten for
HEARTBEAT_STALE_SECONDS is taken over at once (the rescuer of Oban/River, procrastinate's stalled
jobs). Taking over from a live but stalled process stays safe: every write is conditioned on the
lease and on the status the writer saw, and a submit that may have reached the vendor is never
resent (it becomes `uncertain`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from bot.clock import Clock
from storage.jobs import JobRepository

log = logging.getLogger("bot.heartbeat")  # not bot.jobs: its lines are about a process, not a job

HEARTBEAT_SECONDS = 2.0
HEARTBEAT_STALE_SECONDS = 6.0  # three beats missed: the process is gone (or stalled past caring)
FORGET_AFTER_SECONDS = 24 * 60 * 60


class Heartbeat:
    """Beats for one poller (`owner`) until stopped; `stale_before()` is what claims compare with."""

    def __init__(self, repository: JobRepository, clock: Clock, owner: str) -> None:
        self.repository = repository
        self.clock = clock
        self.owner = owner
        self.started_at = clock.now()
        self._task: asyncio.Task[None] | None = None

    def stale_before(self) -> float:
        """Owners whose last beat is older than this are dead."""
        return self.clock.now() - HEARTBEAT_STALE_SECONDS

    async def beat(self) -> None:
        now = self.clock.now()
        await self.repository.beat(self.owner, pid=os.getpid(), host=socket.gethostname(),
                                   started_at=self.started_at, now=now, forget_before=now - FORGET_AFTER_SECONDS)

    async def start(self) -> None:
        """Beat once now (so this process is known alive before it claims anything), then keep beating."""
        await self.beat()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"heartbeat-{self.owner}")

    async def _run(self) -> None:
        while True:
            await self.clock.sleep(HEARTBEAT_SECONDS)
            try:
                await self.beat()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("heartbeat of %s not recorded; retrying in %.0f s", self.owner, HEARTBEAT_SECONDS,
                            exc_info=True)

    async def stop(self) -> None:
        """Stop beating and say so: what this process still holds is free for the next one at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        try:
            await self.repository.retire(self.owner, self.stale_before() - 1)
        except Exception:
            log.warning("could not record that %s stopped; its jobs move after %.0f s", self.owner,
                        HEARTBEAT_STALE_SECONDS, exc_info=True)
