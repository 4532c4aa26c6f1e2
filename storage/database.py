"""SQLite through aiosqlite: WAL, busy timeout, numbered migrations, and one writer transaction at a time.

Two connections per process: a writer whose transactions are `BEGIN IMMEDIATE` (so two bot
processes on one file serialise their writes and never interleave a read-modify-write), and a reader
that never blocks behind the writer (WAL), which keeps slash-command answers fast while the poller
writes.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


def _migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every `NNNN_name.sql` shipped in storage/migrations, in order."""
    found = []
    for entry in resources.files("storage.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


async def _pragma(conn: aiosqlite.Connection, statement: str) -> None:
    """Run a PRAGMA and finalise its cursor (an open statement would hold a lock)."""
    cursor = await conn.execute(statement)
    await cursor.fetchall()
    await cursor.close()


async def _configure(conn: aiosqlite.Connection) -> None:
    conn.row_factory = aiosqlite.Row
    await _pragma(conn, f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await _pragma(conn, "PRAGMA foreign_keys = ON")
    await _pragma(conn, "PRAGMA synchronous = NORMAL")


class Database:
    """The bot's database; open with `await Database.open(path)`."""

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path) -> "Database":
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        writer = await aiosqlite.connect(path, isolation_level=None)
        await _configure(writer)
        await _pragma(writer, "PRAGMA journal_mode = WAL")
        reader = await aiosqlite.connect(path, isolation_level=None)
        await _configure(reader)
        db = cls(path, writer, reader)
        await db.migrate()
        return db

    async def close(self) -> None:
        await self._reader.close()
        await self._writer.close()

    async def migrate(self) -> None:
        """Apply every migration not yet applied, each in its own transaction."""
        async with self.transaction() as conn:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
            )
        rows = await self.fetchall("SELECT version FROM schema_migrations")
        applied = {row["version"] for row in rows}
        for version, name, sql in _migrations():
            if version in applied:
                continue
            async with self.transaction() as conn:
                # Another process may have applied it while we waited for the write lock.
                cursor = await conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,))
                if await cursor.fetchone():
                    continue
                for statement in _split_sql(sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, strftime('%s','now'))",
                    (version, name),
                )
            log.info("applied migration %s", name)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (`BEGIN IMMEDIATE`): commit on success, roll back on any exception."""
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            else:
                await self._writer.execute("COMMIT")

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """One write statement in its own transaction; returns the rows changed."""
        async with self.transaction() as conn:
            cursor = await conn.execute(sql, params)
            changed = cursor.rowcount
            await cursor.close()
            return changed

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        cursor = await self._reader.execute(sql, params)
        rows = await cursor.fetchall()
        await cursor.close()
        return list(rows)

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        cursor = await self._reader.execute(sql, params)
        row = await cursor.fetchone()
        await cursor.close()
        return row

    async def fetchval(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]


def _split_sql(script: str) -> Iterable[str]:
    """Statements of a migration file (comments dropped; no semicolons inside literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()
