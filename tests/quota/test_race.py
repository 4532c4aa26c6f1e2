"""Many create transactions racing for a member's last credits on one real file must never overspend.

Several `Database` objects on the same database stand in for several bot processes: each has its own
connections, so the only thing keeping them apart is the engine (SQLite's `BEGIN IMMEDIATE` lock,
PostgreSQL's advisory lock on the member) and the fact that `reserve_in` re-reads the ledger inside
that transaction. Real OS processes race in tests/storage/test_cross_process.py.
"""

from __future__ import annotations

import asyncio

from collections.abc import Awaitable, Callable

from bot.clock import FakeClock
from bot.errors import Refusal
from storage import ledger
from bot.quota.service import QuotaService
from storage.database import Database, open_database
from storage.guild_settings import GuildSettingsStore
from tests.quota import support
from fakes.settings import make_settings
from tests.quota.support import T0

GUILD = 42
USER = 7


Create = Callable[..., Awaitable[int]]


async def _race(
    database_url: str, *, budget: int, cost: int, concurrent: int, attempts: int, create: Create = support.create_job
) -> tuple[int, int, int]:
    """(jobs accepted, credits held, refusals) after `attempts` simultaneous creates."""
    processes = [await open_database(database_url) for _ in range(4)]
    try:
        await GuildSettingsStore(processes[0]).update(
            GUILD, {"daily_credits": budget, "max_concurrent": concurrent}, now=T0
        )
        clock = FakeClock(start=T0)
        services = [QuotaService(db, make_settings(), clock) for db in processes]
        start = asyncio.Event()

        async def attempt(index: int) -> bool:
            db, quota = processes[index % len(processes)], services[index % len(services)]
            await start.wait()
            try:
                await create(db, quota, guild_id=GUILD, user_id=USER, cost=cost, now=T0 + 1)
            except Refusal:
                return False
            return True

        tasks = [asyncio.create_task(attempt(i)) for i in range(attempts)]
        await asyncio.sleep(0)  # let every task reach the start line
        start.set()
        results = await asyncio.wait_for(asyncio.gather(*tasks), timeout=60)
        held = await processes[0].fetchval(
            "SELECT COALESCE(SUM(amount), 0) FROM credit_ledger WHERE guild_id = ? AND user_id = ? AND kind = 'hold'",
            (GUILD, USER),
        )
        jobs = await processes[0].fetchval("SELECT COUNT(*) FROM jobs WHERE user_id = ?", (USER,))
        accepted = sum(results)
        assert jobs == accepted  # a refused create leaves no job row behind (the transaction rolled back)
        return accepted, int(held), attempts - accepted
    finally:
        for db in processes:
            await db.close()


async def test_racing_creates_never_spend_past_the_budget(database_url: str) -> None:
    accepted, held, refused = await _race(database_url, budget=10, cost=3, concurrent=100, attempts=24)
    assert held <= 10
    assert accepted == 3 and held == 9  # every credit that could be spent was, and no more
    assert refused == 21


async def test_racing_creates_never_exceed_the_concurrency_limit(database_url: str) -> None:
    accepted, held, _ = await _race(database_url, budget=1000, cost=1, concurrent=2, attempts=16)
    assert accepted == 2 and held == 2


async def test_the_race_harness_catches_a_check_outside_the_transaction(database_url: str) -> None:
    """Control: deciding on a balance read before the write transaction does overspend here,
    so the two tests above would notice if reserve_in stopped deciding inside it."""
    attempts = 8
    everyone_checked = asyncio.Barrier(attempts)

    async def check_then_act(db: Database, quota: QuotaService, *, guild_id: int, user_id: int, cost: int, now: float) -> int:
        balance = await quota.balance(guild_id, user_id, ())
        await everyone_checked.wait()
        if balance.remaining is not None and cost > balance.remaining:
            raise Refusal("budget", "not enough")
        async with db.transaction() as conn:
            job_id = await support.insert_job(conn, guild_id=guild_id, user_id=user_id, now=now, cost=cost)
            await ledger.insert_hold(conn, guild_id=guild_id, user_id=user_id, job_id=job_id, amount=cost, now=now)
        return job_id

    accepted, held, _ = await _race(
        database_url, budget=10, cost=3, concurrent=100, attempts=attempts, create=check_then_act
    )
    assert held == 3 * attempts > 10
