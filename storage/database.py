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

import asyncio
import contextvars
import logging
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000

Connection = aiosqlite.Connection
"""What `Database.transaction()` yields: pass it to storage functions, never use it directly."""
Row = sqlite3.Row
"""A result row: `row["column"]` and `row[0]`; only storage modules read rows."""

# True inside background work (the poller's tasks inherit it from the task that set it).
_background: contextvars.ContextVar[bool] = contextvars.ContextVar("framecast_db_background", default=False)


def mark_background() -> None:
    """Mark the current task, and every task it creates from now on, as background database work."""
    _background.set(True)


@contextmanager
def background_priority() -> Iterator[None]:
    """Database calls made inside this block (and tasks created in it) yield to interactive ones."""
    token = _background.set(True)
    try:
        yield
    finally:
        _background.reset(token)


def is_background() -> bool:
    return _background.get()


class PriorityLock:
    """An asyncio lock whose waiters are served interactive-first, then in arrival order."""

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._background: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    @property
    def waiting(self) -> int:
        return len(self._urgent) + len(self._background)

    async def acquire(self, background: bool) -> None:
        if not self._held and not self._urgent and not self._background:
            self._held = True
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._background if background else self._urgent
        queue.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed to us just as we were cancelled: pass it on
            else:
                queue.remove(future)
            raise

    def release(self) -> None:
        """Hand the lock straight to the next waiter (it stays held), or free it."""
        for queue in (self._urgent, self._background):
            while queue:
                future = queue.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        self._held = False


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

    def __init__(self, path: Path, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 background_reader: aiosqlite.Connection | None = None) -> None:
        self.path = path
        self._writer = writer
        self._reader = reader
        self._background_reader = background_reader or reader
        self._write_lock = PriorityLock()

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

    async def execute(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
        """One write statement in its own transaction; returns the rows changed."""
        async with self.transaction() as conn:
            return await change_rows(conn, sql, params)

    def _read_connection(self) -> aiosqlite.Connection:
        return self._background_reader if _background.get() else self._reader

    async def fetchall(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
        return await fetch_rows(self._read_connection(), sql, params)

    async def fetchone(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
        rows = await fetch_rows(self._read_connection(), sql, params)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]


# One trip each. Every aiosqlite call is a hop to the connection's thread and back through the event
# loop; under load each hop waits behind a loop turn of other work, so a member's command costs
# about as many loop turns as it makes hops. These helpers do in one hop what execute + fetch +
# close would do in three.

async def fetch_rows(conn: aiosqlite.Connection, sql: str,
                     params: Sequence[Any] | dict[str, Any] = ()) -> list[sqlite3.Row]:
    """Every row of a query (also `... RETURNING`), the cursor closed on the connection's thread."""
    return list(await conn.execute_fetchall(sql, params))


async def fetch_row(conn: aiosqlite.Connection, sql: str,
                    params: Sequence[Any] | dict[str, Any] = ()) -> sqlite3.Row | None:
    """The first row of a query that yields at most a few (by key, `COUNT(*)`, `LIMIT 1`)."""
    rows = await fetch_rows(conn, sql, params)
    return rows[0] if rows else None


async def insert_row(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
    """Run one INSERT and return the new row's id."""
    row = await conn.execute_insert(sql, params)
    if row is None or row[0] is None:
        raise sqlite3.DatabaseError("INSERT returned no row id")
    return int(row[0])


_COUNTABLE = ("INSERT", "UPDATE", "DELETE", "REPLACE")


async def change_rows(conn: aiosqlite.Connection, sql: str, params: Sequence[Any] | dict[str, Any] = ()) -> int:
    """Run one statement and return how many rows it changed.

    Plain INSERT/UPDATE/DELETE are counted with `RETURNING 1` in one hop; anything else (DDL, a
    statement with its own RETURNING) goes through a cursor.
    """
    head = sql.lstrip()[:7].upper()
    if head.startswith(_COUNTABLE) and "RETURNING" not in sql.upper():
        return len(await fetch_rows(conn, f"{sql.rstrip().rstrip(';')} RETURNING 1", params))
    cursor = await conn.execute(sql, params)
    changed = cursor.rowcount
    await cursor.close()
    return changed


def _split_sql(script: str) -> Iterable[str]:
    """Statements of a migration file (comments dropped; no semicolons inside literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()
