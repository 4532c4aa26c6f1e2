"""`python -m bot migrate-to-postgres`: a SQLite bot's settings, ledger, audit trail and finished jobs,
copied to a real PostgreSQL server (the session's throwaway one, fakes/postgres.py)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import EXIT_CONFIG, EXIT_OK, EXIT_RUNTIME, main
from bot.clock import FakeClock
from bot.quota.service import QuotaService
from storage.database import Database, open_database
from storage.guild_settings import GuildSettingsStore
from storage.transfer import COPIED_TABLES, TransferRefused, copy_to_postgres
from tests.jobs.support import REQUESTER, build_rig, make_settings

GUILD = REQUESTER.guild_id


@pytest.fixture
def engine() -> str:
    """`db` (tests/conftest.py) is a fresh, migrated PostgreSQL database here."""
    return "postgres"


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await open_database(f"sqlite:///{tmp_path / 'data' / 'bot.db'}")
    try:
        yield database
    finally:
        await database.close()


async def _rows(db: Database, table: str) -> list[dict[str, object]]:
    return [dict(row) for row in await db.fetchall(f"SELECT * FROM {table} ORDER BY 1, 2")]


async def test_settings_ledger_audit_and_finished_jobs_are_copied_once(sqlite_db: Database, db: Database) -> None:
    clock = FakeClock(1_800_000_000.0)
    rig = build_rig(sqlite_db, clock, duration=30.0)
    settings = make_settings()
    store = GuildSettingsStore(sqlite_db)
    await store.update(GUILD, {"daily_credits": 7}, now=clock.now())
    await QuotaService(sqlite_db, settings, clock, store).grant(GUILD, REQUESTER.user_id, 3, actor_id=42, note="x")
    first = await rig.create("a cat surfing")
    await rig.create("a dog skating")

    # While the jobs are under way the copy is refused: their leases, holds and tasks are the bot's.
    with pytest.raises(TransferRefused, match="2 job"):
        await copy_to_postgres(sqlite_db, db)

    async def all_done() -> bool:
        return not await sqlite_db.fetchval("SELECT COUNT(*) FROM jobs WHERE next_due_at IS NOT NULL")
    await rig.run_until(all_done, step=5.0)
    await rig.poller.stop()

    copied = await copy_to_postgres(sqlite_db, db)
    assert copied["jobs"] == 2 and copied["credit_ledger"] >= 5 and copied["audit_events"] >= 1
    for table in COPIED_TABLES:
        assert await _rows(db, table) == await _rows(sqlite_db, table), table
    # What members and moderators see is the same on both engines.
    target_store = GuildSettingsStore(db)
    assert (await target_store.get(GUILD)).daily_credits == 7
    before = await QuotaService(sqlite_db, settings, clock, store).balance(GUILD, REQUESTER.user_id, ())
    after = await QuotaService(db, settings, clock, target_store).balance(GUILD, REQUESTER.user_id, ())
    assert after == before
    # New rows continue after the copied ids instead of colliding with them.
    new_id = await QuotaService(db, settings, clock, target_store).grant(GUILD, 7, 1, actor_id=42)
    assert new_id > max(int(r["id"]) for r in await _rows(sqlite_db, "credit_ledger"))
    assert (await db.fetchval("SELECT status FROM jobs WHERE id = ?", (first.id,))) == "succeeded"

    # A second copy would duplicate everything: refused.
    with pytest.raises(TransferRefused, match="already has rows"):
        await copy_to_postgres(sqlite_db, db)


def test_the_command_prints_what_it_copied_or_why_not(
        database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source_url = f"sqlite:///{tmp_path / 'old' / 'bot.db'}"
    assert main(["migrate-to-postgres", source_url, database_url]) == EXIT_OK
    assert "copied 0 jobs" in capsys.readouterr().out
    err = io.StringIO()
    assert main(["migrate-to-postgres", source_url, source_url], stderr=err) == EXIT_RUNTIME
    assert err.getvalue().count("\n") == 1 and "PostgreSQL" in err.getvalue()
    err = io.StringIO()
    assert main(["migrate-to-postgres", source_url], stderr=err) == EXIT_CONFIG
