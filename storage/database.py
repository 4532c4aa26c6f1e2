"""The database the bot runs on, whatever the engine: one interface, two backends.

`open_database(url)` picks the engine from DATABASE_URL: `sqlite:///...` (the default, zero setup;
storage.sqlite) or `postgresql://` / `postgres://` (several processes on one server; storage.postgres).
Services see `Database` and the `Connection` a transaction yields, which they only hand back to
storage functions: never a dialect, a placeholder style or a driver's row type.

Background work (the poller marks itself with `background_priority()`) never makes a member wait
behind it: each backend serves interactive calls first (see their docstrings for how).
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import aiosqlite

# What `Database.transaction()` yields: pass it to storage functions, never use it directly.
if TYPE_CHECKING:
    from storage.postgres import PgConnection

    Connection: TypeAlias = aiosqlite.Connection | PgConnection
else:
    Connection = Any
Row: TypeAlias = Any
"""A result row (`row["column"]`, `row[0]`); only storage modules read rows."""
Params: TypeAlias = Sequence[Any] | Mapping[str, Any]

JOBS_CHANNEL = "framecast_jobs"
"""Notified when a job becomes due at once (created, cancelled, called back): pollers wake."""

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


def migrations_for(dialect: str) -> list[tuple[int, str, str]]:
    """(version, name, sql) of every `NNNN_name.sql` in storage/migrations/<dialect>, in order.

    Both dialects carry the same version numbers (tests/storage/test_schemas.py holds them to the
    same tables, columns and indexes)."""
    found = []
    for entry in (resources.files("storage.migrations") / dialect).iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    return sorted(found)


class Database(ABC):
    """The bot's database; open one with `await open_database(url)` (or `Database.open(path)`)."""

    dialect: str = ""
    url: str = ""

    @classmethod
    async def open(cls, target: str | Path) -> Database:
        """A SQLite file path, or any DATABASE_URL."""
        return await open_database(target)

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def migrate(self) -> None:
        """Apply every migration of this dialect not yet applied."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Any]:
        """A write transaction yielding a `Connection`: commit on success, roll back on any exception."""

    @abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> int:
        """One write statement in its own transaction; returns the rows changed."""

    @abstractmethod
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...

    async def fetchone(self, sql: str, params: Params = ()) -> Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def fetchval(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]

    async def subscribe(self, channel: str, callback: Callable[[], None]) -> None:
        """Call `callback` when another process commits a `notify` on `channel`. SQLite has no such
        signal: its pollers keep their timer (and in-process wake-ups)."""


class DuplicateKey(Exception):
    """A write broke a unique index (SQLite's or PostgreSQL's integrity error, named once for services)."""


def is_duplicate_key(exc: BaseException) -> bool:
    """Whether a driver's error is a unique-index violation."""
    if isinstance(exc, sqlite3.IntegrityError):
        return "UNIQUE" in str(exc).upper()
    return type(exc).__name__ == "UniqueViolationError"  # asyncpg's, without importing it here


class UnsupportedDatabaseURL(ValueError):
    """DATABASE_URL names an engine Framecast does not run on."""


def sqlite_path(url: str | Path) -> Path | None:
    """The SQLite file a DATABASE_URL names (`sqlite:///relative`, `sqlite:////absolute`, a bare path);
    None for a PostgreSQL URL; UnsupportedDatabaseURL for anything else."""
    if isinstance(url, Path):
        return url
    for prefix in ("sqlite+aiosqlite:///", "sqlite:///"):
        if url.startswith(prefix):
            return Path(url[len(prefix):])
    if url.startswith(("postgresql://", "postgres://")):
        return None
    if "://" in url:
        scheme = url.split("://", 1)[0]
        raise UnsupportedDatabaseURL(
            f"unsupported scheme {scheme!r}: use sqlite:///path/to/bot.db or postgresql://user:password@host:port/db")
    return Path(url)


async def open_database(url: str | Path) -> Database:
    """Open (and migrate) the database a DATABASE_URL names."""
    path = sqlite_path(url)
    if path is None:
        from storage.postgres import PostgresDatabase

        return await PostgresDatabase.open(str(url))
    from storage.sqlite import SqliteDatabase

    return await SqliteDatabase.open(path)


