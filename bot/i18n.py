"""Member-facing text, marked for translation where it is written and rendered in the reader's language.

Every sentence a member can read is written as `_("English text with {placeholders}", name=value)`.
`_` returns a `Text`: a `str` whose value is the English rendering (so logs, tests and code that only
needs English keep working), which also remembers its message id and parameters, so `translate(text,
locale)` can render it again in the member's language at the edge (the cog, the card, the result).

The English message id is the catalog key (gettext's convention), so a translator's file lists the
English sentence beside its translation.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_LOCALE = "en-US"


class Text(str):
    """A translatable sentence: its English rendering, plus the message id and parameters behind it."""

    msgid: str
    params: Mapping[str, Any]

    def __new__(cls, msgid: str, params: Mapping[str, Any] | None = None) -> "Text":
        params = dict(params or {})
        obj = super().__new__(cls, _render(msgid, params, None))
        obj.msgid = msgid
        obj.params = params
        return obj


def _(msgid: str, /, **params: Any) -> Text:
    """Mark `msgid` as member-facing text, with the values of its `{placeholders}`."""
    return Text(msgid, params)


def _render(template: str, params: Mapping[str, Any], locale: str | None) -> str:
    if not params:
        return template
    values = {key: translate(value, locale) if isinstance(value, Text) else value for key, value in params.items()}
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError):
        # A translation with a broken placeholder must never cost the member their message.
        return template


def lookup(msgid: str, locale: str | None) -> str:
    """The translation of `msgid` in `locale` (falling back to its language, then to the English id)."""
    return msgid


def translate(text: str, locale: str | None) -> str:
    """Render `text` in `locale`: a `Text` from its message id, a plain string as it is."""
    if isinstance(text, Text):
        return _render(lookup(text.msgid, locale), text.params, locale)
    return text
