"""/framecast through discord.py's real command tree, REST over HTTP to the Discord stand-in, real SQLite.

Each test changes something as a moderator and then checks what the next member request experiences
(/quota, /veo, /sora, /kling), because that - not a database row - is what the command is for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord
import pytest

from tests.cogs.conftest import Harness, Reply, harness_factory
from fakes.discord_api import DEFAULT_MEMBER_PERMISSIONS, MANAGE_GUILD, FakeDiscord
from fakes.vendors import FakeKieVendor

GUILD = FakeDiscord.GUILD_ID
USER = FakeDiscord.USER_ID
MOD = FakeDiscord.MODERATOR_ID
OTHER = 1400000000000000009
EXTENSIONS = ("cogs.generate", "cogs.jobs", "cogs.quota", "cogs.admin")
REFUSED = "Only moderators can use /framecast"
OPTION_USER, OPTION_CHANNEL, OPTION_ROLE = 6, 7, 8


@dataclass
class AdminReply(Reply):
    """A Reply that also carries the answer's final allowed_mentions (after any edit)."""

    allowed_mentions: dict[str, Any] | None = None


class AdminHarness(Harness):
    """The shared Harness plus /framecast payloads with resolved users, roles and channels."""

    def reply_to(self, payload: dict[str, Any]) -> AdminReply:
        reply = super().reply_to(payload)
        message = self.fake.messages[self.fake._interaction_originals[payload["token"]]]
        return AdminReply(reply.callbacks, reply.content, reply.ephemeral, message.allowed_mentions)

    async def framecast(
        self, path: str, options: dict[str, Any] | None = None, *, user_id: int = MOD,
        permissions: int | None = None, role_ids: tuple[int, ...] = (), guild_id: int = GUILD,
    ) -> Reply:
        """`/framecast <path> options`; the caller has Manage Server unless `permissions` says otherwise."""
        return await self.run(self.framecast_payload(path, options, user_id=user_id, permissions=permissions,
                                                     role_ids=role_ids, guild_id=guild_id))

    def framecast_payload(
        self, path: str, options: dict[str, Any] | None = None, *, user_id: int = MOD,
        permissions: int | None = None, role_ids: tuple[int, ...] = (), guild_id: int = GUILD,
    ) -> dict[str, Any]:
        words = path.split()
        group, sub = (words[0], words[1]) if len(words) == 2 else (None, words[0])
        plain: dict[str, Any] = {}
        types: dict[str, int] = {}
        resolved: dict[str, dict[str, Any]] = {}
        for name, value in (options or {}).items():
            if isinstance(value, discord.Object) and getattr(value, "kind", None):
                kind = value.kind  # type: ignore[attr-defined]
                types[name] = {"user": OPTION_USER, "role": OPTION_ROLE, "channel": OPTION_CHANNEL}[kind]
                plain[name] = str(value.id)
                self._resolve(resolved, kind, value.id, guild_id)
            else:
                plain[name] = value
        perms = DEFAULT_MEMBER_PERMISSIONS | MANAGE_GUILD if permissions is None else permissions
        payload = self.fake.slash_command("framecast", plain, subcommand=sub, subcommand_group=group,
                                          user_id=user_id, role_ids=role_ids, permissions=perms,
                                          guild_id=guild_id, option_types=types)
        if resolved:
            payload["data"]["resolved"] = resolved
        return payload

    def _resolve(self, resolved: dict[str, dict[str, Any]], kind: str, snowflake: int, guild_id: int) -> None:
        key = str(snowflake)
        if kind == "user":
            member = self.fake.member_payload(snowflake, (FakeDiscord.MEMBER_ROLE_ID,),
                                              permissions=DEFAULT_MEMBER_PERMISSIONS)
            resolved.setdefault("users", {})[key] = member.pop("user")
            resolved.setdefault("members", {})[key] = member
        elif kind == "role":
            resolved.setdefault("roles", {})[key] = {
                "id": key, "name": f"role{snowflake % 1000}", "permissions": "0", "position": 1, "color": 0,
                "hoist": False, "managed": False, "mentionable": False, "flags": 0}
        else:
            channel = self.fake.channels.get(snowflake) or self.fake._text_channel(snowflake, "other", 9)
            resolved.setdefault("channels", {})[key] = {**channel, "permissions": str(DEFAULT_MEMBER_PERMISSIONS),
                                                         "guild_id": str(guild_id)}

    async def member(self, name: str, options: dict[str, Any] | None = None, **kwargs: Any) -> Reply:
        """A plain member's command (/quota, /veo, ...)."""
        return await self.command(name, options, **kwargs)

    async def audit_rows(self) -> list[Any]:
        return await self.bot.services.db.fetchall("SELECT * FROM audit_events ORDER BY id")


