"""Every shipped language is complete: each message the code marks (`_()`, `_n()`) and each string of the
real command tree has a translation, with the same placeholders, within Discord's limits."""

from __future__ import annotations

import ast
import string
from pathlib import Path
from typing import Any

import discord
import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.pofile import read_po

from bot import i18n
from bot.command_translator import (
    CatalogTranslator,
    CommandString,
    command_strings,
    valid_command_name,
    valid_menu_name,
    valid_text,
)
from scripts.i18n_catalogs import source_messages
from tests.cogs.conftest import Harness

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = i18n.shipped_locales()


def catalog(code: str) -> Catalog:
    with i18n.po_path(code).open("rb") as source:
        return read_po(source, locale=code, domain=i18n.DOMAIN)


def fields(template: str) -> set[str]:
    return {name for _text, name, _spec, _conv in string.Formatter().parse(template) if name is not None}


def translations(message: Message | None) -> list[str]:
    if message is None or message.fuzzy:
        return []
    forms = message.string if isinstance(message.string, (list, tuple)) else [message.string]
    return [f for f in forms if f]


def test_english_spanish_and_japanese_are_shipped() -> None:
    assert {"es", "ja"} <= set(SHIPPED)


def test_every_marked_message_is_translated_with_the_same_placeholders() -> None:
    messages = source_messages(ROOT)
    assert len(messages) > 100  # the extractor really ran over bot/ and cogs/
    problems: list[str] = []
    for code in SHIPPED:
        po = catalog(code)
        for found in messages:
            msgid = found.msgid
            entry = po.get(msgid, context=found.context)
            forms = translations(entry)
            plural = isinstance(msgid, tuple)
            expected_forms = po.num_plurals if plural else 1
            where = f"{code} {found.location[0]}:{found.location[1]} {msgid!r}"
            if len(forms) < expected_forms:
                problems.append(f"missing or empty: {where}")
                continue
            wanted = fields(msgid[1] if plural else msgid)
            for form in forms:
                if fields(form) != wanted:
                    problems.append(f"placeholders {sorted(fields(form))} != {sorted(wanted)}: {where}")
    assert not problems, "\n".join(problems)


def test_messages_are_marked_with_literal_english() -> None:
    """`_(variable)` or `_(f"...")` cannot be extracted, so it could never be translated."""
    bad: list[str] = []
    for folder in ("bot", "cogs"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("_", "_n")
                        and path.name != "i18n.py"):
                    literal = [a for a in node.args[: 2 if node.func.id == "_n" else 1]
                               if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                    if len(literal) != (2 if node.func.id == "_n" else 1):
                        bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, f"_() needs a literal English string: {bad}"


def _check_command_string(code: str, po: Catalog, found: CommandString) -> str | None:
    entry = po.get(found.msgid, context=found.context)
    forms = translations(entry)
    if not forms:
        return f"missing or empty: {code} {found.where} {found.context or ''} {found.msgid!r}"
    text = forms[0]
    valid = (valid_menu_name if found.context == i18n.MENU_CONTEXT
             else valid_command_name if found.context == i18n.NAME_CONTEXT else valid_text)
    if not valid(text):
        return f"Discord would refuse {code} {text!r} for {found.where} {found.msgid!r}"
    if fields(text) != fields(found.msgid):
        return f"placeholders differ: {code} {text!r} for {found.msgid!r}"
    return None


async def test_every_command_string_is_translated_within_discords_limits(harness: Harness) -> None:
    strings = await command_strings(harness.bot.tree)
    assert any(s.context == i18n.NAME_CONTEXT and s.msgid == "prompt" for s in strings)
    problems = [problem for code in SHIPPED for found in strings
                if (problem := _check_command_string(code, catalog(code), found)) is not None]
    assert not problems, "\n".join(problems)


def _names_unique(options: list[dict[str, Any]], locale: str, where: str) -> list[str]:
    seen: dict[str, str] = {}
    problems = []
    for option in options:
        name = option.get("name_localizations", {}).get(locale, option["name"])
        if name in seen:
            problems.append(f"{locale}: {where} has two options named {name!r} ({seen[name]}, {option['name']})")
        seen[name] = option["name"]
        problems += _names_unique(option.get("options", []), locale, f"{where} {option['name']}")
    return problems


async def test_translated_names_stay_unique_among_siblings(harness: Harness) -> None:
    """Discord refuses a whole sync when two commands or options at one level share a (localized) name."""
    tree = harness.bot.tree
    translator = CatalogTranslator()
    payload = [await command.get_translated_payload(tree, translator) for command in tree.get_commands()]
    locales = [locale.value for locale in discord.Locale if i18n.resolve_locale(locale) is not None]
    assert "es-419" in locales and "ja" in locales and "zh-TW" not in locales
    problems = [p for locale in locales for p in _names_unique(payload, locale, "/")]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("locale", ["es-ES", "es-419", "ja"])
def test_stored_reasons_without_parameters_translate_by_id(locale: str) -> None:
    from bot.jobs.poller import TIMED_OUT_MESSAGE
    from bot.providers.base import NO_LINK_MESSAGE
    from bot.jobs.service import CANCELLED_MESSAGE

    for stored in (str(NO_LINK_MESSAGE), str(TIMED_OUT_MESSAGE), str(CANCELLED_MESSAGE)):
        assert i18n.translate(stored, locale) not in ("", stored)


def _counted_size(node: dict[str, Any]) -> int:
    """Discord's 8000-character budget per command: name, description and value of the command, its
    options and choices, each counted at its longest among the default and the localizations."""
    total = 0
    for key in ("name", "description"):
        if key in node:
            total += max(len(str(v)) for v in [node[key], *(node.get(f"{key}_localizations") or {}).values()])
    if "value" in node:
        total += len(str(node["value"]))
    return total + sum(_counted_size(child) for child in [*node.get("options", []), *node.get("choices", [])])


async def test_every_command_stays_within_discords_size_budget_once_translated(harness: Harness) -> None:
    tree = harness.bot.tree
    translator = CatalogTranslator()
    for command in tree.get_commands():
        payload = await command.get_translated_payload(tree, translator)
        assert _counted_size(payload) <= 8000, payload["name"]
