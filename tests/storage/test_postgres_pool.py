"""PostgreSQL's "a member's transaction first": background work (the poller, the card keeper) may hold at
most all but RESERVED_FOR_INTERACTIVE of the pool's connections, so a member's command never waits
behind it. (SQLite's writer queue: test_database_priority.py.)"""

from __future__ import annotations

import asyncio

import pytest

from storage.database import background_priority
from storage.postgres import RESERVED_FOR_INTERACTIVE, PostgresDatabase

POOL_SIZE = 4


async def test_background_work_never_takes_the_connections_kept_for_members(engine: str, database_url: str) -> None:
    if engine == "sqlite":
        pytest.skip("SQLite orders its one writer instead (test_database_priority.py)")
    db = await PostgresDatabase.open(database_url, min_size=1, max_size=POOL_SIZE)
    release = asyncio.Event()
    inside: list[int] = []

    async def background(n: int) -> None:
        with background_priority():
            async with db.transaction() as conn:
                inside.append(n)
                await conn.fetch_rows("SELECT pg_backend_pid() AS pid")
                await release.wait()

    holders = [asyncio.create_task(background(n)) for n in range(POOL_SIZE + 2)]
    try:
        async def filled() -> None:
            while len(inside) < POOL_SIZE - RESERVED_FOR_INTERACTIVE:
                await asyncio.sleep(0.01)

        await asyncio.wait_for(filled(), timeout=10)
        assert len(inside) == POOL_SIZE - RESERVED_FOR_INTERACTIVE  # the rest of the background work queues

        async def member_command() -> int:
            async with db.transaction() as conn:
                rows = await conn.fetch_rows("SELECT 1 AS one")
                return int(rows[0]["one"])

        # Two members at once, while every background slot is held and more background work waits:
        # without the reserve the queued background work would hold the whole pool and these would hang.
        answers = await asyncio.wait_for(asyncio.gather(member_command(), member_command()), timeout=10)
        assert answers == [1, 1]
        assert await asyncio.wait_for(db.fetchall("SELECT 2 AS two"), timeout=10)
    finally:
        release.set()
        await asyncio.gather(*holders, return_exceptions=True)
        await db.close()
    assert sorted(inside) == list(range(POOL_SIZE + 2))  # the queued background work ran afterwards
