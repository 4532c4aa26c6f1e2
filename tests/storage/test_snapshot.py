"""The one-statement member snapshot agrees with the store's own reads, and stays per server/member."""

from __future__ import annotations

import asyncio

from storage.database import Database
from storage.guild_settings import GuildSettingsStore, Limit
from storage.snapshot import read_snapshot

A, B = 1, 2
MEMBER, OTHER = 10, 11
BIG_ID = 1_234_567_890_123_456_789  # Discord snowflakes do not fit a double: they must survive the JSON


async def test_an_unconfigured_server_reads_as_defaults(db: Database) -> None:
    snapshot = await read_snapshot(db, A, MEMBER, [5])
    store = GuildSettingsStore(db)
    assert snapshot.settings == await store.get(A)
    assert (snapshot.ban, snapshot.allowed_channels, snapshot.prompt_rules, snapshot.costs) == (None, [], [], {})
    assert (snapshot.member_override, snapshot.role_limits) == (None, [])
    assert snapshot.is_family_enabled("veo")


async def test_the_snapshot_matches_every_separate_read(db: Database) -> None:
    store = GuildSettingsStore(db)
    await store.update(A, {"daily_credits": 30, "max_concurrent": 2, "paused": True, "audit_channel_id": BIG_ID},
                       now=5.0)
    await store.ban(A, MEMBER, reason="spam", banned_by=99, now=6.0)
    for channel in (BIG_ID, 300, 200):
        await store.allow_channel(A, channel)
    await store.set_family_enabled(A, "sora", False)
    await store.add_prompt_rule(A, "word", "gizmo", created_by=99, now=7.0)
    await store.add_prompt_rule(A, "regex", r"wid(g|j)et", created_by=None, now=8.0)
    await store.set_cost(A, "sora-2", 9)
    await store.set_member_override(A, MEMBER, None)  # unlimited
    await store.set_role_budget(A, 5, 40)
    await store.set_role_budget(A, 6, None)
    await store.set_role_budget(A, 7, 99)  # a role the member does not have
    # Another server and another member must not leak in.
    await store.update(B, {"paused": False}, now=5.0)
    await store.ban(A, OTHER, reason=None, banned_by=99, now=6.0)
    await store.set_cost(B, "sora-2", 1)

    snapshot = await read_snapshot(db, A, MEMBER, [5, 6])
    assert snapshot.settings == await store.get(A)
    assert snapshot.ban == await store.get_ban(A, MEMBER)
    assert snapshot.allowed_channels == await store.allowed_channels(A) == [200, 300, BIG_ID]
    assert snapshot.family_toggles == await store.family_toggles(A)
    assert not snapshot.is_family_enabled("sora") and snapshot.is_family_enabled("kling")
    assert snapshot.prompt_rules == await store.prompt_rules(A)
    assert snapshot.costs == await store.costs(A) == {"sora-2": 9}
    assert snapshot.member_override == await store.member_override(A, MEMBER) == Limit(None)
    assert sorted(snapshot.role_limits, key=repr) == sorted(await store.role_limits_for(A, [5, 6]), key=repr)

    other = await read_snapshot(db, A, OTHER, [])
    assert other.ban is not None and other.ban.reason is None
    assert other.member_override is None and other.role_limits == []


async def test_inside_a_transaction_the_snapshot_sees_uncommitted_changes(db: Database) -> None:
    store = GuildSettingsStore(db)
    async with db.transaction() as conn:
        await store.update(A, {"daily_credits": 3}, now=1.0, conn=conn)
        assert (await read_snapshot(conn, A, MEMBER)).settings.daily_credits == 3
        # Anyone else reading meanwhile (another task, another process) sees the committed state only.
        elsewhere = await asyncio.create_task(read_snapshot(db, A, MEMBER))
        assert elsewhere.settings.daily_credits is None
