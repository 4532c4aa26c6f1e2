"""`ServerAdmin` against a real SQLite file: each change and its audit line commit together, a refused
change writes neither, and the poller is woken to post the line."""

from __future__ import annotations

import pytest

from bot.clock import FakeClock
from bot.errors import Refusal
from bot.server_admin import ServerAdmin
from storage.database import Database
from storage.guild_settings import GuildSettingsStore

GUILD, MOD, MEMBER, ROLE, CHANNEL = 10, 20, 30, 40, 50


class Wakes:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def wakes() -> Wakes:
    return Wakes()


@pytest.fixture
def admin(db: Database, fake_clock: FakeClock, wakes: Wakes) -> ServerAdmin:
    return ServerAdmin(db, fake_clock, GuildSettingsStore(db), wake_poller=wakes)


async def audit_lines(db: Database) -> list[tuple[str, str, int | None]]:
    rows = await db.fetchall("SELECT kind, text, target_id FROM audit_events ORDER BY id")
    return [(row["kind"], row["text"], row["target_id"]) for row in rows]


async def test_a_setting_and_its_audit_line_commit_together(admin: ServerAdmin, db: Database, wakes: Wakes) -> None:
    await admin.update_settings(GUILD, MOD, {"daily_credits": 7, "paused": True}, "set daily credits to 7")
    current = await admin.store.get(GUILD)
    assert (current.daily_credits, current.paused) == (7, True)
    assert await audit_lines(db) == [("settings", f"<@{MOD}> set daily credits to 7.", None)]
    assert wakes.count == 1


async def test_costs_families_and_budgets_are_audited(admin: ServerAdmin, db: Database) -> None:
    await admin.set_cost(GUILD, MOD, "veo-fast-kie", 1)
    await admin.reset_cost(GUILD, MOD, "veo-fast-kie")
    await admin.set_family_enabled(GUILD, MOD, "sora", False)
    await admin.set_role_budget(GUILD, MOD, ROLE, None)
    await admin.set_member_budget(GUILD, MOD, MEMBER, 3)
    assert await admin.store.costs(GUILD) == {}
    assert (await admin.store.family_toggles(GUILD))["sora"] is False
    assert (await admin.store.role_budgets(GUILD))[ROLE].credits is None
    assert (await admin.store.member_override(GUILD, MEMBER)) is not None
    assert [line[1] for line in await audit_lines(db)] == [
        f"<@{MOD}> set the cost of veo-fast-kie to 1 credit.",
        f"<@{MOD}> reset the cost of veo-fast-kie to the default.",
        f"<@{MOD}> turned /sora off.",
        f"<@{MOD}> set the budget of <@&{ROLE}> to unlimited.",
        f"<@{MOD}> set the budget of <@{MEMBER}> to 3 credits.",
    ]
    assert (await audit_lines(db))[-1][2] == MEMBER  # a member's budget names them as the target


async def test_removing_what_is_not_there_writes_nothing(admin: ServerAdmin, db: Database, wakes: Wakes) -> None:
    with pytest.raises(Refusal, match="has no budget here"):
        await admin.remove_role_budget(GUILD, MOD, ROLE)
    with pytest.raises(Refusal, match="no budget of their own"):
        await admin.remove_member_budget(GUILD, MOD, MEMBER)
    with pytest.raises(Refusal, match="not on the allowed list"):
        await admin.disallow_channel(GUILD, MOD, CHANNEL)
    assert await audit_lines(db) == []
    assert wakes.count == 0


async def test_the_channel_allowlist_comes_back_as_changed(admin: ServerAdmin, db: Database) -> None:
    assert await admin.allow_channel(GUILD, MOD, CHANNEL) == [CHANNEL]
    assert await admin.allow_channel(GUILD, MOD, CHANNEL + 1) == [CHANNEL, CHANNEL + 1]
    assert await admin.disallow_channel(GUILD, MOD, CHANNEL) == [CHANNEL + 1]
    await admin.set_member_budget(GUILD, MOD, MEMBER, 5)
    await admin.remove_member_budget(GUILD, MOD, MEMBER)
    assert await admin.store.member_override(GUILD, MEMBER) is None
    assert [kind for kind, _, _ in await audit_lines(db)] == ["channels", "channels", "channels", "budget", "budget"]
