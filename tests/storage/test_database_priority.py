"""Interactive database work goes before the poller's queued background work."""

from __future__ import annotations

import asyncio

import pytest

from storage.database import Database, PriorityLock, background_priority, is_background

pytestmark = pytest.mark.sqlite_only  # SQLite's own writer queue; PostgreSQL's pool: test_postgres_pool.py


async def _wait_until(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async def spin() -> None:
        while not condition():
            await asyncio.sleep(0.001)
    await asyncio.wait_for(spin(), timeout)


async def test_a_member_transaction_jumps_the_queue_of_background_ones(db: Database) -> None:
    await db.execute("CREATE TABLE log (n INTEGER PRIMARY KEY AUTOINCREMENT, who TEXT)")
    release_first = asyncio.Event()

    async def background_write(who: str, hold: asyncio.Event | None = None) -> None:
        with background_priority():
            async with db.transaction() as conn:
                await conn.execute("INSERT INTO log (who) VALUES (?)", (who,))
                if hold is not None:
                    await hold.wait()

    holder = asyncio.create_task(background_write("poller-0", release_first))
    await _wait_until(lambda: db._write_lock.locked())
    queued = [asyncio.create_task(background_write(f"poller-{n}")) for n in range(1, 4)]
    await _wait_until(lambda: db._write_lock.waiting == 3)
    member = asyncio.create_task(db.execute("INSERT INTO log (who) VALUES ('member')"))
    await _wait_until(lambda: db._write_lock.waiting == 4)
    release_first.set()
    await asyncio.gather(holder, member, *queued)
    order = [row["who"] for row in await db.fetchall("SELECT who FROM log ORDER BY n")]
    assert order == ["poller-0", "member", "poller-1", "poller-2", "poller-3"]


async def test_background_work_reads_on_its_own_connection_and_sees_committed_rows(db: Database) -> None:
    await db.execute("CREATE TABLE t (x INTEGER)")
    await db.execute("INSERT INTO t (x) VALUES (7)")
    assert not is_background()
    with background_priority():
        assert is_background()
        assert await db.fetchval("SELECT x FROM t") == 7
        # Tasks started inside background work inherit the mark.
        assert await asyncio.create_task(_flag())
        assert db._read_connection() is not db._reader
    assert not is_background()
    assert db._read_connection() is db._reader


async def _flag() -> bool:
    return is_background()


async def test_a_cancelled_waiter_does_not_lose_the_lock() -> None:
    lock = PriorityLock()
    await lock.acquire(background=True)
    waiter = asyncio.create_task(lock.acquire(background=False))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    lock.release()
    assert not lock.locked()
    await asyncio.wait_for(lock.acquire(background=True), 1.0)
    assert lock.locked()


async def test_a_failed_transaction_rolls_back_and_frees_the_lock(db: Database) -> None:
    await db.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await conn.execute("INSERT INTO t (x) VALUES (1)")
            raise RuntimeError("boom")
    assert not db._write_lock.locked()
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 0
