"""GuildSettingsStore on a real SQLite file: every table read and written, always scoped by server."""

from __future__ import annotations

import pytest

from storage.database import Database
from storage.guild_settings import GuildSettings, GuildSettingsStore, Limit

A, B = 1, 2


@pytest.fixture
def store(db: Database) -> GuildSettingsStore:
    return GuildSettingsStore(db)


async def test_settings_default_then_update_then_reset_a_field(store: GuildSettingsStore) -> None:
    assert await store.get(A) == GuildSettings(guild_id=A)
    await store.update(A, {"daily_credits": 25, "paused": True, "audit_channel_id": 77}, now=10.0)
    await store.update(A, {"max_concurrent": 4}, now=11.0)  # other fields untouched
    current = await store.get(A)
    assert (current.daily_credits, current.max_concurrent, current.paused, current.audit_channel_id) == (25, 4, True, 77)
    assert current.updated_at == 11.0
    await store.update(A, {"daily_credits": None}, now=12.0)  # back to the bot-wide default
    assert (await store.get(A)).daily_credits is None
    assert await store.get(B) == GuildSettings(guild_id=B)


@pytest.mark.parametrize(
    "fields",
    [{"guild_id": 5}, {"daily_credits": -1}, {"max_concurrent": 0}, {"nonsense": 1}],
)
async def test_settings_refuse_bad_fields(store: GuildSettingsStore, fields: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        await store.update(A, fields, now=1.0)


async def test_writes_join_the_callers_transaction(db: Database, store: GuildSettingsStore) -> None:
    class Abort(Exception):
        pass

    with pytest.raises(Abort):
        async with db.transaction() as conn:
            await store.update(A, {"paused": True}, now=1.0, conn=conn)
            await store.ban(A, 9, reason="x", banned_by=3, now=1.0, conn=conn)
            assert (await store.get(A, conn=conn)).paused  # visible inside the transaction
            raise Abort
    assert not (await store.get(A)).paused
    assert await store.get_ban(A, 9) is None


async def test_costs(store: GuildSettingsStore) -> None:
    await store.set_cost(A, "sora-2", 7)
    await store.set_cost(A, "sora-2", 6)
    await store.set_cost(B, "1080p", 0)
    assert await store.costs(A) == {"sora-2": 6}
    assert await store.costs(B) == {"1080p": 0}
    assert await store.clear_cost(A, "sora-2")
    assert not await store.clear_cost(A, "sora-2")
    with pytest.raises(ValueError):
        await store.set_cost(A, "sora-2", -1)


async def test_role_budgets_and_member_overrides(store: GuildSettingsStore) -> None:
    await store.set_role_budget(A, 100, 5)
    await store.set_role_budget(A, 200, None)
    await store.set_role_budget(B, 100, 50)
    assert await store.role_budgets(A) == {100: Limit(5), 200: Limit(None)}
    assert await store.role_limits_for(A, [100, 300]) == [Limit(5)]
    assert await store.role_limits_for(A, []) == []
    assert sorted(limit.credits or 0 for limit in await store.role_limits_for(B, [100, 200])) == [50]
    assert await store.remove_role_budget(A, 200)
    assert await store.role_budgets(A) == {100: Limit(5)}

    assert await store.member_override(A, 9) is None
    await store.set_member_override(A, 9, None)
    assert await store.member_override(A, 9) == Limit(None)  # unlimited, not "none set"
    await store.set_member_override(A, 9, 3)
    assert await store.member_overrides(A) == {9: Limit(3)}
    assert await store.member_override(B, 9) is None
    assert await store.remove_member_override(A, 9)
    assert not await store.remove_member_override(A, 9)


async def test_prompt_rules(store: GuildSettingsStore) -> None:
    first = await store.add_prompt_rule(A, "word", "gizmo", created_by=3, now=5.0)
    same = await store.add_prompt_rule(A, "word", "gizmo", created_by=4, now=6.0)
    assert same == first  # adding twice keeps the one rule
    other = await store.add_prompt_rule(B, "word", "gizmo", created_by=3, now=5.0)
    regex = await store.add_prompt_rule(A, "regex", r"\bx\b", created_by=3, now=7.0)
    assert [r.id for r in await store.prompt_rules(A)] == [first.id, regex.id]
    assert not await store.remove_prompt_rule(A, other.id)  # B's rule cannot be removed from A
    assert await store.remove_prompt_rule(A, first.id)
    assert [r.pattern for r in await store.prompt_rules(A)] == [r"\bx\b"]
    assert [r.id for r in await store.prompt_rules(B)] == [other.id]


async def test_allowlist_and_family_toggles(store: GuildSettingsStore) -> None:
    assert await store.allow_channel(A, 30)
    assert not await store.allow_channel(A, 30)
    assert await store.allow_channel(A, 10)
    assert await store.allowed_channels(A) == [10, 30]
    assert await store.allowed_channels(B) == []
    assert await store.disallow_channel(A, 30)
    assert await store.allowed_channels(A) == [10]

    assert await store.is_family_enabled(A, "veo")  # on unless turned off
    await store.set_family_enabled(A, "veo", False)
    assert not await store.is_family_enabled(A, "veo")
    assert await store.is_family_enabled(B, "veo")
    assert await store.family_toggles(A) == {"veo": False}


async def test_bans(store: GuildSettingsStore) -> None:
    await store.ban(A, 9, reason="spam", banned_by=3, now=5.0)
    await store.ban(A, 9, reason="more spam", banned_by=4, now=6.0)  # re-ban updates
    ban = await store.get_ban(A, 9)
    assert ban is not None and (ban.reason, ban.banned_by, ban.created_at) == ("more spam", 4, 6.0)
    assert await store.get_ban(B, 9) is None
    assert [b.user_id for b in await store.bans(A)] == [9]
    assert await store.unban(A, 9)
    assert not await store.unban(A, 9)
    assert await store.bans(A) == []
