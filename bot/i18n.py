"""Member-facing text, marked for translation where it is written and rendered in the reader's language.

Every sentence a member can read is written as `_("English text with {placeholders}", name=value)`
(or `_n("{n} credit", "{n} credits", n=count)` where the count changes the words). `_` returns a `Text`:
a `str` whose value is the English rendering (so logs, tests and code that only needs English keep
working), which also remembers its message id and parameters, so `translate(text, locale)` can render
it again in the member's language at the edge (the cog, the card, the result).

The English message id is the catalog key (gettext's convention), so a translator's file lists the
English sentence beside its translation. The catalogs are gettext `.po` files under
`bot/locales/<lang>/LC_MESSAGES/framecast.po`, read with Babel once per process; a translator edits them
without touching code (see docs/i18n.md for refreshing them after strings change).

Locale codes are Discord's (`discord.Locale` values such as `es-ES`, `es-419`, `zh-TW`, `ja`). A code
falls back to its language (`es-419` -> `es`) only when that language's catalog is shipped, never
sideways (`zh-TW` never reads a `zh_CN` catalog); anything without a catalog reads English.
"""

from __future__ import annotations

import functools
import gettext
import json
import logging
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any, Self

log = logging.getLogger(__name__)

DEFAULT_LOCALE = "en-US"
DOMAIN = "framecast"
LOCALES_DIR = Path(__file__).with_name("locales")
# gettext contexts (msgctxt) for the strings whose shape Discord restricts, so a translator sees
# which ones are command or option names (lowercase, no spaces) and which are context-menu names.
NAME_CONTEXT = "command-name"
MENU_CONTEXT = "menu-name"


class Text(str):
    """A translatable sentence: its English rendering, plus the message id and parameters behind it.

    `msgid_plural` is set by `_n`: the sentence then has a singular and a plural form, chosen by the
    parameter `n` (in English, and by the locale's own plural rule in a catalog).
    """

    msgid: str
    msgid_plural: str | None
    params: Mapping[str, Any]
    context: str | None

    def __new__(cls, msgid: str, params: Mapping[str, Any] | None = None, msgid_plural: str | None = None,
                context: str | None = None) -> Self:
        params = dict(params or {})
        template = _english(msgid, msgid_plural, params)
        obj = super().__new__(cls, _render(template, params, None, fallback=template))
        obj.msgid = msgid
        obj.msgid_plural = msgid_plural
        obj.params = params
        obj.context = context
        return obj

    def __reduce__(self) -> Any:
        return (Text, (self.msgid, dict(self.params), self.msgid_plural, self.context))


def _(msgid: str, /, **params: Any) -> Text:
    """Mark `msgid` as member-facing text, with the values of its `{placeholders}`."""
    return Text(msgid, params)


def _n(singular: str, plural: str, /, n: int, **params: Any) -> Text:
    """Mark a sentence whose words depend on the count `n` (available to both forms as `{n}`)."""
    return Text(singular, {"n": n, **params}, msgid_plural=plural)


class Joined(str):
    """Several pieces of text shown as one list (`text, frames`), each rendered in the reader's language."""

    items: tuple[str, ...]
    separator: str

    def __new__(cls, items: Any, separator: str = ", ") -> Self:
        pieces = tuple(items)
        obj = super().__new__(cls, separator.join(str(p) for p in pieces))
        obj.items = pieces
        obj.separator = separator
        return obj

    def render(self, locale: Any) -> str:
        return self.separator.join(translate(p, locale) for p in self.items)


def join(items: Any, separator: str = ", ") -> Joined:
    """`items` (texts or plain strings) as one comma-separated value for a placeholder."""
    return Joined(items, separator)


def option_name(name: str) -> Text:
    """A slash-command option's name as the member's client shows it (the catalog's `command-name` entry)."""
    return Text(name, context=NAME_CONTEXT)


def _english(msgid: str, msgid_plural: str | None, params: Mapping[str, Any]) -> str:
    if msgid_plural is None:
        return msgid
    return msgid if params.get("n") == 1 else msgid_plural


def _render(template: str, params: Mapping[str, Any], locale: Any, *, fallback: str) -> str:
    if not params:
        return template
    values = {key: translate(value, locale) if isinstance(value, (Text, Joined)) else value
              for key, value in params.items()}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError, AttributeError):
        # A translation with a broken placeholder must never cost the member their message: English then.
        log.warning("translation of %r does not fit its parameters; English used", fallback)
        try:
            return fallback.format(**values)
        except (KeyError, IndexError, ValueError, AttributeError):
            return fallback


# --- catalogs --------------------------------------------------------------------------------------


def po_path(code: str) -> Path:
    """Where the catalog of locale `code` (a catalog folder name such as `es` or `zh_CN`) lives."""
    return LOCALES_DIR / code / "LC_MESSAGES" / f"{DOMAIN}.po"