def ref(kind: str, snowflake: int) -> discord.Object:
    """A user/role/channel option value: the payload gets the id and its `resolved` entry."""
    obj = discord.Object(id=snowflake)
    obj.kind = kind  # type: ignore[attr-defined]
    return obj


AdminFactory = Callable[..., Awaitable[AdminHarness]]


@pytest.fixture
async def make_admin(database_url: str, fake: FakeDiscord, kie: FakeKieVendor) -> AsyncIterator[AdminFactory]:
    """Bots on one database, so a second bot is "the same bot after a restart"."""
    async with harness_factory(database_url, fake, kie, EXTENSIONS, AdminHarness) as factory:
        yield factory


@pytest.fixture
async def admin(make_admin: AdminFactory) -> AdminHarness:
    return await make_admin()


def no_pings(reply: Reply) -> bool:
    return isinstance(reply, AdminReply) and reply.allowed_mentions == {"parse": []}


# --- who may use /framecast ---------------------------------------------------------------------


async def test_a_member_without_manage_server_is_refused_and_nothing_changes(admin: AdminHarness) -> None:
    shown = await admin.framecast("settings show", user_id=USER, permissions=DEFAULT_MEMBER_PERMISSIONS,
                                  role_ids=(FakeDiscord.MEMBER_ROLE_ID,))
    banned = await admin.framecast("ban", {"member": ref("user", OTHER)}, user_id=USER,
                                   permissions=DEFAULT_MEMBER_PERMISSIONS)
    for reply in (shown, banned):
        assert reply.ephemeral and reply.content.startswith(REFUSED) and no_pings(reply)
        assert [c["type"] for c in reply.callbacks] == [4]  # refused before the command deferred
    assert await admin.count("guild_bans") == 0
    assert await admin.audit_rows() == []


async def test_the_configured_moderator_role_is_accepted(admin: AdminHarness) -> None:
    set_role = await admin.framecast("settings set", {"moderator_role": ref("role", FakeDiscord.MODERATOR_ROLE_ID)})
    assert set_role.content.startswith(f"Done: set the moderator role to <@&{FakeDiscord.MODERATOR_ROLE_ID}>.")
    assert "Server Settings → Integrations" in set_role.content  # default_permissions hides it otherwise

    with_role = await admin.framecast("ban", {"member": ref("user", OTHER), "reason": "spam"}, user_id=USER,
                                      permissions=DEFAULT_MEMBER_PERMISSIONS,
                                      role_ids=(FakeDiscord.MODERATOR_ROLE_ID,))
    without = await admin.framecast("bans", user_id=OTHER, permissions=DEFAULT_MEMBER_PERMISSIONS,
                                    role_ids=(FakeDiscord.MEMBER_ROLE_ID,))
    assert with_role.content == f"<@{OTHER}> can no longer make videos here (spam)."
    assert without.content.startswith(REFUSED)
    ban = await admin.bot.services.guild_settings.get_ban(GUILD, OTHER)
    assert ban is not None and ban.banned_by == USER and ban.reason == "spam"


