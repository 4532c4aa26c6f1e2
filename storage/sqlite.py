"""SQLite through aiosqlite: WAL, busy timeout, numbered migrations, and one writer transaction at a time.

Three connections per process: a writer whose transactions are `BEGIN IMMEDIATE` (so two bot
processes on one file serialise their writes and never interleave a read-modify-write), and two
readers that never block behind the writer (WAL): one for background work, one for everything else.

Background work (the poller marks itself with `background_priority()`) never makes a member wait
in a queue: its reads go to their own connection (each aiosqlite connection is one thread serving
calls FIFO), and a waiting interactive transaction takes the write lock before any waiting
background one. So a slash command waits for at most the one poller transaction in progress.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from storage.database import (
    Database, Params, PriorityLock, Row, _background, change_rows, fetch_rows, migrations_for, split_sql,
)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


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


class SqliteDatabase(Database):
    """The bot's database in one SQLite file; open with `await SqliteDatabase.open(path)`."""

    dialect = "sqlite"

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 background_reader: aiosqlite.Connection | None = None) -> None:
        self.path = path
        self.url = f"sqlite:///{path}"
        self._writer = writer
        self._reader = reader
        self._background_reader = background_reader or reader
        self._write_lock = PriorityLock()

    @classmethod
    async def open(cls, path: str | Path) -> SqliteDatabase:  # type: ignore[override]
        path = Path(path)
        if str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
        writer = await aiosqlite.connect(path, isolation_level=None)
        await _configure(writer)
        await _pragma(writer, "PRAGMA journal_mode = WAL")
        reader = await aiosqlite.connect(path, isolation_level=None)
        await _configure(reader)
        background_reader = await aiosqlite.connect(path, isolation_level=None)
        await _configure(background_reader)
        db = cls(path, writer, reader, background_reader)
        await db.migrate()
        return db

    async def close(self) -> None:
        if self._background_reader is not self._reader:
            await self._background_reader.close()
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
        for version, name, sql in migrations_for("sqlite"):
            if version in applied:
                continue
            async with self.transaction() as conn:
                # Another process may have applied it while we waited for the write lock.
                cursor = await conn.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,))
                if await cursor.fetchone():
                    continue
                for statement in split_sql(sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (version, name, time.time()),
                )
            log.info("applied migration %s", name)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction (`BEGIN IMMEDIATE`): commit on success, roll back on any exception.

        Interactive callers waiting for the write lock go before background ones.
        """
        await self._write_lock.acquire(background=_background.get())
        try:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            else:
                await self._writer.execute("COMMIT")
        finally:
            self._write_lock.release()

    async def execute(self, sql: str, params: Params = ()) -> int:
        """One write statement in its own transaction; returns the rows changed."""
        async with self.transaction() as conn:
            return await change_rows(conn, sql, params)

    def _read_connection(self) -> aiosqlite.Connection:
        return self._background_reader if _background.get() else self._reader

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await fetch_rows(self._read_connection(), sql, params)
