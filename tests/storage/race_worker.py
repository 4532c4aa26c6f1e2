"""One OS process of a cross-process race (tests/storage/test_cross_process.py): open the database by
URL, wait at the barrier with the others, do one kind of decision as the bot does it, report back."""

from __future__ import annotations

import asyncio
import multiprocessing.synchronize
from typing import Any

from bot.catalog import ProviderName
from bot.clock import FakeClock
from bot.errors import Refusal
from bot.jobs.models import IN_FLIGHT_STATUSES, JobStatus
from storage import ledger
from bot.quota.service import QuotaService
from storage.database import Database, open_database
from storage.jobs import JobRepository
from fakes.settings import make_settings
from tests.quota import support

GUILD, USER = 42, 7
NOW = support.T0 + 1


async def claims(db: Database, index: int) -> list[int]:
    """Claim due jobs in small batches until none is left; the ids this process got."""
    repository, got = JobRepository(db), []
    while jobs := await repository.claim_due(f"worker-{index}", NOW, 600.0, 3):
        got += [job.id for job in jobs]
        await asyncio.sleep(0.002)  # a poller works on what it claimed before claiming again
    return got


async def submits(db: Database, index: int, cap: int, per_window: int) -> int:
    """Submission's decision for every queued kie job, as `Submission.handle_queued` makes it."""
    repository, moved = JobRepository(db), 0
    ids = [r["id"] for r in await db.fetchall("SELECT id FROM jobs WHERE status = 'queued' ORDER BY id")]
    for job_id in ids[index::2] + ids[index + 1::2]:
        async with db.transaction() as conn:
            in_flight = await repository.count_in_flight_in(conn, ProviderName.KIE)
            recent, _ = await repository.recent_submits_in(conn, ProviderName.KIE, NOW - 10)
            if in_flight < cap and recent < per_window:
                moved += await repository.update_unleased_in(conn, job_id, JobStatus.QUEUED, {
                    "status": JobStatus.SUBMITTING.value, "submitted_at": NOW})
    return moved


async def reserves(db: Database, attempts: int, cost: int) -> int:
    """Creates racing for one member's credits and slots; how many this process got accepted."""
    quota, accepted = QuotaService(db, make_settings(), FakeClock(start=NOW)), 0
    for _ in range(attempts):
        try:
            await support.create_job(db, quota, guild_id=GUILD, user_id=USER, cost=cost, now=NOW)
            accepted += 1
        except Refusal:
            pass
    return accepted


async def settles(db: Database, job_id: int) -> int:
    """Every process settles the same job, charge and release alike; how many settles it wrote."""
    written = 0
    for charge in (True, False, True):
        async with db.transaction() as conn:
            written += await ledger.settle(conn, job_id=job_id, charge=charge, now=NOW)
    return written


async def _run(url: str, scenario: str, index: int, barrier: multiprocessing.synchronize.Barrier,
               args: dict[str, Any]) -> Any:
    db = await open_database(url)
    try:
        await asyncio.get_running_loop().run_in_executor(None, barrier.wait)
        if scenario == "claims":
            return await claims(db, index)
        if scenario == "submits":
            return await submits(db, index, args["cap"], args["per_window"])
        if scenario == "reserves":
            return await reserves(db, args["attempts"], args["cost"])
        return await settles(db, args["job_id"])
    finally:
        await db.close()


def main(url: str, scenario: str, index: int, barrier: Any, results: Any, args: dict[str, Any]) -> None:
    try:
        results.put((index, asyncio.run(_run(url, scenario, index, barrier, args))))
    except BaseException as exc:  # reported to the test, which fails with it
        results.put((index, f"error: {exc!r}"))


__all__ = ["IN_FLIGHT_STATUSES", "main"]
