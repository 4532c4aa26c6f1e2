"""The audit outbox: recorded with the change, posted once, retried later, only where a channel is set."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import bot.audit
from bot.audit import AuditService, quote
from bot.clock import FakeClock
from storage.audit import pending_sql
from storage.database import Database, execute_many, is_postgres
from storage.guild_settings import GuildSettingsStore

WITH_CHANNEL, WITHOUT_CHANNEL = 1, 2


@pytest.fixture
async def audit(db: Database, fake_clock: FakeClock) -> AuditService:
    await GuildSettingsStore(db).update(WITH_CHANNEL, {"audit_channel_id": 555}, now=fake_clock.now())
    return AuditService(db, fake_clock)


async def test_a_record_in_the_callers_transaction_rolls_back_with_it(db: Database, audit: AuditService) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as conn:
            await audit.record(conn=conn, guild_id=WITH_CHANNEL, kind="x", text="never happened", now=1.0)
            raise RuntimeError("the change failed")
    assert await audit.recent(WITH_CHANNEL) == []
    async with db.transaction() as conn:
        kept = await audit.record(conn=conn, guild_id=WITH_CHANNEL, kind="y", text="happened", now=2.0)
    assert [(e.id, e.kind, e.created_at) for e in await audit.recent(WITH_CHANNEL)] == [(kept, "y", 2.0)]


def test_one_way_to_write_an_audit_line() -> None:
    """`AuditService.record` is the only writer: no second helper, and the INSERT is written once."""
    root = Path(__file__).resolve().parents[2]
    inserts = [path.relative_to(root).as_posix() for folder in ("bot", "cogs", "storage", "fakes", "tests", "benchmarks")
               for path in (root / folder).rglob("*.py")
               if "INSERT INTO audit_events" in path.read_text(encoding="utf-8") and path != Path(__file__).resolve()]
    assert inserts == ["storage/audit.py"]
    assert not hasattr(bot.audit, "record_in") and not hasattr(bot.audit, "AuditRecorder")


async def test_pending_only_for_servers_with_a_channel_and_due(audit: AuditService, fake_clock: FakeClock) -> None:
    now = fake_clock.now()
    first = await audit.record(guild_id=WITH_CHANNEL, kind="ban", text="<@3> banned <@9>.", actor_id=3, target_id=9)
    await audit.record(guild_id=WITHOUT_CHANNEL, kind="ban", text="elsewhere")
    second = await audit.record(guild_id=WITH_CHANNEL, kind="grant", text="<@3> granted 2 credits to <@9>.")
    pending = await audit.pending(now, limit=10)
    assert [(e.id, e.channel_id) for e in pending] == [(first, 555), (second, 555)]
    assert pending[0].actor_id == 3 and pending[0].target_id == 9 and pending[0].next_attempt_at == now
    assert [e.id for e in await audit.pending(now, limit=1)] == [first]


async def test_posted_once_and_failures_wait(audit: AuditService, fake_clock: FakeClock) -> None:
    now = fake_clock.now()
    posted = await audit.record(guild_id=WITH_CHANNEL, kind="a", text="one")
    failing = await audit.record(guild_id=WITH_CHANNEL, kind="b", text="two")
    assert await audit.mark_posted(posted, 9001, now)
    assert not await audit.mark_posted(posted, 9002, now)  # a second post is refused
    await audit.mark_failed(failing, now, retry_in=30)
    assert await audit.pending(now) == []
    later = await audit.pending(now + 30)
    assert [(e.id, e.attempts) for e in later] == [(failing, 1)]
    recent = await audit.recent(WITH_CHANNEL)
    assert [e.id for e in recent] == [failing, posted]  # newest first
    assert recent[1].message_id == 9001 and recent[1].posted_at == now


def test_quote_defuses_mentions_and_formatting() -> None:
    text = quote("hi @everyone and @here <@123> <@!5> <@&77> <#9>\n```code```", limit=200)
    for mention in ("@everyone", "@here", "<@123>", "<@!5>", "<@&77>", "<#9>"):
        assert mention not in text
    assert "\n" not in text and "`" not in text
    assert quote("x" * 50, limit=10) == "x" * 9 + "…"


async def test_pending_reads_only_the_servers_with_a_channel(db: Database, audit: AuditService) -> None:
    """Asked on every poller pass: thousands of events of a server without a channel (never posted) must
    not be read to find the one that is due. The plan reads the channel's server first, then its rows."""
    async with db.transaction() as conn:
        await execute_many(conn, "INSERT INTO audit_events (guild_id, kind, text, created_at, next_attempt_at)"
                           " VALUES (?, 'job', 'x', ?, ?)", [(WITHOUT_CHANNEL, float(n), float(n)) for n in range(3000)])
    due = await audit.record(guild_id=WITH_CHANNEL, kind="job", text="due", now=5000.0)
    await db.execute("ANALYZE")
    assert [e.id for e in await audit.pending(10_000.0)] == [due]
    if is_postgres(db):
        [row] = await db.fetchall("EXPLAIN (ANALYZE, FORMAT JSON) " + pending_sql(True), {"now": 10_000.0, "limit": 20})
        plan = row["QUERY PLAN"]
        plan = json.loads(plan) if isinstance(plan, str) else plan

        def rows_of_events(node: dict[str, Any]) -> float:
            own = node.get("Actual Rows", 0) * node.get("Actual Loops", 1) if node.get("Relation Name") == "audit_events" else 0
            return own + sum(rows_of_events(child) for child in node.get("Plans", []))
        assert rows_of_events(plan[0]["Plan"]) <= 1
    else:
        steps = [r["detail"] for r in await db.fetchall("EXPLAIN QUERY PLAN " + pending_sql(False),
                                                        {"now": 10_000.0, "limit": 20})]
        assert steps[0].startswith("SCAN g") and "audit_pending_guild" in steps[1], steps
