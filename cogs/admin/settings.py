"""`/framecast settings|cost|family|audit`, `pause` and `resume`: the server-wide switches."""

from __future__ import annotations

from typing import Any, Literal, Optional

import discord
from discord import app_commands

from bot.catalog import Family
from bot.i18n import Text, _, join
from bot.quota.service import credits_text
from bot.validation import InputError
from cogs.admin.common import (
    COST_CHOICES, FAMILY_CHOICES, MAX_CONCURRENT, AdminBase, Credits, TextChannel, _cost_key, _reply,
)
from cogs.interaction import guild_id_of

audit_log, cost, family, settings = AdminBase.audit_log, AdminBase.cost, AdminBase.family, AdminBase.settings


class SettingsCommands(AdminBase):
    """Settings, costs, model families and the audit channel."""

    # --- settings -----------------------------------------------------------------------------

    @settings.command(name="show", description="Show this server's Framecast settings")
    async def settings_show(self, interaction: discord.Interaction) -> None:
        guild_id = guild_id_of(interaction)
        current = await self.store.get(guild_id)
        defaults = self.services.settings
        families = await self.store.family_toggles(guild_id)
        channels = await self.store.allowed_channels(guild_id)
        rules = await self.store.prompt_rules(guild_id)
        bans = await self.store.bans(guild_id)
        off = [f.value for f in Family if not families.get(f.value, True)]
        lines: list[str] = [
            _("**Framecast settings**"),
            _("Paused: {state}", state=_("**yes**, members cannot start videos") if current.paused else _("no")),
            _("Daily credits per member: {value}", value=_or_default(current.daily_credits,
                                                                     defaults.quota_daily_credits)),
            _("Videos in progress per member: {value}", value=_or_default(current.max_concurrent,
                                                                          defaults.quota_max_concurrent_jobs)),
            _("Moderator role: {role}", role=_mention("<@&{}>", current.moderator_role_id)
              or _("none (Manage Server only)")),
            _("Audit channel: {channel}", channel=_mention("<#{}>", current.audit_channel_id) or _("none")),
            _("Turned off: {families}", families=", ".join(f"/{name}" for name in off) if off else _("nothing")),
            _("Channels: {channels}", channels=" ".join(f"<#{c}>" for c in channels) if channels
              else _("everywhere")),
            _("Prompt rules: {rules} · Banned members: {bans}", rules=len(rules), bans=len(bans)),
        ]
        await _reply(interaction, lines)

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
        said: list[Text] = []
        if daily_credits is not None:
            fields["daily_credits"] = daily_credits
            said.append(_("daily credits to {value}", value=daily_credits))
        if max_concurrent is not None:
            fields["max_concurrent"] = max_concurrent
            said.append(_("videos in progress per member to {value}", value=max_concurrent))
        if paused is not None:
            fields["paused"] = paused
            said.append(_("paused to on") if paused else _("paused to off"))
        if moderator_role is not None:
            if moderator_role.is_default():
                raise InputError("moderator_role", _("@everyone cannot be the moderator role."))
            fields["moderator_role_id"] = moderator_role.id
            said.append(_("the moderator role to <@&{role}>", role=moderator_role.id))
        if not fields:
            raise InputError("settings", _("give at least one option to change."))
        hint: str = ""
        if moderator_role is not None:
            # default_permissions (Manage Server) hides /framecast from everyone else until an admin says otherwise.
            hint = _("\nDiscord shows /framecast to <@&{role}> once a server admin allows that role under Server "
                     "Settings → Integrations → Framecast.", role=moderator_role.id)
        await self._update_settings(interaction, fields, _("set {changes}", changes=join(said)), hint=hint)

    @settings.command(name="reset", description="Put a setting back to the bot's default")
    @app_commands.describe(setting="The setting to put back")
    async def settings_reset(
        self, interaction: discord.Interaction,
        setting: Literal["daily_credits", "max_concurrent", "moderator_role"],
    ) -> None:
        column = "moderator_role_id" if setting == "moderator_role" else setting
        await self._update_settings(interaction, {column: None},
                                    _("reset {setting} to the default", setting=Text(setting)))

    @app_commands.command(name="pause", description="Stop members from starting new videos (running ones finish)")
    async def pause(self, interaction: discord.Interaction) -> None:
        await self._update_settings(interaction, {"paused": True}, _("paused video generation"))

    @app_commands.command(name="resume", description="Let members start videos again")
    async def resume(self, interaction: discord.Interaction) -> None:
        await self._update_settings(interaction, {"paused": False}, _("resumed video generation"))

    # --- costs --------------------------------------------------------------------------------

    @cost.command(name="set", description="Set what one model (or the 1080p surcharge) costs")
    @app_commands.describe(model="The model, or the 1080p surcharge", credits="What it costs from now on, in credits")
    @app_commands.choices(model=COST_CHOICES)
    async def cost_set(self, interaction: discord.Interaction, model: str, credits: Credits) -> None:
        key = _cost_key(model)
        await self.services.admin.set_cost(guild_id_of(interaction), interaction.user.id, key, credits)
        await _reply(interaction, _("{model} now costs {credits}.", model=key, credits=credits_text(credits)))

    @cost.command(name="reset", description="Put one model's cost back to the default")
    @app_commands.describe(model="The model, or the 1080p surcharge")
    @app_commands.choices(model=COST_CHOICES)
    async def cost_reset(self, interaction: discord.Interaction, model: str) -> None:
        key = _cost_key(model)
        guild_id = guild_id_of(interaction)
        await self.services.admin.reset_cost(guild_id, interaction.user.id, key)
        table = await self.services.quota.cost_table(guild_id)
        await _reply(interaction, _("{model} is back to its default cost, {credits}.", model=key,
                                    credits=credits_text(table[key])))

    @cost.command(name="list", description="What every model costs here")
    async def cost_list(self, interaction: discord.Interaction) -> None:
        guild_id = guild_id_of(interaction)
        table = await self.services.quota.cost_table(guild_id)
        overridden = await self.store.costs(guild_id)
        lines: list[str] = [_("**Costs**"), *(
            _("{model}: {credits} (set here)", model=key, credits=credits_text(cost)) if key in overridden
            else _("{model}: {credits}", model=key, credits=credits_text(cost))
            for key, cost in table.items()
        )]
        await _reply(interaction, lines)

    # --- families -----------------------------------------------------------------------------

    @family.command(name="enable", description="Turn a video command back on")
    @app_commands.describe(family="The video command to turn on")
    @app_commands.choices(family=FAMILY_CHOICES)
    async def family_enable(self, interaction: discord.Interaction, family: str) -> None:
        await self._set_family(interaction, family, True)

    @family.command(name="disable", description="Turn a video command off in this server")
    @app_commands.describe(family="The video command to turn off")
    @app_commands.choices(family=FAMILY_CHOICES)
    async def family_disable(self, interaction: discord.Interaction, family: str) -> None:
        await self._set_family(interaction, family, False)

    async def _set_family(self, interaction: discord.Interaction, family: str, enabled: bool) -> None:
        try:
            name = Family(family).value
        except ValueError:
            raise InputError("family", _("pick one of {choices}.", choices=", ".join(f.value for f in Family))) from None
        await self.services.admin.set_family_enabled(guild_id_of(interaction), interaction.user.id, name, enabled)
        await _reply(interaction, _("/{family} is now on in this server.", family=name) if enabled
                     else _("/{family} is now off in this server.", family=name))

    # --- audit channel ------------------------------------------------------------------------

    @audit_log.command(name="channel", description="Post every moderator action and job event in this channel")
    @app_commands.describe(channel="The channel for the audit log")
    async def audit_channel(self, interaction: discord.Interaction, channel: TextChannel) -> None:
        await self._update_settings(interaction, {"audit_channel_id": channel.id},
                                    _("set the audit channel to <#{channel}>", channel=channel.id))

    @audit_log.command(name="off", description="Stop posting moderator actions")
    async def audit_off(self, interaction: discord.Interaction) -> None:
        await self._update_settings(interaction, {"audit_channel_id": None}, _("turned the audit channel off"))


def _or_default(value: int | None, default: int) -> str:
    """A server's own value, or the bot's default marked as such."""
    return str(value) if value is not None else _("{value} (bot default)", value=default)


def _mention(template: str, snowflake: int | None) -> str:
    """`<@&id>` / `<#id>` markup for an id that is set, else an empty string."""
    return template.format(snowflake) if snowflake else ""
