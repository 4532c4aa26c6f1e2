"""`/framecast`: the moderators' control panel, one GroupCog with subgroups.

Thin adapter over `GuildSettingsStore`, `QuotaService` and `JobService`. Every change is written in
one database transaction together with its audit event (`bot.audit.record_in`), so the audit channel
hears of every action and never of one that was rolled back; the poller is then woken to post it.
Permission is checked here, in the cog's `interaction_check` (Manage Server, or the moderator role
the server configured), not only through Discord's default_permissions, which a server admin can
loosen. Every answer is ephemeral and pings nobody; mistakes are raised (`InputError`, `Refusal`)
for the one error handler in cogs/errors.py.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, Optional

import aiosqlite
import discord
from discord import app_commands
from discord.ext import commands

from bot import audit
from bot.catalog import COST_KEYS, Family
from bot.errors import Refusal
from bot.moderation.rules import InvalidRule
from bot.validation import InputError
from cogs.jobs import is_moderator, list_line
from cogs.quota import balance_lines, member_role_ids

MAX_CREDITS = 1_000_000
MAX_CONCURRENT = 50
MESSAGE_LIMIT = 1900  # under Discord's 2000, leaving room for a "... and N more" line
JOBS_SHOWN = 10
LEDGER_SHOWN = 8

Write = Callable[[aiosqlite.Connection, float], Awaitable[Any]]
Credits = app_commands.Range[int, 0, MAX_CREDITS]

COST_CHOICES = [app_commands.Choice(name=key, value=key) for key in COST_KEYS]
FAMILY_CHOICES = [app_commands.Choice(name=family.value, value=family.value) for family in Family]


class NotModerator(app_commands.CheckFailure):
    """The group check's "no"; the error handler shows this text ephemerally."""

    def __init__(self) -> None:
        super().__init__(
            "Only moderators can use /framecast: it needs the Manage Server permission "
            "or this server's moderator role."
        )


class TextChannelOption(app_commands.Transformer):
    """A text or announcement channel, taken raw from the interaction (no guild cache needed)."""

    @property
    def type(self) -> discord.AppCommandOptionType:
        return discord.AppCommandOptionType.channel

    @property
    def channel_types(self) -> list[discord.ChannelType]:
        return [discord.ChannelType.text, discord.ChannelType.news]

    async def transform(self, interaction: discord.Interaction, value: Any, /) -> Any:
        if getattr(value, "type", None) not in self.channel_types:
            raise InputError("channel", "pick a text or announcement channel.")
        return value


TextChannel = app_commands.Transform[app_commands.AppCommandChannel, TextChannelOption]


def _credits(amount: int | None) -> str:
    if amount is None:
        return "unlimited"
    return f"{amount} credit" if amount == 1 else f"{amount} credits"


def _clip(lines: Sequence[str], limit: int = MESSAGE_LIMIT) -> str:
    """Join lines, dropping the tail (with a count) so the message stays under Discord's limit."""
    kept: list[str] = []
    size = 0
    for index, line in enumerate(lines):
        if size + len(line) + 1 > limit:
            kept.append(f"… and {len(lines) - index} more")
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def _code(text: str) -> str:
    """Moderator- or member-written text shown inline and inert (no mentions, no broken fences)."""
    return f"`{audit.quote(text)}`"


def _ledger_line(entry: Any) -> str:
    """One `credit_ledger` row for a moderator: what, how much, for which job, by whom, when."""
    parts = [f"{entry.kind} {entry.amount}" if entry.kind != "reset" else "reset"]
    if entry.job_id is not None:
        parts.append(f"job #{entry.job_id}")
    if entry.actor_id is not None:
        parts.append(f"by <@{entry.actor_id}>")
    if entry.note:
        parts.append(audit.quote(entry.note, limit=80))
    return f"<t:{int(entry.created_at)}:R> " + " · ".join(parts)


def _budget_value(option: str, credits: int | None, unlimited: bool) -> int | None:
    """`credits` or None for unlimited; exactly one of the two must be given."""
    if unlimited and credits is not None:
        raise InputError(option, "give either a number of credits or unlimited, not both.")
    if not unlimited and credits is None:
        raise InputError(option, "give a number of credits, or set unlimited to True.")
    return None if unlimited else credits


