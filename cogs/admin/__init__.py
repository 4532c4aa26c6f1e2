"""`/framecast`: the moderators' control panel, one GroupCog with subgroups.

Thin adapter over `GuildSettingsStore`, `QuotaService` and `JobService`. Every change is written in
one database transaction together with its audit event (`bot.audit.AuditService.record`), so the audit channel
hears of every action and never of one that was rolled back; the poller is then woken to post it.
Permission is checked here, in the cog's `interaction_check` (Manage Server, or the moderator role
the server configured), not only through Discord's default_permissions, which a server admin can
loosen. Every answer is ephemeral and pings nobody; mistakes are raised (`InputError`, `Refusal`)
for the one error handler in cogs/errors.py.

The commands live in mixins (`settings.py`, `moderation.py`, `members.py`) over `common.AdminBase`;
this module assembles them into the one cog, so the command tree and the check are unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import FramecastBot
from cogs.admin.common import NotModerator
from cogs.admin.members import MemberCommands
from cogs.admin.moderation import ModerationCommands
from cogs.admin.settings import SettingsCommands
from cogs.jobs import is_moderator

if TYPE_CHECKING:
    from bot.discord_bot import FramecastBot

__all__ = ["AdminCog", "NotModerator", "setup"]


# Base order matters: discord.py lists top-level commands by reversed MRO, so settings' pause/resume come
# first, then ban/unban/bans, then usage/jobs/cancel, as before the split.
@app_commands.guild_only()
@app_commands.default_permissions(manage_guild=True)
class AdminCog(
    MemberCommands, ModerationCommands, SettingsCommands, commands.GroupCog,
    group_name="framecast", group_description="Framecast settings for moderators",
):
    """Every `/framecast ...` command; `interaction_check` guards them all."""

    def __init__(self, bot: FramecastBot) -> None:
        self.bot = bot
        super().__init__()

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        """Runs before every /framecast command (discord.py calls the cog's check for each)."""
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        if not await is_moderator(interaction, self.services):
            raise NotModerator()
        # A change may wait for the database writer (the poller's transactions): acknowledge now so
        # Discord's 3-second deadline cannot pass; answers and errors then edit this placeholder.
        await interaction.response.defer(ephemeral=True, thinking=True)
        return True


async def setup(bot: FramecastBot) -> None:
    await bot.add_cog(AdminCog(bot))
