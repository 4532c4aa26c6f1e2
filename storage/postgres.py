"""PostgreSQL through an asyncpg pool: the engine for several bot processes on one database.

The SQL of the storage modules is written once with `?` or `:name` placeholders; here it is turned
into PostgreSQL's `$n` (cached per statement), so a service never sees a placeholder style. Where
the dialects really differ (JSON aggregation, `FOR UPDATE SKIP LOCKED`, advisory locks) the storage
module asks `is_postgres()` and says it in PostgreSQL's own words.

What SQLite's single writer decided by serialising every write is decided here by explicit locks
taken inside the same transaction (see `PgConnection.lock`), and job claims skip rows another
process holds. Interactive work never waits for a pool connection behind background work: the
poller's tasks may hold at most all but `RESERVED_FOR_INTERACTIVE` of the pool's connections.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any

import asyncpg  # type: ignore[import-untyped]

from storage.database import Database, is_background, migrations_for

log = logging.getLogger(__name__)

POOL_MIN_SIZE = 2
POOL_MAX_SIZE = 10
RESERVED_FOR_INTERACTIVE = 2
MIGRATION_LOCK = 0x46524D43  # "FRMC": one process migrates at a time
# Re-opening a dropped LISTEN connection: first try at once, then back off to this (seconds).
LISTEN_RETRY_SECONDS = (0.0, 0.5, 1.0, 2.0, 5.0)

# The connection of the transaction the current task is in: a read or write made through the Database
# inside `async with db.transaction()` reuses it instead of taking a second pooled connection (which,
# with every connection held by a transaction waiting for a second one, would never come).
_held: contextvars.ContextVar[tuple[asyncio.Task[Any] | None, asyncpg.Connection] | None] = contextvars.ContextVar(
    "framecast_pg_transaction", default=None)

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"])*\"|::|\?|(?<![:\w]):([A-Za-z_]\w*)")


@lru_cache(maxsize=2048)
def translate(sql: str) -> tuple[str, tuple[int | str, ...]]:
    """`?` / `:name` placeholders -> `$n`, and the order to read the parameters in."""
    keys: list[int | str] = []
    named: dict[str, int] = {}
    out: list[str] = []
    last = 0
    positional = 0
    for match in _TOKEN.finditer(sql):
        token = match.group(0)
        if token[0] in "'\"" or token == "::":
            continue
        out.append(sql[last:match.start()])
        if token == "?":
            keys.append(positional)
            positional += 1
            out.append(f"${len(keys)}")
        else:
            name = match.group(1)
            if name not in named:
                keys.append(name)
                named[name] = len(keys)
            out.append(f"${named[name]}")
        last = match.end()
    out.append(sql[last:])
    return "".join(out), tuple(keys)


def _args(keys: tuple[int | str, ...], params: Sequence[Any] | Mapping[str, Any]) -> list[Any]:
    if isinstance(params, Mapping):
        return [params[k] for k in keys]  # type: ignore[index]
    return [params[k] for k in keys]  # type: ignore[index]


def lock_key(*parts: object) -> int:
    """A signed 64-bit advisory lock key for a name such as ("member", guild, user)."""
    digest = zlib.crc32(repr(parts).encode()) | (zlib.adler32(repr(parts).encode()) << 32)
    return digest - (1 << 64) if digest >= (1 << 63) else digest


class PgConnection:
    """One pooled connection inside a transaction: what `PostgresDatabase.transaction()` yields."""

    dialect = "postgres"

    def __init__(self, raw: asyncpg.Connection) -> None:
        self.raw = raw

    async def fetch_rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        text, keys = translate(sql)
        return list(await self.raw.fetch(text, *_args(keys, params)))

    async def change_rows(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        text, keys = translate(sql)
        status = await self.raw.execute(text, *_args(keys, params))
        tail = status.rsplit(" ", 1)[-1]
        return int(tail) if tail.isdigit() else 0

    async def insert_row(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        text, keys = translate(f"{sql.rstrip().rstrip(';')} RETURNING id")
        value = await self.raw.fetchval(text, *_args(keys, params))
        if value is None:
            raise asyncpg.PostgresError("INSERT returned no row id")
        return int(value)

    async def execute_many(self, sql: str, rows: Iterable[Sequence[Any] | Mapping[str, Any]]) -> None:
        text, keys = translate(sql)
        await self.raw.executemany(text, [_args(keys, row) for row in rows])

    async def lock(self, *parts: object) -> None:
        """A transaction-scoped advisory lock on a name: released at commit or rollback."""
        await self.raw.execute("SELECT pg_advisory_xact_lock($1)", lock_key(*parts))

    async def notify(self, channel: str, payload: str = "") -> None:
        """Sent at commit, to every process listening (nothing if the transaction rolls back)."""
        await self.raw.execute("SELECT pg_notify($1, $2)", channel, payload)


class PostgresDatabase(Database):
    """The bot's database on a PostgreSQL server; open with `await PostgresDatabase.open(url)`."""

    dialect = "postgres"

    def __init__(self, url: str, pool: asyncpg.Pool, max_size: int) -> None:
        self.url = url
        self._pool = pool
        self._background_slots = asyncio.Semaphore(max(1, max_size - RESERVED_FOR_INTERACTIVE))
        self._listener: asyncpg.Connection | None = None
        self._subscribers: dict[str, list[Callable[[], None]]] = {}
        self._relisten: asyncio.Task[None] | None = None
        self._closing = False

    @classmethod
    async def open(cls, url: str, *, min_size: int = POOL_MIN_SIZE,  # type: ignore[override]
                   max_size: int = POOL_MAX_SIZE) -> PostgresDatabase:
        pool = await asyncpg.create_pool(url, min_size=min(min_size, max_size), max_size=max_size)
        db = cls(url, pool, max_size)
        try:
            await db.migrate()
        except BaseException:
            await pool.close()
            raise
        return db

    async def close(self) -> None:
        self._closing = True
        if self._relisten is not None:
            self._relisten.cancel()
            await asyncio.gather(self._relisten, return_exceptions=True)
        if self._listener is not None:
            listener, self._listener = self._listener, None
            try:
                await listener.close(timeout=2)
            except Exception:  # noqa: BLE001 - a dead server: the pool's close below says so if it matters
                listener.terminate()
        await self._pool.close()

    @asynccontextmanager
    async def _acquire(self) -> AsyncIterator[asyncpg.Connection]:
        held = _held.get()
        if held is not None and held[0] is asyncio.current_task():
            yield held[1]
            return
        if is_background():
            async with self._background_slots, self._pool.acquire() as raw:
                yield raw
        else:
            async with self._pool.acquire() as raw:
                yield raw

    async def migrate(self) -> None:
        """Apply every migration not yet applied; one process at a time (an advisory lock)."""
        async with self._acquire() as raw, raw.transaction():
            await raw.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await raw.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at DOUBLE PRECISION NOT NULL)")
            applied = {row["version"] for row in await raw.fetch("SELECT version FROM schema_migrations")}
            for version, name, sql in migrations_for("postgres"):
                if version in applied:
                    continue
                await raw.execute(sql)
                await raw.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                                  version, name, time.time())
                log.info("applied migration %s", name)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PgConnection]:
        """A read-committed transaction; decisions take their own locks (`PgConnection.lock`)."""
        async with self._acquire() as raw, raw.transaction():
            token = _held.set((asyncio.current_task(), raw))
            try:
                yield PgConnection(raw)
            finally:
                _held.reset(token)

    async def execute(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> int:
        async with self.transaction() as conn:
            return await conn.change_rows(sql, params)

    async def fetchall(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
        text, keys = translate(sql)
        async with self._acquire() as raw:
            return list(await raw.fetch(text, *_args(keys, params)))

    # --- LISTEN/NOTIFY --------------------------------------------------------------------------
    async def subscribe(self, channel: str, callback: Callable[[], None]) -> None:
        """Call `callback` whenever any process commits a `notify(channel)`; one listening connection,
        re-opened if it drops (the timers stay the safety net meanwhile)."""
        if self._listener is None:
            self._listener = await self._listen_on(())
        if channel not in self._subscribers:
            self._subscribers[channel] = []
            await self._listener.add_listener(channel, self._dispatch)
        self._subscribers[channel].append(callback)

    async def _listen_on(self, channels: Iterable[str]) -> asyncpg.Connection:
        """A new listening connection on `channels` that notices its own end."""
        listener = await asyncpg.connect(self.url)
        try:
            for channel in channels:
                await listener.add_listener(channel, self._dispatch)
        except BaseException:
            listener.terminate()
            raise
        listener.add_termination_listener(self._listener_lost)
        return listener

    def _listener_lost(self, lost: object) -> None:
        """The listening connection ended (server restart, a terminated backend, a network cut): without
        it every poller here would wait out its timer for the rest of its life, so open another."""
        if self._closing or lost is not self._listener:
            return
        self._listener = None
        log.warning("the PostgreSQL LISTEN connection was lost; re-opening it")
        if self._relisten is None or self._relisten.done():
            self._relisten = asyncio.get_running_loop().create_task(self._reopen_listener(), name="pg-relisten")

    async def _reopen_listener(self) -> None:
        attempt = 0
        while not self._closing:
            await asyncio.sleep(LISTEN_RETRY_SECONDS[min(attempt, len(LISTEN_RETRY_SECONDS) - 1)])
            attempt += 1
            try:
                listener = await self._listen_on(tuple(self._subscribers))
            except Exception as error:  # noqa: BLE001 - any failure to connect: wait and try again
                log.debug("re-opening the LISTEN connection failed (%s); retrying", error)
                continue
            if self._closing:
                await listener.close()
                return
            self._listener = listener
            log.info("the PostgreSQL LISTEN connection is back after %d attempt(s)", attempt)
            for channel in self._subscribers:  # a notification sent while it was down is lost: look now
                self._dispatch(listener, 0, channel, "")
            return

    def _dispatch(self, _conn: object, _pid: int, channel: str, _payload: str) -> None:
        for callback in self._subscribers.get(channel, ()):
            try:
                callback()
            except Exception:
                log.exception("a %s listener failed", channel)
