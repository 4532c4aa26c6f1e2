"""`/framecast rules|channels`, `ban`, `unban` and `bans`: what may be asked, where and by whom."""

from __future__ import annotations

from typing import Any, Literal, Optional

import discord
from discord import app_commands

from bot import audit
from bot.errors import Refusal
from bot.i18n import Text, _
from bot.moderation.rules import InvalidRule
from bot.validation import InputError
from cogs.admin.common import AdminBase, TextChannel, _code, _reply
from cogs.interaction import guild_id_of
from cogs.jobs import is_moderator

channels, rules = AdminBase.channels, AdminBase.rules


class ModerationCommands(AdminBase):
    """Prompt rules, the channel allowlist and bans."""

    # --- prompt rules -------------------------------------------------------------------------

    @rules.command(name="add", description="Block prompts containing a word or matching a regex")
    @app_commands.describe(kind="word: the whole word in any spelling; regex: a case-insensitive pattern",
                           pattern="The word or the regular expression")
    async def rules_add(
        self, interaction: discord.Interaction, kind: Literal["word", "regex"],
        pattern: app_commands.Range[str, 1, 200],
    ) -> None:
        try:  # PolicyService validates (compiles, bounds, rejects catastrophic regexes) and audits
            rule = await self.services.policy.add_rule(guild_id_of(interaction), kind, pattern,
                                                       actor_id=interaction.user.id)
        except InvalidRule as exc:
            raise InputError("pattern", exc.message) from None
        self._wake_audit_poster()
        await _reply(interaction, _("Rule #{id} added: prompts matching {kind} {pattern} are refused.", id=rule.id,
                                     kind=Text(kind), pattern=_code(rule.pattern)))

    @rules.command(name="remove", description="Remove a prompt rule")
    @app_commands.describe(rule="The rule's number (see /framecast rules list)")
    async def rules_remove(self, interaction: discord.Interaction, rule: app_commands.Range[int, 1, None]) -> None:
        guild_id = guild_id_of(interaction)
        found = next((r for r in await self.store.prompt_rules(guild_id) if r.id == rule), None)
        if found is None or not await self.services.policy.remove_rule(guild_id, rule, actor_id=interaction.user.id):
            raise Refusal("not_found", _("There is no rule #{id} in this server.", id=rule))
        self._wake_audit_poster()
        await _reply(interaction, _("Rule #{id} ({kind} {pattern}) removed.", id=rule, kind=Text(found.kind),
                                     pattern=_code(found.pattern)))

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
        found = await self.store.prompt_rules(guild_id_of(interaction))
        lines: list[str] = [_("**Prompt rules**"), *(f"#{r.id} {r.kind} {_code(r.pattern)}" for r in found)]
        if not found:
            lines.append(_("None: no prompt is blocked. Add one with `/framecast rules add`."))
        await _reply(interaction, lines)

    # --- channels -----------------------------------------------------------------------------

    @channels.command(name="allow", description="Allow video commands in a channel (and its threads)")
    @app_commands.describe(channel="The channel")
    async def channels_allow(self, interaction: discord.Interaction, channel: TextChannel) -> None:
        allowed = await self.services.admin.allow_channel(guild_id_of(interaction), interaction.user.id, channel.id)
        await _reply(interaction, _("Video commands now work only in {channels}.",
                                    channels=" ".join(f"<#{c}>" for c in allowed)))

    @channels.command(name="disallow", description="Remove a channel from the allowed list")
    @app_commands.describe(channel="The channel")
    async def channels_disallow(self, interaction: discord.Interaction, channel: TextChannel) -> None:
        allowed = await self.services.admin.disallow_channel(guild_id_of(interaction), interaction.user.id,
                                                             channel.id)
        if allowed:
            await _reply(interaction, _("Removed <#{channel}>. Video commands now work in {channels}.",
                                        channel=channel.id, channels=" ".join(f"<#{c}>" for c in allowed)))
        else:
            await _reply(interaction, _("Removed <#{channel}>. Video commands now work in every channel (the list "
                                        "is empty).", channel=channel.id))

    @channels.command(name="list", description="Where video commands may be used")
    async def channels_list(self, interaction: discord.Interaction) -> None:
        allowed = await self.store.allowed_channels(guild_id_of(interaction))
        text = (_("Video commands work only in {channels}.", channels=" ".join(f"<#{c}>" for c in allowed))
                if allowed else _("Video commands work in every channel (no allowed list)."))
        await _reply(interaction, text)

    # --- bans ---------------------------------------------------------------------------------

    @app_commands.command(name="ban", description="Stop a member from making videos")
    @app_commands.describe(member="The member", reason="Why (the member is told)")
    async def ban(
        self, interaction: discord.Interaction, member: discord.User,
        reason: Optional[app_commands.Range[str, 1, 300]] = None,
    ) -> None:
        guild_id, actor_id = guild_id_of(interaction), interaction.user.id
        if member.id == actor_id:
            raise InputError("member", _("you cannot ban yourself."))
        await self.services.policy.ban(guild_id, member.id, reason=reason, actor_id=actor_id)  # audited there
        self._wake_audit_poster()
        if reason:
            await _reply(interaction, _("<@{user}> can no longer make videos here ({reason}).", user=member.id,
                                        reason=audit.quote(reason)))
        else:
            await _reply(interaction, _("<@{user}> can no longer make videos here.", user=member.id))

    @app_commands.command(name="unban", description="Let a banned member make videos again")
    @app_commands.describe(member="The member")
    async def unban(self, interaction: discord.Interaction, member: discord.User) -> None:
        if not await self.services.policy.unban(guild_id_of(interaction), member.id, actor_id=interaction.user.id):
            raise Refusal("not_found", _("<@{user}> is not banned here.", user=member.id))
        self._wake_audit_poster()
        await _reply(interaction, _("<@{user}> may make videos again.", user=member.id))

    @app_commands.command(name="bans", description="Members banned from making videos")
    async def bans(self, interaction: discord.Interaction) -> None:
        found = await self.store.bans(guild_id_of(interaction))
        lines: list[str] = [_("**Banned members**"), *(_ban_line(b) for b in found)]
        if not found:
            lines.append(_("Nobody."))
        await _reply(interaction, lines)


def _ban_line(ban: Any) -> str:
    """`<@member> <when> by <@moderator>: reason`, the parts that are known."""
    line: str = f"<@{ban.user_id}> <t:{int(ban.created_at)}:R>"
    if ban.banned_by:
        line = _("{ban} by <@{moderator}>", ban=line, moderator=ban.banned_by)
    if ban.reason:
        line = _("{ban}: {reason}", ban=line, reason=audit.quote(ban.reason))
    return line
