"""`/quota`: the caller's credits in this server, ephemerally.

The numbers come from `QuotaService.balance` (the ledger is the truth, nothing is cached), so a
moderator's change - a new budget, a grant, a reset - shows on the very next `/quota`.
`balance_lines` is shared with `/framecast usage`, so a moderator sees exactly what the member sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.i18n import Text, _, join, translate
from bot.quota.service import Balance, credits_text
from cogs.interaction import guild_id_of, member_role_ids

if TYPE_CHECKING:
    from bot.discord_bot import FramecastBot
    from bot.services import Services


def balance_lines(balance: Balance) -> list[Text]:
    """Remaining credits, what is on hold, when credits come back, and jobs running / allowed."""
    if balance.budget is None:
        lines = [_("Credits: **unlimited**")]
    else:
        remaining = max(0, balance.remaining if balance.remaining is not None else 0)
        lines = [_("Credits left: **{remaining}** (daily budget {budget}, over a rolling 24 hours)",
                   remaining=remaining, budget=balance.budget)]
    if balance.held:
        lines.append(_("On hold: {credits} for videos in progress (given back if they fail)",
                       credits=credits_text(balance.held)))
    else:
        lines.append(_("On hold: nothing"))
    if balance.budget is not None:
        if balance.refill_at is not None:
            lines.append(_("Credits come back: {when} (24 hours after each charge)",
                           when=f"<t:{int(balance.refill_at)}:R>"))
        elif balance.held:
            lines.append(_("Credits come back: 24 hours after each video is charged"))
        else:
            lines.append(_("Credits come back: nothing is spent, you have your full budget"))
    lines.append(_("Videos in progress: {active} / {limit}", active=balance.active_jobs, limit=balance.max_concurrent))
    return lines


class QuotaCog(commands.Cog):
    """Members' own credit view."""

    def __init__(self, bot: FramecastBot) -> None:
        self.bot = bot

    @property
    def services(self) -> Services:
        return self.bot.services

    @app_commands.command(name="quota", description="Your credits in this server: left, on hold, and when they come back")
    @app_commands.guild_only()
    async def quota(self, interaction: discord.Interaction) -> None:
        balance = await self.services.quota.balance(
            guild_id_of(interaction), interaction.user.id, member_role_ids(interaction.user)
        )
        text = translate(join([_("**Your credits in this server**"), *balance_lines(balance)], "\n"),
                         interaction.locale)
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())


async def setup(bot: FramecastBot) -> None:
    await bot.add_cog(QuotaCog(bot))