async def test_the_command_tree_requires_manage_server_by_default_and_is_guild_only(admin: AdminHarness) -> None:
    registered = next(c for c in admin.fake.commands[GUILD] if c["name"] == "framecast")
    assert int(registered["default_member_permissions"]) == MANAGE_GUILD
    assert registered["contexts"] == [0]  # guild only
    groups = {o["name"] for o in registered["options"] if o["type"] == 2}
    assert {"settings", "cost", "budget", "rules", "channels", "family", "credits", "audit"} <= groups


# --- settings and the audit trail ---------------------------------------------------------------


async def test_every_answer_is_ephemeral_without_pings_and_every_change_is_audited(admin: AdminHarness) -> None:
    replies = [
        await admin.framecast("settings set", {"daily_credits": 4, "max_concurrent": 3}),
        await admin.framecast("cost set", {"model": "sora-2", "credits": 5}),
        await admin.framecast("family disable", {"family": "kling"}),
        await admin.framecast("budget role", {"role": ref("role", FakeDiscord.MEMBER_ROLE_ID), "unlimited": True}),
        await admin.framecast("settings show"),
    ]
    assert all(r.ephemeral and no_pings(r) for r in replies)
    assert all([c["type"] for c in r.callbacks] == [5] for r in replies)  # deferred, then edited
    shown = replies[-1].content
    assert "Daily credits per member: 4" in shown and "Videos in progress per member: 3" in shown
    assert "Turned off: /kling" in shown

    rows = await admin.audit_rows()
    assert [r["kind"] for r in rows] == ["settings", "cost", "family", "budget"]
    assert all(r["guild_id"] == GUILD and r["actor_id"] == MOD and r["text"].startswith(f"<@{MOD}> ") for r in rows)
    assert "cost of sora-2 to 5 credits" in rows[1]["text"]


async def test_audit_events_are_posted_in_the_audit_channel_without_pings(admin: AdminHarness) -> None:
    channel = await admin.framecast("audit channel", {"channel": ref("channel", FakeDiscord.AUDIT_CHANNEL_ID)})
    assert channel.content == f"Done: set the audit channel to <#{FakeDiscord.AUDIT_CHANNEL_ID}>."
    await admin.framecast("ban", {"member": ref("user", OTHER), "reason": "@everyone spam"})

    await admin.bot.services.poller.run_once()  # the poller owns the outbox; run it once by hand

    posted = admin.fake.messages_in(FakeDiscord.AUDIT_CHANNEL_ID)
    assert [m.content.split(" ", 1)[1] for m in posted] == [
        f"set the audit channel to <#{FakeDiscord.AUDIT_CHANNEL_ID}>.",
        f"banned <@{OTHER}> from making videos: @\u200beveryone spam",
    ]
    assert all(m.allowed_mentions == {"parse": []} for m in posted)


async def test_settings_live_in_the_database_and_survive_a_restart(make_admin: AdminFactory) -> None:
    first = await make_admin()
    await first.framecast("settings set", {"daily_credits": 3, "paused": True})
    await first.framecast("channels allow", {"channel": ref("channel", FakeDiscord.OTHER_CHANNEL_ID)})
    await first.bot.close()

    second = await make_admin()
    shown = (await second.framecast("settings show")).content
    assert "Paused: **yes**" in shown and "Daily credits per member: 3" in shown
    assert f"Channels: <#{FakeDiscord.OTHER_CHANNEL_ID}>" in shown


async def test_settings_reset_returns_to_the_bot_default(admin: AdminHarness) -> None:
    await admin.framecast("settings set", {"daily_credits": 3})
    await admin.framecast("settings reset", {"setting": "daily_credits"})
    shown = (await admin.framecast("settings show")).content
    assert "Daily credits per member: 100 (bot default)" in shown


async def test_settings_set_without_options_is_an_input_error(admin: AdminHarness) -> None:
    reply = await admin.framecast("settings set")
    assert reply.content == "**settings**: give at least one option to change."
    assert await admin.audit_rows() == []


# --- budgets, credits and /quota ----------------------------------------------------------------


