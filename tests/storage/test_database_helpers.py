"""The one-hop statement helpers: rows, row ids and changed-row counts, inside a transaction."""

from __future__ import annotations

from storage.database import Database, change_rows, fetch_row, fetch_rows, insert_row


async def test_helpers_insert_count_and_read_inside_a_transaction(db: Database) -> None:
    await db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER UNIQUE)")  # DDL goes through a cursor
    async with db.transaction() as conn:
        first = await insert_row(conn, "INSERT INTO t (x) VALUES (?)", (1,))
        second = await insert_row(conn, "INSERT INTO t (x) VALUES (?)", (2,))
        assert second == first + 1
        assert await change_rows(conn, "INSERT INTO t (x) VALUES (2) ON CONFLICT DO NOTHING") == 0
        assert await change_rows(conn, "UPDATE t SET x = x * 10 WHERE x >= ?;", (1,)) == 2
        assert [r["x"] for r in await fetch_rows(conn, "SELECT x FROM t ORDER BY x")] == [10, 20]
        row = await fetch_row(conn, "DELETE FROM t WHERE x = 10 RETURNING id")  # its own RETURNING is kept
        assert row is not None and row["id"] == first
        assert await fetch_row(conn, "SELECT x FROM t WHERE x = 999") is None
    assert await db.fetchval("SELECT COUNT(*) FROM t") == 1
    assert await db.execute("DELETE FROM t") == 1
    assert await db.fetchone("SELECT * FROM t") is None
