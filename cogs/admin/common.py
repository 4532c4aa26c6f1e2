"""What every `/framecast` module shares: limits, option types, the subgroups, reply helpers and
`AdminBase` (what the command mixins reach through `self`: the services, the store, replies).

The subgroups are declared here, once and in their display order, so that each command module can add
its commands to them and `AdminCog` lists them exactly as before the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from bot import audit
from bot.catalog import COST_KEYS, Family
from bot.i18n import Text, _, _n, join, translate
from bot.validation import InputError
from cogs.interaction import guild_id_of

if TYPE_CHECKING:
    from bot.discord_bot import FramecastBot
    from bot.services import Services

MAX_CREDITS = 1_000_000
MAX_CONCURRENT = 50
MESSAGE_LIMIT = 1900  # under Discord's 2000, leaving room for a "... and N more" line
JOBS_SHOWN = 10
LEDGER_SHOWN = 8

Credits = app_commands.Range[int, 0, MAX_CREDITS]

COST_CHOICES = [app_commands.Choice(name=key, value=key) for key in COST_KEYS]
FAMILY_CHOICES = [app_commands.Choice(name=family.value, value=family.value) for family in Family]


class NotModerator(app_commands.CheckFailure):
    """The group check's "no"; the error handler shows this text ephemerally."""

    def __init__(self) -> None:
        super().__init__(_(
            "Only moderators can use /framecast: it needs the Manage Server permission or this server's "
            "moderator role."
        ))


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
            raise InputError("channel", _("pick a text or announcement channel."))
        return value


TextChannel = app_commands.Transform[app_commands.AppCommandChannel, TextChannelOption]


def _clip(lines: Sequence[str], limit: int = MESSAGE_LIMIT, locale: Any = None) -> str:
    """Join lines (rendered in `locale`), dropping the tail (with a count) so the message stays under
    Discord's limit."""
    kept: list[str] = []
    size = 0
    for index, raw in enumerate(lines):
        line = translate(raw, locale)
        if size + len(line) + 1 > limit:
            kept.append(translate(_("… and {count} more", count=len(lines) - index), locale))
            break
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept)


def _code(text: str) -> str:
    """Moderator- or member-written text shown inline and inert (no mentions, no broken fences)."""
    return f"`{audit.quote(text)}`"


_LEDGER_KINDS: dict[str, Text] = {
    "hold": _("hold"), "charge": _("charge"), "release": _("release"), "grant": _("grant"),
    "refund": _("refund"), "reset": _("reset"),
}


def _ledger_line(entry: Any) -> Text:
    """One `credit_ledger` row for a moderator: what, how much, for which job, by whom, when."""
    kind = _LEDGER_KINDS.get(entry.kind) or entry.kind
    parts: list[str] = [_("{kind} {amount}", kind=kind, amount=entry.amount) if entry.kind != "reset" else kind]
    if entry.job_id is not None:
        parts.append(_("job #{id}", id=entry.job_id))
    if entry.actor_id is not None:
        parts.append(_("by <@{user}>", user=entry.actor_id))
    if entry.note:
        parts.append(audit.quote(entry.note, limit=80))
    return _("{when} {what}", when=f"<t:{int(entry.created_at)}:R>", what=join(parts, " · "))


def _budget_value(option: str, credits: int | None, unlimited: bool) -> int | None:
    """`credits` or None for unlimited; exactly one of the two must be given."""
    if unlimited and credits is not None:
        raise InputError(option, _("give either a number of credits or unlimited, not both."))
    if not unlimited and credits is None:
        raise InputError(option, _("give a number of credits, or set unlimited to True."))
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

    @property
    def store(self) -> Any:
        return self.services.guild_settings

    def _wake_audit_poster(self) -> None:
        """After a change audited by another service (policy, quota): post its audit line now."""
        self.services.poller.wake()

    async def _update_settings(
        self, interaction: discord.Interaction, fields: dict[str, Any], said: str, *, hint: str = ""
    ) -> None:
        await self.services.admin.update_settings(guild_id_of(interaction), interaction.user.id, fields, said)
        await _reply(interaction, join([_("Done: {change}.", change=said), hint], ""))


def _cost_key(value: str) -> str:
    if value not in COST_KEYS:
        raise InputError("model", _("pick one of {choices}.", choices=", ".join(COST_KEYS)))
    return value


async def _reply(interaction: discord.Interaction, text: str | Sequence[str]) -> None:
    """The command's one answer, in the moderator's language (lines are clipped to Discord's limit): it
    fills in the ephemeral "thinking" placeholder of the defer."""
    if isinstance(text, str):
        text = translate(text, interaction.locale)
    else:
        text = _clip(text, locale=interaction.locale)
    none = discord.AllowedMentions.none()
    if interaction.response.is_done():
        await interaction.edit_original_response(content=text, allowed_mentions=none)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=none)
