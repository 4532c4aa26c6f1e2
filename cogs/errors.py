"""The one place where a slash-command error becomes the member's ephemeral message.

Cogs raise (`InputError`, `Refusal`, `AttachmentError`, check failures, provider errors) and never
format errors themselves, so every command answers the same way and an unexpected exception is always
logged with a traceback and an id the member can quote. Works whether the interaction was already
deferred/answered (edit or follow-up) or not (first response). `FramecastTree` is the bot's command tree
(`FramecastBot` passes it as `tree_cls`), so the handler is in place before any cog loads.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

import discord
from discord import app_commands

from bot.attachments import AttachmentError
from bot.errors import Refusal
from bot.i18n import Text, _, option_name, translate
from bot.providers.base import ErrorKind, ProviderError
from bot.validation import InputError

log = logging.getLogger(__name__)

GENERIC_CHECK_FAILURE = _("You can't use this command here.")


def unwrap(error: BaseException) -> BaseException:
    """The exception that really happened: past CommandInvokeError and a transformer's wrapper."""
    if isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    if isinstance(error, app_commands.TransformerError) and error.__cause__ is not None:
        cause = error.__cause__
        if isinstance(cause, (InputError, Refusal)):
            return cause
    return error


def _permission_names(permissions: list[str]) -> str:
    # Discord's own names for permissions (as its settings show them, in English); not in our catalogs.
    return ", ".join(p.replace("_", " ").replace("guild", "server").title() for p in permissions)


def _check_failure_text(error: app_commands.CheckFailure) -> str:
    """A check's own sentence (a Text keeps its translation), or the generic one for discord.py's default."""
    first = error.args[0] if error.args else None
    if isinstance(first, Text):
        return first
    text = str(error)
    # discord.py's own default text names the command in a way members don't need to see.
    return text if text and "The check functions for" not in text else GENERIC_CHECK_FAILURE


def describe(error: BaseException) -> str | None:
    """The member-facing sentence for an expected error (a `Text`, rendered in the member's language by
    `send_ephemeral`); None for a bug (the caller logs it)."""
    if isinstance(error, InputError):
        return _("**{option}**: {message}", option=option_name(error.option), message=error.message)
    if isinstance(error, (AttachmentError, Refusal)):
        return error.user_message
    if isinstance(error, ProviderError):
        if error.kind is ErrorKind.FINAL:
            return _("The video service refused this request: {reason} Nothing was charged.",
                     reason=error.user_message)
        return _("The video service is busy right now; try again in a minute. Nothing was charged.")
    if isinstance(error, app_commands.CommandOnCooldown):
        return _("Slow down: try again in {seconds}s.", seconds=max(1, math.ceil(error.retry_after)))
    if isinstance(error, app_commands.NoPrivateMessage):
        return _("This command only works in a server, not in direct messages.")
    if isinstance(error, app_commands.MissingPermissions):
        return _("You need the {permissions} permission to do that.",
                 permissions=_permission_names(error.missing_permissions))
    if isinstance(error, app_commands.BotMissingPermissions):
        return _("I need the {permissions} permission in this channel.",
                 permissions=_permission_names(error.missing_permissions))
    if isinstance(error, (app_commands.MissingRole, app_commands.MissingAnyRole)):
        return _("You don't have the role this command needs.")
    if isinstance(error, app_commands.CheckFailure):
        return _check_failure_text(error)
    if isinstance(error, app_commands.TransformerError):
        return _("I couldn't read the value `{value}`; check the option.",
                 value=discord.utils.escape_mentions(str(error.value))[:50])
    if isinstance(error, app_commands.CommandNotFound):
        return _("This command is no longer available; Discord may need a moment to refresh the command list.")
    if isinstance(error, discord.Forbidden):
        return _("I'm missing a permission in this channel to do that.")
    return None


async def send_ephemeral(interaction: discord.Interaction, text: str) -> None:
    """Answer once, whatever state the interaction is in, in the member's own language."""
    text = translate(text, interaction.locale)
    try:
        if not interaction.response.is_done():
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
        elif interaction.response.type is discord.InteractionResponseType.deferred_channel_message:
            # Replaces the "thinking..." placeholder; it keeps the defer's ephemeral flag.
            await interaction.edit_original_response(content=text, allowed_mentions=discord.AllowedMentions.none())
        else:
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none())
    except discord.HTTPException as exc:
        # The interaction token may have expired (15 minutes) or the message was dismissed.
        log.warning("could not deliver an error message for interaction %s: %s", interaction.id, exc)


class FramecastTree(app_commands.CommandTree[Any]):
    """The bot's command tree: every failed command becomes one ephemeral message (Red-DiscordBot's
    pattern: the tree's own `on_error`, not a function assigned onto a tree instance)."""

    async def on_error(self, interaction: discord.Interaction[Any], error: app_commands.AppCommandError) -> None:
        real = unwrap(error)
        text = describe(real)
        if text is None:
            error_id = uuid.uuid4().hex[:8]
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error(
                "error id %s in /%s (guild %s, user %s)", error_id, command, interaction.guild_id,
                interaction.user.id, exc_info=(type(real), real, real.__traceback__),
            )
            text = _("Something went wrong on our side (error id {error_id}); nothing was charged.",
                     error_id=error_id)
        else:
            log.info("command %s refused: %s", interaction.command.name if interaction.command else "?",
                     type(real).__name__)
        await send_ephemeral(interaction, text)