@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AdminCog(commands.GroupCog, group_name="framecast", group_description="Framecast settings for moderators"):
    """Every `/framecast ...` command; `interaction_check` guards them all."""

    settings = app_commands.Group(name="settings", description="The server's Framecast settings")
    cost = app_commands.Group(name="cost", description="What each model costs in this server")
    budget = app_commands.Group(name="budget", description="Daily credit budgets for roles and members")
    rules = app_commands.Group(name="rules", description="Blocked words and patterns in prompts")
    channels = app_commands.Group(name="channels", description="Where video commands may be used")
    family = app_commands.Group(name="family", description="Turn /veo, /sora or /kling on and off")
    credits = app_commands.Group(name="credits", description="Give or reset a member's credits")
    audit_log = app_commands.Group(name="audit", description="Where moderator actions are posted")

    def __init__(self, bot: commands.Bot) -> None:
        self.bot = bot
        super().__init__()

    @property
    def services(self) -> Any:
        return self.bot.services  # type: ignore[attr-defined]

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:  # type: ignore[override]
        """Runs before every /framecast command (discord.py calls the cog's check for each)."""
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        if not await is_moderator(interaction, self.services):
            raise NotModerator()
        # A change may wait for the database writer (the poller's transactions): acknowledge now so
        # Discord's 3-second deadline cannot pass; answers and errors then edit this placeholder.
        await interaction.response.defer(ephemeral=True, thinking=True)
        return True

    # --- plumbing -----------------------------------------------------------------------------

    async def _change(
        self, interaction: discord.Interaction, *, kind: str, text: str, write: Write | None,
        target_id: int | None = None,
    ) -> None:
        """Apply `write` and its audit event ("<@moderator> {text}") in one transaction."""
        guild_id, actor_id = _guild(interaction), interaction.user.id
        now = self.services.clock.now()
        async with self.services.db.transaction() as conn:
            if write is not None:
                await write(conn, now)
            await audit.record_in(conn, guild_id=guild_id, kind=kind, actor_id=actor_id, target_id=target_id,
                                  text=f"<@{actor_id}> {text}", now=now)
        self._wake_audit_poster()

    def _wake_audit_poster(self) -> None:
        poller = getattr(self.services, "poller", None)
        if poller is not None:
            poller.wake()

    @property
    def store(self) -> Any:
        return self.services.guild_settings

    # --- settings -----------------------------------------------------------------------------

    @settings.command(name="show", description="Show this server's Framecast settings")
    async def settings_show(self, interaction: discord.Interaction) -> None:
        guild_id = _guild(interaction)
        current = await self.store.get(guild_id)
        defaults = self.services.settings
        families = await self.store.family_toggles(guild_id)
        channels = await self.store.allowed_channels(guild_id)
        rules = await self.store.prompt_rules(guild_id)
        bans = await self.store.bans(guild_id)
        off = [f.value for f in Family if not families.get(f.value, True)]
        lines = [
            "**Framecast settings**",
            f"Paused: {'**yes**, members cannot start videos' if current.paused else 'no'}",
            "Daily credits per member: "
            + (f"{current.daily_credits}" if current.daily_credits is not None
               else f"{defaults.quota_daily_credits} (bot default)"),
            "Videos in progress per member: "
            + (f"{current.max_concurrent}" if current.max_concurrent is not None
               else f"{defaults.quota_max_concurrent_jobs} (bot default)"),
            "Moderator role: " + (f"<@&{current.moderator_role_id}>" if current.moderator_role_id
                                  else "none (Manage Server only)"),
            "Audit channel: " + (f"<#{current.audit_channel_id}>" if current.audit_channel_id else "none"),
            "Turned off: " + (", ".join(f"/{name}" for name in off) if off else "nothing"),
            "Channels: " + (" ".join(f"<#{c}>" for c in channels) if channels else "everywhere"),
            f"Prompt rules: {len(rules)} · Banned members: {len(bans)}",
        ]
        await _reply(interaction, _clip(lines))

    @settings.command(name="set", description="Change daily credits, videos in progress, pause or the moderator role")
    @app_commands.describe(
        daily_credits="Credits each member may spend per rolling 24 hours (role and member budgets override)",
        max_concurrent="Videos a member may have in progress at once",
        paused="Pause: members cannot start new videos",
        moderator_role="Members with this role may use /framecast (besides Manage Server)",
    )
    async def settings_set(
        self,
        interaction: discord.Interaction,
        daily_credits: Optional[Credits] = None,
        max_concurrent: Optional[app_commands.Range[int, 1, MAX_CONCURRENT]] = None,
        paused: Optional[bool] = None,
        moderator_role: Optional[discord.Role] = None,
    ) -> None:
        fields: dict[str, Any] = {}
        said: list[str] = []
        if daily_credits is not None:
            fields["daily_credits"] = daily_credits
            said.append(f"daily credits to {daily_credits}")
        if max_concurrent is not None:
            fields["max_concurrent"] = max_concurrent
            said.append(f"videos in progress per member to {max_concurrent}")
        if paused is not None:
            fields["paused"] = paused
            said.append("paused to " + ("on" if paused else "off"))
        if moderator_role is not None:
            if moderator_role.is_default():
                raise InputError("moderator_role", "@everyone cannot be the moderator role.")
            fields["moderator_role_id"] = moderator_role.id
            said.append(f"the moderator role to <@&{moderator_role.id}>")
        if not fields:
            raise InputError("settings", "give at least one option to change.")
        hint = ""
        if moderator_role is not None:
            # default_permissions (Manage Server) hides /framecast from everyone else until an admin says otherwise.
            hint = (f"\nDiscord shows /framecast to <@&{moderator_role.id}> once a server admin allows that role "
                    "under Server Settings → Integrations → Framecast.")
        await self._update_settings(interaction, fields, "set " + ", ".join(said), hint=hint)

    @settings.command(name="reset", description="Put a setting back to the bot's default")
    async def settings_reset(
        self, interaction: discord.Interaction,
        setting: Literal["daily_credits", "max_concurrent", "moderator_role"],
    ) -> None:
        column = "moderator_role_id" if setting == "moderator_role" else setting
        await self._update_settings(interaction, {column: None}, f"reset {setting} to the default")

    async def _update_settings(
        self, interaction: discord.Interaction, fields: dict[str, Any], said: str, *, hint: str = ""
    ) -> None:
        guild_id = _guild(interaction)

        async def write(conn: aiosqlite.Connection, now: float) -> None:
            await self.store.update(guild_id, fields, now=now, conn=conn)

        await self._change(interaction, kind="settings", text=f"{said}.", write=write)
        await _reply(interaction, f"Done: {said}.{hint}")

    @app_commands.command(name="pause", description="Stop members from starting new videos (running ones finish)")
    async def pause(self, interaction: discord.Interaction) -> None:
        await self._update_settings(interaction, {"paused": True}, "paused video generation")

    @app_commands.command(name="resume", description="Let members start videos again")
    async def resume(self, interaction: discord.Interaction) -> None:
        await self._update_settings(interaction, {"paused": False}, "resumed video generation")

    # --- costs --------------------------------------------------------------------------------

    @cost.command(name="set", description="Set what one model (or the 1080p surcharge) costs")
    @app_commands.choices(model=COST_CHOICES)
    async def cost_set(self, interaction: discord.Interaction, model: str, credits: Credits) -> None:
        key = _cost_key(model)
        guild_id = _guild(interaction)

        async def write(conn: aiosqlite.Connection, now: float) -> None:
            await self.store.set_cost(guild_id, key, credits, conn=conn)

        await self._change(interaction, kind="cost", text=f"set the cost of {key} to {_credits(credits)}.",
                           write=write)
        await _reply(interaction, f"{key} now costs {_credits(credits)}.")

    @cost.command(name="reset", description="Put one model's cost back to the default")
    @app_commands.choices(model=COST_CHOICES)
    async def cost_reset(self, interaction: discord.Interaction, model: str) -> None:
        key = _cost_key(model)
        guild_id = _guild(interaction)

        async def write(conn: aiosqlite.Connection, now: float) -> None:
            await self.store.clear_cost(guild_id, key, conn=conn)

        await self._change(interaction, kind="cost", text=f"reset the cost of {key} to the default.", write=write)
        table = await self.services.quota.cost_table(guild_id)
        await _reply(interaction, f"{key} is back to its default cost, {_credits(table[key])}.")

    @cost.command(name="list", description="What every model costs here")
    async def cost_list(self, interaction: discord.Interaction) -> None:
        guild_id = _guild(interaction)
        table = await self.services.quota.cost_table(guild_id)
        overridden = await self.store.costs(guild_id)
        lines = ["**Costs**"] + [
            f"{key}: {_credits(cost)}" + (" (set here)" if key in overridden else "") for key, cost in table.items()
        ]
        await _reply(interaction, _clip(lines))

    # --- budgets ------------------------------------------------------------------------------

    @budget.command(name="role", description="Daily credits for members with a role (the highest role wins)")
    @app_commands.describe(credits="Credits per rolling 24 hours", unlimited="No limit for this role")
    async def budget_role(
        self, interaction: discord.Interaction, role: discord.Role,
        credits: Optional[Credits] = None, unlimited: bool = False,
    ) -> None:
        value = _budget_value("credits", credits, unlimited)
        guild_id = _guild(interaction)
        if role.is_default():  # never in a member's role list, so its budget would never apply
            raise InputError("role", "for everyone, use `/framecast settings set daily_credits`.")

        async def write(conn: aiosqlite.Connection, now: float) -> None:
            await self.store.set_role_budget(guild_id, role.id, value, conn=conn)

        said = f"set the budget of <@&{role.id}> to {_credits(value)}"
        await self._change(interaction, kind="budget", text=f"{said}.", write=write)
        await _reply(interaction, f"Done: members with <@&{role.id}> get {_credits(value)} per day.")

    @budget.command(name="role-remove", description="Remove a role's budget")
    async def budget_role_remove(self, interaction: discord.Interaction, role: discord.Role) -> None:
        guild_id = _guild(interaction)
        if role.id not in await self.store.role_budgets(guild_id):
            raise Refusal("not_found", f"<@&{role.id}> has no budget here.")

        async def write(conn: aiosqlite.Connection, now: float) -> None:
            await self.store.remove_role_budget(guild_id, role.id, conn=conn)

        await self._change(interaction, kind="budget", text=f"removed the budget of <@&{role.id}>.", write=write)
        await _reply(interaction, f"<@&{role.id}> no longer has its own budget.")

    @budget.command(name="member", description="Daily credits for one member (beats their roles)")
    @app_commands.describe(credits="Credits per rolling 24 hours", unlimited="No limit for this member")
    async def budget_member(
        self, interaction: discord.Interaction, member: discord.User,
        credits: Optional[Credits] = None, unlimited: bool = False,
    ) -> None:
        value = _budget_value("credits", credits, unlimited)
        guild_id = _guild(interaction)

        async def write(conn: aiosqlite.Connection, now: float) -> None:
            await self.store.set_member_override(guild_id, member.id, value, conn=conn)

        await self._change(interaction, kind="budget", target_id=member.id, write=write,
                           text=f"set the budget of <@{member.id}> to {_credits(value)}.")
        await _reply(interaction, f"Done: <@{member.id}> gets {_credits(value)} per day.")

    @budget.command(name="member-remove", description="Remove a member's own budget (their roles apply again)")
    async def budget_member_remove(self, interaction: discord.Interaction, member: discord.User) -> None:
        guild_id = _guild(interaction)
        if await self.store.member_override(guild_id, member.id) is None:
            raise Refusal("not_found", f"<@{member.id}> has no budget of their own here.")

        async def write(conn: aiosqlite.Connection, now: float) -> None:
            await self.store.remove_member_override(guild_id, member.id, conn=conn)

        await self._change(interaction, kind="budget", target_id=member.id, write=write,
                           text=f"removed the own budget of <@{member.id}>.")
        await _reply(interaction, f"<@{member.id}> is back to their roles' budget.")

    @budget.command(name="list", description="Every role and member budget")
    async def budget_list(self, interaction: discord.Interaction) -> None:
        guild_id = _guild(interaction)
        roles = await self.store.role_budgets(guild_id)
        members = await self.store.member_overrides(guild_id)
        lines = ["**Budgets** (per rolling 24 hours)"]
        lines += [f"<@&{role_id}>: {_credits(limit.credits)}" for role_id, limit in roles.items()]
        lines += [f"<@{user_id}>: {_credits(limit.credits)}" for user_id, limit in members.items()]
        if len(lines) == 1:
            lines.append("None: everyone gets the server's daily credits (`/framecast settings show`).")
        await _reply(interaction, _clip(lines))

    # --- prompt rules -------------------------------------------------------------------------

    @rules.command(name="add", description="Block prompts containing a word or matching a regex")
    @app_commands.describe(kind="word: the whole word in any spelling; regex: a case-insensitive pattern",
                           pattern="The word or the regular expression")
    async def rules_add(
        self, interaction: discord.Interaction, kind: Literal["word", "regex"],
        pattern: app_commands.Range[str, 1, 200],
    ) -> None:
        try:  # PolicyService validates (compiles, bounds, rejects catastrophic regexes) and audits
            rule = await self.services.policy.add_rule(_guild(interaction), kind, pattern,
                                                       actor_id=interaction.user.id)
        except InvalidRule as exc:
            raise InputError("pattern", exc.message) from None
        self._wake_audit_poster()
        await _reply(interaction, f"Rule #{rule.id} added: prompts matching {kind} {_code(rule.pattern)} are refused.")

    @rules.command(name="remove", description="Remove a prompt rule")
    @app_commands.describe(rule="The rule's number (see /framecast rules list)")
    async def rules_remove(self, interaction: discord.Interaction, rule: app_commands.Range[int, 1, None]) -> None:
        guild_id = _guild(interaction)
        found = next((r for r in await self.store.prompt_rules(guild_id) if r.id == rule), None)
        if found is None or not await self.services.policy.remove_rule(guild_id, rule, actor_id=interaction.user.id):
            raise Refusal("not_found", f"There is no rule #{rule} in this server.")
        self._wake_audit_poster()
        await _reply(interaction, f"Rule #{rule} ({found.kind} {_code(found.pattern)}) removed.")

    @rules_remove.autocomplete("rule")
    async def _rule_choices(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[int]]:
        """Autocomplete skips interaction_check, so the moderator test is repeated here."""
        if interaction.guild_id is None or not await is_moderator(interaction, self.services):
            return []
        choices = []
        for rule in await self.store.prompt_rules(interaction.guild_id):
            label = f"#{rule.id} {rule.kind}: {rule.pattern}"
            if current.lower() in label.lower():
                choices.append(app_commands.Choice(name=label[:100], value=rule.id))
        return choices[:25]

    @rules.command(name="list", description="Every prompt rule")
    async def rules_list(self, interaction: discord.Interaction) -> None:
        found = await self.store.prompt_rules(_guild(interaction))
        lines = ["**Prompt rules**"] + [f"#{r.id} {r.kind} {_code(r.pattern)}" for r in found]
        if not found:
            lines.append("None: no prompt is blocked. Add one with `/framecast rules add`.")
        await _reply(interaction, _clip(lines))

    # --- channels -----------------------------------------------------------------------------

    @channels.command(name="allow", description="Allow video commands in a channel (and its threads)")
    async def channels_allow(self, interaction: discord.Interaction, channel: TextChannel) -> None:
        guild_id = _guild(interaction)

        async def write(conn: aiosqlite.Connection, now: float) -> None:
            await self.store.allow_channel(guild_id, channel.id, conn=conn)

        await self._change(interaction, kind="channels", text=f"allowed video commands in <#{channel.id}>.",
                           write=write)
        allowed = await self.store.allowed_channels(guild_id)
        await _reply(interaction, "Video commands now work only in " + " ".join(f"<#{c}>" for c in allowed) + ".")

    @channels.command(name="disallow", description="Remove a channel from the allowed list")
    async def channels_disallow(self, interaction: discord.Interaction, channel: TextChannel) -> None:
        guild_id = _guild(interaction)
        if channel.id not in await self.store.allowed_channels(guild_id):
            raise Refusal("not_found", f"<#{channel.id}> is not on the allowed list.")

        async def write(conn: aiosqlite.Connection, now: float) -> None:
            await self.store.disallow_channel(guild_id, channel.id, conn=conn)

        await self._change(interaction, kind="channels", text=f"disallowed video commands in <#{channel.id}>.",
                           write=write)
        allowed = await self.store.allowed_channels(guild_id)
        where = " ".join(f"<#{c}>" for c in allowed) if allowed else "every channel (the list is empty)"
        await _reply(interaction, f"Removed <#{channel.id}>. Video commands now work in {where}.")

    @channels.command(name="list", description="Where video commands may be used")
    async def channels_list(self, interaction: discord.Interaction) -> None:
        allowed = await self.store.allowed_channels(_guild(interaction))
        text = ("Video commands work only in " + " ".join(f"<#{c}>" for c in allowed) + "." if allowed
                else "Video commands work in every channel (no allowed list).")
        await _reply(interaction, text)

    # --- families -----------------------------------------------------------------------------

    @family.command(name="enable", description="Turn a video command back on")
    @app_commands.choices(family=FAMILY_CHOICES)
    async def family_enable(self, interaction: discord.Interaction, family: str) -> None:
        await self._set_family(interaction, family, True)

    @family.command(name="disable", description="Turn a video command off in this server")
    @app_commands.choices(family=FAMILY_CHOICES)
    async def family_disable(self, interaction: discord.Interaction, family: str) -> None:
        await self._set_family(interaction, family, False)

    async def _set_family(self, interaction: discord.Interaction, family: str, enabled: bool) -> None:
        try:
            name = Family(family).value
        except ValueError:
            raise InputError("family", "pick one of " + ", ".join(f.value for f in Family) + ".") from None
        guild_id = _guild(interaction)

        async def write(conn: aiosqlite.Connection, now: float) -> None:
            await self.store.set_family_enabled(guild_id, name, enabled, conn=conn)

        state = "on" if enabled else "off"
        await self._change(interaction, kind="family", text=f"turned /{name} {state}.", write=write)
        await _reply(interaction, f"/{name} is now {state} in this server.")

    # --- bans ---------------------------------------------------------------------------------

    @app_commands.command(name="ban", description="Stop a member from making videos")
    async def ban(
        self, interaction: discord.Interaction, member: discord.User,
        reason: Optional[app_commands.Range[str, 1, 300]] = None,
    ) -> None:
        guild_id, actor_id = _guild(interaction), interaction.user.id
        if member.id == actor_id:
            raise InputError("member", "you cannot ban yourself.")
        await self.services.policy.ban(guild_id, member.id, reason=reason, actor_id=actor_id)  # audited there
        self._wake_audit_poster()
        why = f" ({audit.quote(reason)})" if reason else ""
        await _reply(interaction, f"<@{member.id}> can no longer make videos here{why}.")

    @app_commands.command(name="unban", description="Let a banned member make videos again")
    async def unban(self, interaction: discord.Interaction, member: discord.User) -> None:
        if not await self.services.policy.unban(_guild(interaction), member.id, actor_id=interaction.user.id):
            raise Refusal("not_found", f"<@{member.id}> is not banned here.")
        self._wake_audit_poster()
        await _reply(interaction, f"<@{member.id}> may make videos again.")

    @app_commands.command(name="bans", description="Members banned from making videos")
    async def bans(self, interaction: discord.Interaction) -> None:
        found = await self.store.bans(_guild(interaction))
        lines = ["**Banned members**"] + [
            f"<@{b.user_id}> <t:{int(b.created_at)}:R>" + (f" by <@{b.banned_by}>" if b.banned_by else "")
            + (f": {audit.quote(b.reason)}" if b.reason else "")
            for b in found
        ]
        if not found:
            lines.append("Nobody.")
        await _reply(interaction, _clip(lines))

    # --- credits, usage, jobs -----------------------------------------------------------------

    @credits.command(name="grant", description="Give a member extra credits for the next 24 hours")
    async def credits_grant(
        self, interaction: discord.Interaction, member: discord.User,
        amount: app_commands.Range[int, 1, MAX_CREDITS], note: Optional[app_commands.Range[str, 1, 200]] = None,
    ) -> None:
        await self.services.quota.grant(_guild(interaction), member.id, amount, actor_id=interaction.user.id,
                                        note=note)
        self._wake_audit_poster()
        await _reply(interaction, f"Gave <@{member.id}> {_credits(amount)} for the next 24 hours.")

    @credits.command(name="reset", description="Forgive a member's usage so far (their budget is full again)")
    async def credits_reset(
        self, interaction: discord.Interaction, member: discord.User,
        note: Optional[app_commands.Range[str, 1, 200]] = None,
    ) -> None:
        await self.services.quota.reset(_guild(interaction), member.id, actor_id=interaction.user.id, note=note)
        self._wake_audit_poster()
        await _reply(interaction, f"Reset the usage of <@{member.id}>; videos in progress keep their holds.")

    @app_commands.command(name="usage", description="A member's credits, as /quota shows them to the member")
    async def usage(self, interaction: discord.Interaction, member: discord.User) -> None:
        guild_id = _guild(interaction)
        balance = await self.services.quota.balance(guild_id, member.id, member_role_ids(member))
        banned = await self.store.get_ban(guild_id, member.id)
        lines = [f"**Credits of <@{member.id}>**", *balance_lines(balance)]
        if banned is not None:
            lines.append("Banned from making videos" + (f": {audit.quote(banned.reason)}" if banned.reason else ""))
        entries = await self.services.quota.usage(guild_id, member.id, limit=LEDGER_SHOWN)
        if entries:
            lines.append("**Latest credit changes**")
            lines += [_ledger_line(entry) for entry in entries]
        await _reply(interaction, _clip(lines))

    @app_commands.command(name="jobs", description="A member's recent jobs in this server")
    async def jobs(self, interaction: discord.Interaction, member: discord.User) -> None:
        records = await self.services.jobs.list_jobs(_guild(interaction), member.id, limit=JOBS_SHOWN)
        lines = [f"**Recent jobs of <@{member.id}>**"] + [list_line(job) for job in records]
        if not records:
            lines.append("None in this server.")
        await _reply(interaction, _clip(lines))

    @app_commands.command(name="cancel", description="Stop a job: it is no longer tracked and its credits are released")
    @app_commands.describe(job="The job number, as in “Job #12”")
    async def cancel(self, interaction: discord.Interaction, job: app_commands.Range[int, 1, None]) -> None:
        cancelled = await self.services.jobs.cancel_job(_guild(interaction), job, interaction.user.id)
        await _reply(interaction, f"Cancelled job #{cancelled.id} of <@{cancelled.user_id}>; "
                                  f"its {_credits(cancelled.cost)} on hold were released.")

    # --- audit channel ------------------------------------------------------------------------

    @audit_log.command(name="channel", description="Post every moderator action and job event in this channel")
    async def audit_channel(self, interaction: discord.Interaction, channel: TextChannel) -> None:
        await self._update_settings(interaction, {"audit_channel_id": channel.id},
                                    f"set the audit channel to <#{channel.id}>")

    @audit_log.command(name="off", description="Stop posting moderator actions")
    async def audit_off(self, interaction: discord.Interaction) -> None:
        await self._update_settings(interaction, {"audit_channel_id": None}, "turned the audit channel off")


def _guild(interaction: discord.Interaction) -> int:
    if interaction.guild_id is None:  # interaction_check has refused DMs already
        raise app_commands.NoPrivateMessage()
    return interaction.guild_id


def _cost_key(value: str) -> str:
    if value not in COST_KEYS:
        raise InputError("model", "pick one of " + ", ".join(COST_KEYS) + ".")
    return value


async def _reply(interaction: discord.Interaction, text: str) -> None:
    """The command's one answer: it fills in the ephemeral "thinking" placeholder of the defer."""
    none = discord.AllowedMentions.none()
    if interaction.response.is_done():
        await interaction.edit_original_response(content=text, allowed_mentions=none)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=none)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(AdminCog(bot))
