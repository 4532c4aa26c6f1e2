"""Refresh the translation catalogs after member-facing strings changed (see docs/i18n.md).

    python scripts/i18n_catalogs.py update      # re-extract, merge into every shipped .po
    python scripts/i18n_catalogs.py check       # list what a shipped locale still lacks (exit 1 if any)
    python scripts/i18n_catalogs.py init fr     # start a new locale (then translate it and run check)

The template (`bot/locales/framecast.pot`) holds two kinds of message:
- every `_("...")` / `_n("...", "...")` in bot/ and cogs/, found by Babel's Python extractor;
- every command string discord.py would hand the tree's translator (command, group and option names
  under the context `command-name`, context-menu names under `menu-name`, descriptions and choice
  names without context), collected from a command tree built exactly as the bot builds it, with every
  video family configured so no command is missed.
`pybabel extract` alone cannot see the second kind: the names live in decorators and catalog data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bot import i18n

SOURCE_DIRS = ("bot", "cogs")
KEYWORDS = {"_": None, "_n": (1, 2)}
POT_PATH = i18n.LOCALES_DIR / f"{i18n.DOMAIN}.pot"
PROJECT = "Framecast"


@dataclass(frozen=True)
class Message:
    msgid: str | tuple[str, str]
    context: str | None
    location: tuple[str, int]
    comment: str = ""


def source_messages(root: Path = ROOT) -> list[Message]:
    """Every `_()`/`_n()` with literal strings in bot/ and cogs/ (Babel's extractor)."""
    found: list[Message] = []
    for folder in SOURCE_DIRS:
        with contextlib.redirect_stderr(io.StringIO()):
            # Babel warns of every f-string among a call's arguments, e.g. `_("At {when}", when=f"<t:{t}>")`:
            # harmless here (the message id is the literal first argument; tests/i18n checks that).
            extracted = list(extract_from_dir(root / folder, method_map=[("**.py", "python")], keywords=KEYWORDS,
                                              strip_comment_tags=True))
        for filename, lineno, message, _comments, context in extracted:
            if isinstance(message, tuple) and (len(message) != 2 or not all(message)):
                continue
            if not message:
                continue
            found.append(Message(message, context, (f"{folder}/{filename}", lineno)))
    return found


async def command_messages() -> list[Message]:
    """Every command string of the bot's real command tree (all families configured, no login)."""
    from bot.command_translator import command_strings
    from bot.discord_bot import FramecastBot
    from bot.publishing.discord_publisher import DiscordPublisher
    from bot.services import build_services
    from bot.settings import Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, discord_token="catalog-extraction", database_url=f"sqlite:///{tmp}/catalog.db",
            kkiai_api_key="unused", kie_api_key="unused", kling_api_key="unused",
            kling_base_url="http://127.0.0.1:9", discord_guild_ids=[],
        )
        bot = FramecastBot(settings)
        bot._services = await build_services(settings, DiscordPublisher(bot), bot.clock)  # what setup_hook does
        try:
            await bot._load_extensions()
            strings = await command_strings(bot.tree)
        finally:
            await bot._stop_services()  # never logged in: nothing of discord.py to close
    return [Message(s.msgid, s.context, ("commands", 0), s.where) for s in strings]


def template(messages: Iterable[Message]) -> Catalog:
    catalog = Catalog(project=PROJECT, domain=i18n.DOMAIN, creation_date=datetime(2026, 1, 1, tzinfo=UTC),
                      charset="utf-8", fuzzy=False)
    for m in messages:
        existing = catalog.get(m.msgid, context=m.context)
        if existing is not None:
            existing.locations.append(m.location)
            continue
        catalog.add(m.msgid, locations=[m.location], context=m.context,
                    auto_comments=[m.comment] if m.comment else [],
                    flags=("python-brace-format",) if "{" in str(m.msgid) else ())
    return catalog


async def build_template() -> Catalog:
    return template([*source_messages(), *await command_messages()])


def _write(catalog: Catalog, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        write_po(out, catalog, width=100, sort_output=False, ignore_obsolete=True, include_previous=False,
                 omit_header=False, include_lineno=False)


def read(path: Path, code: str) -> Catalog:
    with path.open("rb") as source:
        return read_po(source, locale=code, domain=i18n.DOMAIN)


def update(pot: Catalog) -> None:
    """Merge the template into every shipped catalog: new ids appear empty, removed ones are dropped."""
    _write(pot, POT_PATH)
    for code in i18n.shipped_locales():
        catalog = read(i18n.po_path(code), code)
        catalog.update(pot, no_fuzzy_matching=True, update_header_comment=False)
        _write(catalog, i18n.po_path(code))


def init(pot: Catalog, code: str) -> None:
    path = i18n.po_path(code)
    if path.exists():
        raise SystemExit(f"{path} exists; run update")
    catalog = Catalog(locale=code, project=PROJECT, domain=i18n.DOMAIN, fuzzy=False)
    catalog.update(pot, no_fuzzy_matching=True)
    _write(catalog, path)


def missing(pot: Catalog, code: str) -> list[str]:
    """The template's messages `code` has no (non-fuzzy) translation for."""
    catalog = read(i18n.po_path(code), code)
    gaps = []
    for message in pot:
        if not message.id:
            continue
        found = catalog.get(message.id, context=message.context)
        strings = found.string if found is not None else None
        texts = list(strings) if isinstance(strings, (tuple, list)) else [strings]
        if found is None or found.fuzzy or not all(texts):
            gaps.append(f"{code}: {message.context + ' | ' if message.context else ''}{message.id!r}")
    return gaps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("update", "check", "init"))
    parser.add_argument("locale", nargs="?")
    args = parser.parse_args(argv)
    pot = asyncio.run(build_template())
    if args.action == "update":
        update(pot)
        print(f"{len(pot)} messages; catalogs: {', '.join(i18n.shipped_locales())}")
    elif args.action == "init":
        if not args.locale:
            parser.error("init needs a locale, e.g. fr or zh_CN")
        init(pot, args.locale)
        update(pot)
    gaps = [gap for code in i18n.shipped_locales() for gap in missing(pot, code)]
    print("\n".join(gaps) if gaps else "every shipped locale is complete")
    return 1 if gaps and args.action == "check" else 0


if __name__ == "__main__":
    raise SystemExit(main())
