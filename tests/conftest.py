"""Fixtures shared by every test: a real database (a SQLite file, or a database on a throwaway
PostgreSQL server) and a controllable clock.

Tests under the folders in BOTH_ENGINES that use `db` (or `database_url`) run once per engine;
elsewhere `engine` is "sqlite". The PostgreSQL server starts once per session (fakes/postgres.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import discord

from bot.clock import FakeClock
from storage.database import Database, open_database
from fakes.discord_api import FakeDiscord
from fakes.postgres import PostgresServer

BOTH_ENGINES = ("tests/storage/", "tests/jobs/", "tests/quota/", "tests/moderation/", "tests/publishing/", "tests/cogs/",
                "tests/reliability/test_vendor_faults.py", "tests/reliability/test_discord_faults.py",
                "tests/reliability/test_logs.py", "tests/reliability/test_soak.py", "tests/test_server_admin.py", "tests/test_http_server.py")
ENGINES = ("sqlite", "postgres")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the database tests of BOTH_ENGINES on SQLite and on PostgreSQL."""
    uses_db = {"db", "database_url", "engine"} & set(metafunc.fixturenames)
    where = Path(str(metafunc.definition.path)).as_posix()
    if uses_db and any(
            folder in where for folder in BOTH_ENGINES):
        if metafunc.definition.get_closest_marker("sqlite_only") is None:
            metafunc.parametrize("engine", ENGINES)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: a test of SQLite's own machinery (not run on PostgreSQL)")


@pytest.fixture
def engine() -> str:
    return "sqlite"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway server for the session. In CI (CI=true) failing to start one fails the tests."""
    try:
        server = PostgresServer()
        server.start()
    except Exception as exc:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"PostgreSQL tests must run in CI, but no server could be started: {exc}", pytrace=False)
        pytest.skip(f"no PostgreSQL server could be started: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_template(postgres_server: PostgresServer) -> str:
    """A migrated database that each test's database is copied from."""

    async def build() -> str:
        name = await postgres_server.create_database()
        database = await open_database(postgres_server.url(name))
        await database.close()
        return name

    # In a thread of its own: it may be first asked for from inside a test's running event loop.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, build()).result()


@pytest.fixture
async def database_url(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A fresh, migrated database for this test, as a DATABASE_URL."""
    if engine == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'bot.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = await server.create_database(request.getfixturevalue("postgres_template"))
    try:
        yield server.url(name)
    finally:
        await server.drop_database(name)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await open_database(database_url)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    """The loopback Discord stand-in, with discord.py's REST routed at it."""
    server = FakeDiscord()
    await server.start()
    monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
    try:
        yield server
    finally:
        await server.close()