async def test_budget_member_shows_in_the_members_quota(admin: AdminHarness) -> None:
    before = await admin.member("quota")
    assert "Credits left: **100** (daily budget 100" in before.content

    reply = await admin.framecast("budget member", {"member": ref("user", USER), "credits": 3})
    assert reply.content == f"Done: <@{USER}> gets 3 credits per day."
    assert "Credits left: **3** (daily budget 3" in (await admin.member("quota")).content

    await admin.framecast("budget member", {"member": ref("user", USER), "unlimited": True})
    assert "Credits: **unlimited**" in (await admin.member("quota")).content

    await admin.framecast("budget member-remove", {"member": ref("user", USER)})
    assert "daily budget 100" in (await admin.member("quota")).content


async def test_budget_role_applies_to_members_with_the_role_only(admin: AdminHarness) -> None:
    await admin.framecast("budget role", {"role": ref("role", FakeDiscord.MEMBER_ROLE_ID), "credits": 6})
    with_role = await admin.member("quota", role_ids=(FakeDiscord.MEMBER_ROLE_ID,))
    without = await admin.member("quota", role_ids=(), user_id=OTHER)
    assert "daily budget 6" in with_role.content and "daily budget 100" in without.content
    listed = (await admin.framecast("budget list")).content
    assert f"<@&{FakeDiscord.MEMBER_ROLE_ID}>: 6 credits" in listed


async def test_a_budget_for_everyone_points_to_the_daily_credits_setting(admin: AdminHarness) -> None:
    reply = await admin.framecast("budget role", {"role": ref("role", FakeDiscord.EVERYONE_ROLE_ID), "credits": 1})
    assert reply.content == "**role**: for everyone, use `/framecast settings set daily_credits`."
    assert await admin.count("guild_role_budgets") == 0


async def test_budget_needs_exactly_one_of_credits_or_unlimited(admin: AdminHarness) -> None:
    neither = await admin.framecast("budget member", {"member": ref("user", USER)})
    both = await admin.framecast("budget member", {"member": ref("user", USER), "credits": 2, "unlimited": True})
    assert neither.content.startswith("**credits**: give a number of credits")
    assert both.content.startswith("**credits**: give either")
    assert await admin.count("guild_member_overrides") == 0


async def test_cost_set_prices_the_next_video_and_credits_grant_and_reset(admin: AdminHarness) -> None:
    await admin.framecast("settings set", {"daily_credits": 10})
    cost = await admin.framecast("cost set", {"model": "veo-fast-kie", "credits": 7})
    assert cost.content == "veo-fast-kie now costs 7 credits."

    accepted = await admin.member("veo", {"prompt": "a lighthouse at dusk"})
    assert accepted.content.startswith("Job #1 accepted")
    assert (await admin.job_row(1)).cost == 7
    quota = (await admin.member("quota")).content
    assert "Credits left: **3**" in quota and "On hold: 7 credits" in quota and "Videos in progress: 1 / 10" in quota

    grant = await admin.framecast("credits grant", {"member": ref("user", USER), "amount": 4})
    assert grant.content == f"Gave <@{USER}> 4 credits for the next 24 hours."
    assert "Credits left: **7**" in (await admin.member("quota")).content

    await admin.framecast("credits reset", {"member": ref("user", USER)})
    assert "Credits left: **3**" in (await admin.member("quota")).content  # the hold stays; the grant is gone
    kinds = [r["kind"] for r in await admin.audit_rows()]
    assert kinds[-2:] == ["quota_grant", "quota_reset"]


async def test_cost_list_marks_the_servers_own_prices(admin: AdminHarness) -> None:
    await admin.framecast("cost set", {"model": "1080p", "credits": 0})
    listed = (await admin.framecast("cost list")).content
    assert "1080p: 0 credits (set here)" in listed and "sora-2: 3 credits\n" in listed
    await admin.framecast("cost reset", {"model": "1080p"})
    assert "1080p: 1 credit\n" in (await admin.framecast("cost list")).content + "\n"


