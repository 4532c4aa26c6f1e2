"""What every cog reads off an interaction the same way: the server it came from and the member's roles.

One place, so a change in how discord.py exposes them (or a DM arriving where a server was expected)
is handled once.
"""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands


def guild_id_of(interaction: discord.Interaction) -> int:
    """The server the command came from; NoPrivateMessage (answered by the error handler) in a DM."""
    if interaction.guild_id is None:
        raise app_commands.NoPrivateMessage()
    return interaction.guild_id


def require_guild(interaction: discord.Interaction) -> bool:
    """An `app_commands.check`: `guild_only()` only hides a command in DMs, this refuses one that arrives."""
    guild_id_of(interaction)
    return True


def member_role_ids(user: discord.abc.User | Any) -> tuple[int, ...]:
    """The member's role ids straight from the interaction payload.

    `Member.roles` needs the guild's roles in the cache, which a bot without the members intent may
    not have; the payload's id list (`Member._roles`) is always there. A plain `User` (no guild) has none.
    """
    return tuple(int(role_id) for role_id in (getattr(user, "_roles", None) or ()))
