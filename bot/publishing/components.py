"""The Discord form of a `Card` and of persistent buttons (the only card code that imports discord).

Every button is a `JobButton`, a discord.py `DynamicItem` whose custom id carries the action and the
job id (`fc:again:42`). The class is registered with the client in `setup_hook` (through the actions
cog), so a click on any message the bot ever posted is understood after any restart: nothing about
the message is kept in memory. A view made only of dynamic items is not stored by discord.py either.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import discord
from discord.ext import commands

from bot.jobs.cards import BUTTON_LABELS, Button, Card

log = logging.getLogger(__name__)

ACTIONS = ("cancel", "again", "remix", "extend", "1080p", "4k")
CUSTOM_ID_TEMPLATE = re.compile(r"fc:(?P<action>" + "|".join(ACTIONS) + r"):(?P<job_id>[0-9]{1,20})")
ROW_WIDTH = 5  # Discord: at most 5 buttons in an action row
BUTTON_STYLES = {"cancel": discord.ButtonStyle.danger, "again": discord.ButtonStyle.primary}
CUSTOM_ID_MAX = 100
LABEL_MAX = 80


class JobButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=CUSTOM_ID_TEMPLATE):
    """A click on any Framecast button: handed to the actions cog, which runs the command's checks."""

    def __init__(self, action: str, job_id: int, *, label: str | None = None, disabled: bool = False,
                 row: int | None = None) -> None:
        custom_id = f"fc:{action}:{job_id}"
        assert len(custom_id) <= CUSTOM_ID_MAX
        super().__init__(discord.ui.Button(
            label=(label or BUTTON_LABELS.get(action, action))[:LABEL_MAX], custom_id=custom_id, disabled=disabled,
            style=BUTTON_STYLES.get(action, discord.ButtonStyle.secondary)), row=row)
        self.action = action
        self.job_id = job_id

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Item[Any],
                             match: re.Match[str]) -> JobButton:
        return cls(match["action"], int(match["job_id"]), label=getattr(item, "label", None),
                   disabled=bool(getattr(item, "disabled", False)))

    async def callback(self, interaction: discord.Interaction) -> None:
        client = interaction.client
        handler: Any = client.get_cog("ActionsCog") if isinstance(client, commands.bot.BotBase) else None
        if handler is None:
            await interaction.response.send_message("This button is not available right now; try again in a minute.",
                                                    ephemeral=True)
            return
        await handler.on_button(interaction, self.action, self.job_id)


def button_view(buttons: Sequence[Button]) -> discord.ui.View | None:
    """The buttons as a view (rows of 5); None for no buttons (an edit then removes them)."""
    if not buttons:
        return None
    view = discord.ui.View(timeout=None)
    for index, button in enumerate(buttons[:25]):
        view.add_item(JobButton(button.action, button.job_id, label=button.label, disabled=button.disabled,
                                row=index // ROW_WIDTH))
    return view


def card_embed(card: Card) -> discord.Embed:
    embed = discord.Embed(title=card.title, description=card.description, colour=card.colour)
    for name, value in card.fields:
        embed.add_field(name=name, value=value, inline=False)
    embed.set_footer(text=card.footer)
    return embed


async def edit_card_message(client: discord.Client, guild_id: int, channel_id: int, message_id: int,
                            card: Card) -> bool:
    """Edit a posted card; False when Discord no longer has it (404: deleted message or channel)."""
    message = client.get_partial_messageable(channel_id, guild_id=guild_id).get_partial_message(message_id)
    try:
        await message.edit(embed=card_embed(card), view=button_view(card.buttons),
                            allowed_mentions=discord.AllowedMentions.none())
    except discord.NotFound:
        return False
    except discord.Forbidden as exc:
        if exc.code in (50001, 50013):  # no access to the channel any more: the card cannot be kept
            return False
        raise
    return True
