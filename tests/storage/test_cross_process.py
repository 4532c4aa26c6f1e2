"""What one engine's single writer decided must stay decided across OS processes on one database.

Four real processes (multiprocessing, spawn) open the same database by URL, meet at a barrier and
race: claiming due jobs, deciding submits under a vendor's in-flight cap and rate window, reserving a
member's last credits and slots, settling one job. On SQLite `BEGIN IMMEDIATE` keeps them apart; on
PostgreSQL `FOR UPDATE SKIP LOCKED` and the advisory locks taken inside the same transactions do.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from typing import Any

from storage.database import Database, change_rows, execute_many
from storage.guild_settings import GuildSettingsStore
from tests.quota import support
from tests.storage import race_worker

PROCESSES = 4


def _race(url: str, scenario: str, **args: Any) -> list[Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
    workers = [ctx.Process(target=race_worker.main, args=(url, scenario, i, barrier, results, args))
               for i in range(PROCESSES)]
    for worker in workers:
        worker.start()
    try:
        outcomes = dict(results.get(timeout=120) for _ in workers)
    finally:
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
    errors = [value for value in outcomes.values() if isinstance(value, str)]
    assert errors == []
    return [outcomes[i] for i in range(PROCESSES)]


async def _queued_jobs(db: Database, count: int, due: bool = True) -> None:
    async with db.transaction() as conn:
        await execute_many(
            conn, "INSERT INTO jobs (guild_id, channel_id, user_id, family, model_key, provider, mode, prompt,"
            " request_json, status, created_at, next_due_at) VALUES (1, 1, ?, 'veo', 'veo-fast-kie', 'kie', 'text',"
            " 'p', '{}', 'queued', ?, ?)",
            [(100 + n, support.T0, support.T0 if due else None) for n in range(count)])


async def test_every_due_job_is_claimed_by_exactly_one_process(db: Database, database_url: str) -> None:
    await _queued_jobs(db, 90)
    claimed = _race(database_url, "claims")
    every = [job_id for got in claimed for job_id in got]
    assert sorted(every) == list(range(1, 91))  # all of them, none twice


async def test_the_vendor_in_flight_cap_holds_across_processes(db: Database, database_url: str) -> None:
    await _queued_jobs(db, 24)
    moved = _race(database_url, "submits", cap=5, per_window=1000)
    assert sum(moved) == 5
    assert await db.fetchval("SELECT COUNT(*) FROM jobs WHERE status = 'submitting'") == 5


async def test_the_submit_rate_window_holds_across_processes(db: Database, database_url: str) -> None:
    await _queued_jobs(db, 24)
    moved = _race(database_url, "submits", cap=1000, per_window=7)
    assert sum(moved) == 7


async def test_a_members_last_credits_are_spent_once_across_processes(db: Database, database_url: str) -> None:
    await GuildSettingsStore(db).update(race_worker.GUILD, {"daily_credits": 10, "max_concurrent": 100},
                                        now=support.T0)
    accepted = _race(database_url, "reserves", attempts=5, cost=3)
    assert sum(accepted) == 3  # 9 of 10 credits: every credit that could be spent was, and no more
    held = await db.fetchval("SELECT SUM(amount) FROM credit_ledger WHERE kind = 'hold'")
    assert held == 9


async def test_a_members_videos_in_progress_cap_holds_across_processes(db: Database, database_url: str) -> None:
    await GuildSettingsStore(db).update(race_worker.GUILD, {"daily_credits": 1000, "max_concurrent": 2},
                                        now=support.T0)
    accepted = _race(database_url, "reserves", attempts=5, cost=1)
    assert sum(accepted) == 2


async def test_a_job_is_settled_once_across_processes(db: Database, database_url: str) -> None:
    async with db.transaction() as conn:
        job_id = await support.insert_job(conn, guild_id=race_worker.GUILD, user_id=race_worker.USER,
                                          now=support.T0, cost=4)
        await change_rows(conn, "INSERT INTO credit_ledger (guild_id, user_id, job_id, kind, amount, created_at)"
                          " VALUES (?, ?, ?, 'hold', 4, ?)", (race_worker.GUILD, race_worker.USER, job_id, support.T0))
    written = _race(database_url, "settles", job_id=job_id)
    assert sum(written) == 1
    kinds = Counter(r["kind"] for r in await db.fetchall("SELECT kind FROM credit_ledger WHERE job_id = ?", (job_id,)))
    assert kinds["charge"] + kinds["release"] == 1