def is_postgres(source: Database | Connection) -> bool:
    """Whether SQL for `source` must be PostgreSQL's (storage modules only)."""
    return getattr(source, "dialect", "sqlite") == "postgres"


# One trip each. Every aiosqlite call is a hop to the connection's thread and back through the event
# loop; under load each hop waits behind a loop turn of other work, so a member's command costs
# about as many loop turns as it makes hops. These helpers do in one hop what execute + fetch +
# close would do in three. On PostgreSQL they are one round trip each.

async def fetch_rows(conn: Connection, sql: str, params: Params = ()) -> list[Row]:
    """Every row of a query (also `... RETURNING`) inside a transaction."""
    if isinstance(conn, aiosqlite.Connection):
        return list(await conn.execute_fetchall(sql, params))  # type: ignore[arg-type]
    return await conn.fetch_rows(sql, params)


async def fetch_row(conn: Connection, sql: str, params: Params = ()) -> Row | None:
    """The first row of a query that yields at most a few (by key, `COUNT(*)`, `LIMIT 1`)."""
    rows = await fetch_rows(conn, sql, params)
    return rows[0] if rows else None


async def insert_row(conn: Connection, sql: str, params: Params = ()) -> int:
    """Run one INSERT and return the new row's id."""
    if not isinstance(conn, aiosqlite.Connection):
        return await conn.insert_row(sql, params)
    row = await conn.execute_insert(sql, params)  # type: ignore[arg-type]
    if row is None or row[0] is None:
        raise RuntimeError("INSERT returned no row id")
    return int(row[0])


_COUNTABLE = ("INSERT", "UPDATE", "DELETE", "REPLACE")


async def change_rows(conn: Connection, sql: str, params: Params = ()) -> int:
    """Run one statement and return how many rows it changed.

    On SQLite plain INSERT/UPDATE/DELETE are counted with `RETURNING 1` in one hop; anything else
    (DDL, a statement with its own RETURNING) goes through a cursor.
    """
    if not isinstance(conn, aiosqlite.Connection):
        return await conn.change_rows(sql, params)
    head = sql.lstrip()[:7].upper()
    if head.startswith(_COUNTABLE) and "RETURNING" not in sql.upper():
        return len(await fetch_rows(conn, f"{sql.rstrip().rstrip(';')} RETURNING 1", params))
    cursor = await conn.execute(sql, params)  # type: ignore[arg-type]
    changed = cursor.rowcount
    await cursor.close()
    return changed


async def execute_many(conn: Connection, sql: str, rows: Iterable[Params]) -> None:
    """One statement over many parameter rows (bulk loads: tests, benchmarks, migrations of data)."""
    if isinstance(conn, aiosqlite.Connection):
        await conn.executemany(sql, rows)  # type: ignore[arg-type]
    else:
        await conn.execute_many(sql, rows)


async def lock_in(conn: Connection, *name: object) -> None:
    """Serialise a decision across processes: on PostgreSQL an advisory lock on `name` held to the end
    of the transaction. SQLite's `BEGIN IMMEDIATE` already serialises every write transaction."""
    if not isinstance(conn, aiosqlite.Connection):
        await conn.lock(*name)


async def notify_in(conn: Connection, channel: str) -> None:
    """Tell every listening process at commit (PostgreSQL's NOTIFY); nothing on SQLite."""
    if not isinstance(conn, aiosqlite.Connection):
        await conn.notify(channel)


def split_sql(script: str) -> Iterable[str]:
    """Statements of a migration file (comments dropped; no semicolons inside literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()


# Kept for callers of the old single-engine module.
_split_sql = split_sql

__all__ = [
    "JOBS_CHANNEL", "Connection", "Database", "DuplicateKey", "PriorityLock", "Row", "UnsupportedDatabaseURL",
    "background_priority", "change_rows", "fetch_row", "fetch_rows", "insert_row", "is_background",
    "is_postgres", "lock_in", "mark_background", "migrations_for", "notify_in", "open_database", "sqlite_path",
]


def __getattr__(name: str) -> Any:
    """`storage.database.SqliteDatabase` / `BUSY_TIMEOUT_MS` for old imports, without a cycle."""
    if name in ("SqliteDatabase", "BUSY_TIMEOUT_MS"):
        from storage import sqlite

        return getattr(sqlite, name)
    raise AttributeError(name)

