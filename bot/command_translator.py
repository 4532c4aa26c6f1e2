"""Command names, descriptions, options and choices in the member's language, from the message catalogs.

discord.py hands every command string to the tree's `Translator` while it builds the sync payload
(`name_localizations`, `description_localizations` for each Discord locale); `CatalogTranslator` answers
from the same `.po` catalogs as the bot's messages. Names (commands, groups, options) are looked up under
the gettext context `command-name` and context-menu names under `menu-name`, so a translator knows
which entries Discord restricts. A translation Discord would reject (an upper-case or spaced command
name, a description over 100 characters) is left out with a warning rather than failing the whole
sync: that command then shows in English in that language. The catalog test keeps shipped catalogs
free of such entries.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from typing import Any

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from bot import i18n

log = logging.getLogger(__name__)

NAME_MAX = 32
TEXT_MAX = 100  # descriptions and choice names
_NAME_LOCATIONS = (Where.command_name, Where.group_name, Where.parameter_name)


def _name_char_ok(char: str) -> bool:
    """Discord's `^[-_\\p{L}\\p{N}\\p{sc=Deva}\\p{sc=Thai}]` for one character, without the `regex` module."""
    if char in "-_" or unicodedata.category(char)[0] in "LN":
        return True
    code = ord(char)
    return 0x0900 <= code <= 0x097F or 0xA8E0 <= code <= 0xA8FF or 0x0E00 <= code <= 0x0E7F  # Devanagari, Thai


def valid_command_name(name: str) -> bool:
    """A slash command, group or option name Discord accepts: 1-32 allowed characters, lower case."""
    return 1 <= len(name) <= NAME_MAX and name == name.lower() and all(_name_char_ok(c) for c in name)


def valid_menu_name(name: str) -> bool:
    """A context-menu command name: 1-32 characters, spaces and capitals allowed."""
    return 1 <= len(name) <= NAME_MAX and name == name.strip()


def valid_text(text: str) -> bool:
    """A description or choice name: 1-100 characters."""
    return 1 <= len(text) <= TEXT_MAX and text.strip() != ""


def catalog_context(context: app_commands.TranslationContextTypes) -> str | None:
    """The gettext context a command string is filed under (see the module docstring)."""
    if context.location is Where.command_name and isinstance(context.data, app_commands.ContextMenu):
        return i18n.MENU_CONTEXT
    if context.location in _NAME_LOCATIONS:
        return i18n.NAME_CONTEXT
    return None


def validator_for(context_name: str | None, location: Where) -> Any:
    if context_name == i18n.MENU_CONTEXT:
        return valid_menu_name
    if context_name == i18n.NAME_CONTEXT:
        return valid_command_name
    return valid_text


class CatalogTranslator(app_commands.Translator):
    """The tree's translator: every command string from the `.po` catalogs, checked against Discord's rules."""

    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContextTypes
    ) -> str | None:
        if i18n.resolve_locale(locale) is None:
            return None  # English, or a language without a catalog: Discord shows the default
        msgctxt = catalog_context(context)
        translated = i18n.lookup(string.message, locale, context=msgctxt)
        if translated == string.message:
            return None
        if not validator_for(msgctxt, context.location)(translated):
            log.warning("dropping the %s translation %r of %r: Discord would refuse it", locale.value, translated,
                        string.message)
            return None
        return translated


@dataclass(frozen=True, order=True)
class CommandString:
    """One string of the command tree as the catalogs file it: message id and gettext context."""

    msgid: str
    context: str | None
    where: str  # e.g. "parameter_name of /veo" - for the translator's comments


class _Recorder(app_commands.Translator):
    def __init__(self) -> None:
        super().__init__()
        self.found: dict[tuple[str, str | None], CommandString] = {}

    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: app_commands.TranslationContextTypes
    ) -> str | None:
        if locale is discord.Locale.american_english:
            msgctxt = catalog_context(context)
            owner = getattr(context.data, "qualified_name", None) or getattr(context.data, "name", "")
            if context.location is Where.parameter_name or context.location is Where.parameter_description:
                owner = getattr(getattr(context.data, "command", None), "qualified_name", owner)
            where = f"{context.location.name} of {owner}" if owner else context.location.name
            self.found.setdefault((string.message, msgctxt), CommandString(string.message, msgctxt, where))
        return None


async def command_strings(tree: app_commands.CommandTree[Any]) -> list[CommandString]:
    """Every string discord.py would ask a translator for when syncing `tree` (global commands and each
    guild's), through the very payload-building path `tree.sync` uses."""
    recorder = _Recorder()
    commands: list[Any] = list(tree.get_commands())
    for guild_id in {g for (_name, g, _type) in tree._context_menus} | set(tree._guild_commands):
        if guild_id is not None:
            commands.extend(tree.get_commands(guild=discord.Object(id=guild_id)))
    for command in commands:
        await command.get_translated_payload(tree, recorder)
    return sorted(recorder.found.values(), key=lambda s: (s.context or "", s.msgid))
