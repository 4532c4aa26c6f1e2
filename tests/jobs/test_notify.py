"""A job made by one process is picked up at once by a poller in another (PostgreSQL LISTEN/NOTIFY)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bot.catalog import Family
from bot.clock import FakeClock
from bot.jobs.models import JobStatus
from bot.jobs.service import JobService
from bot.validation import GenerationRequest
from storage.database import open_database
from tests.jobs.support import REQUESTER, AllowAll, build_rig


async def test_a_job_made_elsewhere_wakes_an_idle_poller(engine: str, database_url: str,
                                                         fake_clock: FakeClock) -> None:
    if engine == "sqlite":
        pytest.skip("SQLite has no NOTIFY: its pollers keep the timer (and in-process wake-ups)")
    worker_db, gateway_db = await open_database(database_url), await open_database(database_url)
    try:
        rig = build_rig(worker_db, fake_clock)
        rig.poller.start()  # idle: its timer runs on a fake clock that never moves
        await asyncio.sleep(0.3)
        gateway = JobService(settings=rig.settings, db=gateway_db, clock=fake_clock, providers=rig.providers,
                             quota=rig.poller.quota, policy=AllowAll())
        spec = gateway.validate(GenerationRequest(family=Family.VEO, prompt="made by the gateway"))
        job = await gateway.create_job(REQUESTER, spec)  # no wake_poller: another process

        async def submitted() -> None:
            while (await rig.job(job.id)).status is JobStatus.QUEUED:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(submitted(), timeout=10)  # only the notification can have woken it
        await rig.poller.stop(grace=0.1)
    finally:
        await worker_db.close()
        await gateway_db.close()


async def test_a_dropped_listen_connection_is_reopened(engine: str, database_url: str, fake_clock: FakeClock,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The listener's backend is terminated; a job made elsewhere afterwards still wakes the idle poller,
    whose timer (on a clock that never moves) can never fire: only a re-opened LISTEN can wake it."""
    if engine == "sqlite":
        pytest.skip("SQLite has no NOTIFY")
    worker_db, gateway_db = await open_database(database_url), await open_database(database_url)
    try:
        rig = build_rig(worker_db, fake_clock)
        rig.poller.start()
        while getattr(worker_db, "_listener", None) is None:
            await asyncio.sleep(0.01)
        first = worker_db._listener  # type: ignore[attr-defined]
        with caplog.at_level(logging.WARNING, logger="storage.postgres"):
            await gateway_db.fetchall("SELECT pg_terminate_backend(?)", (first.get_server_pid(),))

            async def reopened() -> None:
                while worker_db._listener in (None, first):  # type: ignore[attr-defined]
                    await asyncio.sleep(0.01)

            await asyncio.wait_for(reopened(), timeout=10)
        lost = [r for r in caplog.records if r.levelno == logging.WARNING and "LISTEN" in r.getMessage()]
        assert len(lost) == 1
        gateway = JobService(settings=rig.settings, db=gateway_db, clock=fake_clock, providers=rig.providers,
                             quota=rig.poller.quota, policy=AllowAll())
        spec = gateway.validate(GenerationRequest(family=Family.VEO, prompt="made after the listener dropped"))
        job = await gateway.create_job(REQUESTER, spec)

        async def submitted() -> None:
            while (await rig.job(job.id)).status is JobStatus.QUEUED:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(submitted(), timeout=10)
        await rig.poller.stop(grace=0.1)
    finally:
        await worker_db.close()
        await gateway_db.close()