async def test_cancel_releases_the_hold_and_is_scoped_to_the_server(admin: AdminHarness) -> None:
    await admin.member("veo", {"prompt": "a slow river"})
    assert "On hold: 2 credits" in (await admin.member("quota")).content

    elsewhere = await admin.framecast("cancel", {"job": 1}, guild_id=GUILD + 1)
    assert elsewhere.content == "There is no job #1 in this server."

    reply = await admin.framecast("cancel", {"job": 1})
    assert reply.content == f"Cancelled job #1 of <@{USER}>; its 2 credits on hold were released."
    assert (await admin.job_row(1)).status == "cancelled"
    quota = (await admin.member("quota")).content
    assert "On hold: nothing" in quota and "Credits left: **100**" in quota and "Videos in progress: 0 / 10" in quota

    again = await admin.framecast("cancel", {"job": 1})
    assert again.content.startswith("Job #1 has already finished")


async def test_usage_and_jobs_show_any_member(admin: AdminHarness) -> None:
    await admin.member("sora", {"prompt": "paper boats"})
    await admin.framecast("credits grant", {"member": ref("user", USER), "amount": 2, "note": "contest winner"})
    usage = await admin.framecast("usage", {"member": ref("user", USER)})
    assert usage.content.startswith(f"**Credits of <@{USER}>**") and "On hold: 3 credits" in usage.content
    latest = usage.content.split("**Latest credit changes**\n", 1)[1].splitlines()
    assert latest[0].endswith(f"grant 2 · by <@{MOD}> · contest winner")
    assert latest[1].endswith("hold 3 · job #1")
    jobs = await admin.framecast("jobs", {"member": ref("user", USER)})
    assert jobs.content.splitlines()[1].startswith("**#1**")
    none = await admin.framecast("jobs", {"member": ref("user", OTHER)})
    assert none.content.endswith("None in this server.")


# --- rules ---------------------------------------------------------------------------------------


async def test_an_invalid_regex_gets_a_clear_message_and_is_not_stored(admin: AdminHarness) -> None:
    broken = await admin.framecast("rules add", {"kind": "regex", "pattern": "(unclosed"})
    nested = await admin.framecast("rules add", {"kind": "regex", "pattern": "(a+)+"})
    assert broken.ephemeral and broken.content.startswith("**pattern**: That is not a valid regex")
    assert nested.content.startswith("**pattern**: That regex repeats a repetition")
    assert await admin.count("guild_prompt_rules") == 0 and await admin.audit_rows() == []


async def test_rules_add_list_remove(admin: AdminHarness) -> None:
    added = await admin.framecast("rules add", {"kind": "word", "pattern": "  gore "})
    assert added.content == "Rule #1 added: prompts matching word `gore` are refused."
    await admin.framecast("rules add", {"kind": "regex", "pattern": r"blood\s*bath"})
    listed = (await admin.framecast("rules list")).content
    assert listed.splitlines()[1:] == ["#1 word `gore`", r"#2 regex `blood\s*bath`"]
    removed = await admin.framecast("rules remove", {"rule": 1})
    assert removed.content == "Rule #1 (word `gore`) removed."
    missing = await admin.framecast("rules remove", {"rule": 1})
    assert missing.content == "There is no rule #1 in this server."


async def test_rule_autocomplete_only_answers_moderators(admin: AdminHarness) -> None:
    await admin.framecast("rules add", {"kind": "word", "pattern": "gore"})

    async def autocomplete(**kwargs: Any) -> list[dict[str, Any]]:
        payload = admin.framecast_payload("rules remove", {"rule": ""}, **kwargs)
        payload["type"] = 4
        option = payload["data"]["options"][0]["options"][0]["options"][0]
        option.update(type=4, focused=True)
        await admin.bot.tree._call(discord.Interaction(data=payload, state=admin.bot._connection))
        callback = admin.fake.interaction_callbacks[int(payload["id"])][0]
        assert callback["type"] == 8
        return callback["data"]["choices"]

    assert await autocomplete() == [{"name": "#1 word: gore", "value": 1}]
    assert await autocomplete(user_id=USER, permissions=DEFAULT_MEMBER_PERMISSIONS) == []