@functools.cache
def shipped_locales() -> tuple[str, ...]:
    """The catalog folder names shipped with the bot (`es`, `ja`, ...), English excluded (it is the source)."""
    if not LOCALES_DIR.is_dir():
        return ()
    return tuple(sorted(p.name for p in LOCALES_DIR.iterdir() if po_path(p.name).is_file()))


def _locale_tag(locale: Any) -> str:
    """`discord.Locale.spain_spanish`, `"es-ES"` or `"es_ES"` -> `"es-ES"`."""
    return str(getattr(locale, "value", locale)).replace("_", "-").strip()


@functools.cache
def _resolve(tag: str) -> str | None:
    by_lower = {code.lower(): code for code in shipped_locales()}
    parts = [p for p in tag.split("-") if p]
    for size in range(len(parts), 0, -1):
        code = by_lower.get("_".join(parts[:size]).lower())
        if code is not None:
            return code
    return None


def resolve_locale(locale: Any) -> str | None:
    """The shipped catalog for a Discord locale, or None for English (the msgids themselves)."""
    if locale is None:
        return None
    return _resolve(_locale_tag(locale))


@functools.cache
def translations(code: str) -> gettext.NullTranslations:
    """The compiled catalog of `code`, read once: Babel parses the .po, gettext does the lookups
    (contexts, and plurals by the catalog's own Plural-Forms). Fuzzy and empty entries are left out,
    so they read as English rather than as a guess."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po

    with po_path(code).open("rb") as source:
        catalog = read_po(source, locale=code, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog, use_fuzzy=False)
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def lookup(msgid: str, locale: Any, *, context: str | None = None) -> str:
    """The translation of `msgid` in `locale` (falling back to its language, then to the English id)."""
    code = resolve_locale(locale)
    if code is None:
        return msgid
    catalog = translations(code)
    return catalog.pgettext(context, msgid) if context else catalog.gettext(msgid)


def lookup_plural(singular: str, plural: str, n: int, locale: Any) -> str:
    """The form of a counted sentence for `n` in `locale` (English: singular for exactly 1)."""
    code = resolve_locale(locale)
    if code is None:
        return singular if n == 1 else plural
    return translations(code).ngettext(singular, plural, n)


def translate(text: str, locale: Any) -> str:
    """Render `text` in `locale`: a `Text` from its message id; a plain string by exact message-id
    lookup (a sentence stored in the database, such as a job's reason, is plain English: without
    parameters it is its own id), else as it is."""
    if isinstance(text, Text):
        if text.msgid_plural is not None:
            template = lookup_plural(text.msgid, text.msgid_plural, int(text.params.get("n", 0)), locale)
        else:
            template = lookup(text.msgid, locale, context=text.context)
        return _render(template, text.params, locale, fallback=_english(text.msgid, text.msgid_plural, text.params))
    if isinstance(text, Joined):
        return text.render(locale)
    if not isinstance(text, str) or not text:
        return text
    return lookup(text, locale)


def to_json(text: Any) -> str | None:
    """A `Text` (or joined texts) as JSON that `from_json` turns back into one, so a sentence stored in
    the database (a job's reason) can still be rendered in each reader's language; None for plain text."""
    if not isinstance(text, (Text, Joined)):
        return None
    return json.dumps(_dump(text), ensure_ascii=False)


def from_json(data: str | None) -> Text | Joined | None:
    """The `Text` stored by `to_json`; None when there is none or it cannot be read."""
    if not data:
        return None
    try:
        loaded = _load(json.loads(data))
    except (ValueError, KeyError, TypeError):
        log.warning("unreadable stored text %r", data[:200])
        return None
    return loaded if isinstance(loaded, (Text, Joined)) else None


def _dump(value: Any) -> Any:
    if isinstance(value, Text):
        node: dict[str, Any] = {"id": value.msgid}
        if value.msgid_plural is not None:
            node["plural"] = value.msgid_plural
        if value.context is not None:
            node["ctx"] = value.context
        if value.params:
            node["params"] = {key: _dump(item) for key, item in value.params.items()}
        return {"text": node}
    if isinstance(value, Joined):
        return {"join": [_dump(item) for item in value.items], "sep": value.separator}
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


def _load(value: Any) -> Any:
    if isinstance(value, dict) and "text" in value:
        node = value["text"]
        params = {key: _load(item) for key, item in node.get("params", {}).items()}
        return Text(node["id"], params, node.get("plural"), node.get("ctx"))
    if isinstance(value, dict) and "join" in value:
        return Joined([_load(item) for item in value["join"]], value.get("sep", ", "))
    return value


def pick_locale(*candidates: Any) -> str:
    """The first locale that is set (the member's, then the server's, ...), else English."""
    for candidate in candidates:
        if candidate:
            return _locale_tag(candidate)
    return DEFAULT_LOCALE


def reset_cache() -> None:
    """Forget the loaded catalogs (tests that write catalogs, the refresh script)."""
    shipped_locales.cache_clear()
    _resolve.cache_clear()
    translations.cache_clear()
