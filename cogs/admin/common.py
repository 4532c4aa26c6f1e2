"""What every `/framecast` module shares: limits, option types, the subgroups, reply helpers and
`AdminBase` (the transaction + audit plumbing the command mixins call through `self`).

The subgroups are declared here, once and in their display order, so that each command module can add
its commands to them and `AdminCog` lists them exactly as before the split.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot import audit
from bot.catalog import COST_KEYS, Family
from bot.validation import InputError
from storage.database import Connection

if TYPE_CHECKING:
    from bot.discord_bot import FramecastBot
    from bot.services import Services

MAX_CREDITS = 1_000_000
MAX_CONCURRENT = 50
MESSAGE_LIMIT = 1900  # under Discord's 2000, leaving room for a "... and N more" line
JOBS_SHOWN = 10
LEDGER_SHOWN = 8

Write = Callable[[Connection, float], Awaitable[Any]]
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


class AdminBase:
    """State and plumbing shared by the command mixins; `AdminCog` supplies `bot` and the check."""

    bot: FramecastBot

    settings = app_commands.Group(name="settings", description="The server's Framecast settings")
    cost = app_commands.Group(name="cost", description="What each model costs in this server")
    budget = app_commands.Group(name="budget", description="Daily credit budgets for roles and members")
    rules = app_commands.Group(name="rules", description="Blocked words and patterns in prompts")
    channels = app_commands.Group(name="channels", description="Where video commands may be used")
    family = app_commands.Group(name="family", description="Turn /veo, /sora or /kling on and off")
    credits = app_commands.Group(name="credits", description="Give or reset a member's credits")
    audit_log = app_commands.Group(name="audit", description="Where moderator actions are posted")

    @property
    def services(self) -> Services:
        return self.bot.services

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
        self.services.poller.wake()

    @property
    def store(self) -> Any:
        return self.services.guild_settings

    async def _update_settings(
        self, interaction: discord.Interaction, fields: dict[str, Any], said: str, *, hint: str = ""
    ) -> None:
        guild_id = _guild(interaction)

        async def write(conn: Connection, now: float) -> None:
            await self.store.update(guild_id, fields, now=now, conn=conn)

        await self._change(interaction, kind="settings", text=f"{said}.", write=write)
        await _reply(interaction, f"Done: {said}.{hint}")


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