async def test_rules_add_blocks_the_next_prompt(admin: AdminHarness) -> None:
    await admin.framecast("rules add", {"kind": "word", "pattern": "gore"})
    blocked = await admin.member("sora", {"prompt": "lots of G0RE everywhere"})
    allowed = await admin.member("kling", {"prompt": "a gorgeous sunrise"})
    assert blocked.ephemeral and not blocked.content.startswith("Job #")
    assert allowed.content.startswith("Job #1 accepted")
    assert await admin.count("jobs") == 1


# --- what members experience next ---------------------------------------------------------------
# Each generation command has a per-member cooldown (cogs/generate.py), so a member's "next request"
# below uses another command, or another member, rather than waiting it out.


async def test_family_disable_refuses_that_command_only_in_this_server(admin: AdminHarness) -> None:
    reply = await admin.framecast("family disable", {"family": "veo"})
    assert reply.content == "/veo is now off in this server."
    refused = await admin.member("veo", {"prompt": "a fox"})
    other_family = await admin.member("sora", {"prompt": "a fox"})
    other_server = await admin.member("veo", {"prompt": "a fox"}, guild_id=GUILD + 1)
    assert refused.ephemeral and not refused.content.startswith("Job #")
    assert other_family.content.startswith("Job #1 accepted") and other_server.content.startswith("Job #2 accepted")

    await admin.framecast("family enable", {"family": "veo"})
    assert (await admin.member("veo", {"prompt": "a fox"}, user_id=OTHER)).content.startswith("Job #3 accepted")


async def test_ban_refuses_the_member_and_unban_lets_them_back(admin: AdminHarness) -> None:
    await admin.framecast("ban", {"member": ref("user", USER), "reason": "spam"})
    refused = await admin.member("kling", {"prompt": "a cat"})
    assert refused.ephemeral and not refused.content.startswith("Job #")
    listed = (await admin.framecast("bans")).content
    assert f"<@{USER}>" in listed and f"by <@{MOD}>: spam" in listed

    await admin.framecast("unban", {"member": ref("user", USER)})
    assert (await admin.member("sora", {"prompt": "a cat"})).content.startswith("Job #1 accepted")
    not_banned = await admin.framecast("unban", {"member": ref("user", USER)})
    assert not_banned.content == f"<@{USER}> is not banned here."


async def test_pause_refuses_new_videos_until_resume(admin: AdminHarness) -> None:
    assert (await admin.framecast("pause")).content == "Done: paused video generation."
    refused = await admin.member("sora", {"prompt": "rain"})
    assert refused.ephemeral and not refused.content.startswith("Job #")
    await admin.framecast("resume")
    assert (await admin.member("kling", {"prompt": "rain"})).content.startswith("Job #1 accepted")


async def test_channels_allow_limits_where_members_may_generate(admin: AdminHarness) -> None:
    allowed = await admin.framecast("channels allow", {"channel": ref("channel", FakeDiscord.OTHER_CHANNEL_ID)})
    assert allowed.content == f"Video commands now work only in <#{FakeDiscord.OTHER_CHANNEL_ID}>."
    refused = await admin.member("sora", {"prompt": "snow"}, channel_id=FakeDiscord.CHANNEL_ID)
    accepted = await admin.member("kling", {"prompt": "snow"}, channel_id=FakeDiscord.OTHER_CHANNEL_ID)
    assert not refused.content.startswith("Job #") and accepted.content.startswith("Job #1 accepted")

    await admin.framecast("channels disallow", {"channel": ref("channel", FakeDiscord.OTHER_CHANNEL_ID)})
    assert (await admin.framecast("channels list")).content.endswith("(no allowed list).")
    assert (await admin.member("veo", {"prompt": "snow"})).content.startswith("Job #2 accepted")
