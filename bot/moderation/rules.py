"""Prompt rules: a server's blocked words and regular expressions, and how they match.

A word rule matches the word as a whole word of the folded prompt, also when its letters are
written in leetspeak ("@ss"), spaced or punctuated ("a s s", "a.s.s", "a-s-s") or stretched
("aaass"), but never inside a longer word ("class", "assume"): the match may not touch another
letter or digit on either side. A regex rule is searched, case-insensitively, in the original prompt
and in each normalised reading of it.

Regexes come from moderators, so they are checked when added: they must compile, be short, not
match an empty prompt, and not nest unbounded repetition (the classic catastrophic-backtracking
shape, e.g. `(a+)+`). Prompts are bounded in length too (normalize.MAX_INPUT_CHARS).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from bot.i18n import _
from bot.moderation.normalize import MAX_INPUT_CHARS, deleet, fold, variants

try:  # Python 3.11+
    import re._parser as _sre_parse  # type: ignore[import-not-found]
    from re._constants import (  # type: ignore[import-not-found]
        ASSERT, ASSERT_NOT, BRANCH, MAX_REPEAT, MAXREPEAT, MIN_REPEAT, POSSESSIVE_REPEAT, SUBPATTERN,
    )
except ImportError:  # pragma: no cover - older layouts
    import sre_parse as _sre_parse  # type: ignore[no-redef]
    from sre_constants import (  # type: ignore[no-redef]
        ASSERT, ASSERT_NOT, BRANCH, MAX_REPEAT, MAXREPEAT, MIN_REPEAT, SUBPATTERN,
    )
    POSSESSIVE_REPEAT = MAX_REPEAT

MAX_WORD_CHARS = 64
MAX_REGEX_CHARS = 200
KINDS = ("word", "regex")

# Between the letters of a spaced-out word: up to 3 characters that are not letters or digits
# (space, dot, dash, underscore, asterisk, ...). Leet symbols are letters by then (see readings).
_SEPARATOR = r"[\W_]{0,3}"
# How far one letter may be stretched ("baaaad"): bounded so every match attempt is short.
MAX_STRETCH = 50


class InvalidRule(ValueError):
    """A rule a moderator tried to add that cannot be used; `message` says why, for the moderator."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RuleLike(Protocol):
    id: int
    kind: str
    pattern: str


def _runs(letters: str) -> list[tuple[str, int]]:
    runs: list[tuple[str, int]] = []
    for ch in letters:
        if runs and runs[-1][0] == ch:
            runs[-1] = (ch, runs[-1][1] + 1)
        else:
            runs.append((ch, 1))
    return runs


def word_letters(word: str) -> str:
    """The letters and digits of a word rule, read the way prompts are (folded, first leet reading).

    Sentence punctuation around the word is dropped first, so "bad!" means "bad", not "badi".
    """
    core = fold(word).strip(" \t.,;:!?\"'()")
    return "".join(ch for ch in deleet(core) if ch.isalnum())


@lru_cache(maxsize=1024)
def compile_word(word: str) -> re.Pattern[str]:
    """The regex for a word rule, searched in each leet reading of the folded prompt.

    Each run of one letter is an atomic group (but the last), and neighbouring runs are different
    letters, so the engine never has two ways to split the text: a search is linear in the
    prompt's length times MAX_STRETCH at worst.
    """
    letters = word_letters(word)
    if not letters:
        raise InvalidRule(_("A blocked word needs at least one letter or digit."))
    pieces = []
    runs = _runs(letters)
    for index, (ch, count) in enumerate(runs):
        letter = re.escape(ch)
        step = f"(?:{_SEPARATOR}{letter})"
        required = f"{step}{{{count - 1}}}" if count > 1 else ""
        run = f"{letter}{required}{step}{{0,{MAX_STRETCH}}}"
        # The last run may have to give letters back ("g i z m o on": the "o" of "on" is not part of
        # it); its backtracking is bounded by MAX_STRETCH. Earlier runs never need to.
        pieces.append(run if index == len(runs) - 1 else f"(?>{run})")
    body = _SEPARATOR.join(pieces)
    return re.compile(rf"(?<![^\W_]){body}(?![^\W_])")


def _nests_unbounded_repeat(parsed: Any, inside_repeat: bool = False) -> bool:
    """True if an unbounded (or large) repetition sits inside another one: `(a+)+`, `(a*b?)*`."""
    for op, arg in parsed:
        if op in (MAX_REPEAT, MIN_REPEAT, POSSESSIVE_REPEAT):
            _low, high, sub = arg
            repeats = high == MAXREPEAT or high > 16
            if repeats and inside_repeat:
                return True
            if _nests_unbounded_repeat(sub, inside_repeat or repeats):
                return True
        elif op == SUBPATTERN:
            if _nests_unbounded_repeat(arg[-1], inside_repeat):
                return True
        elif op == BRANCH:
            if any(_nests_unbounded_repeat(branch, inside_repeat) for branch in arg[1]):
                return True
        elif op in (ASSERT, ASSERT_NOT):
            if _nests_unbounded_repeat(arg[1], inside_repeat):
                return True
    return False


@lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile a moderator's regex, or raise InvalidRule with a sentence they can act on."""
    if len(pattern) > MAX_REGEX_CHARS:
        raise InvalidRule(_("That regex is {length} characters; keep it to {limit}.", length=len(pattern),
                            limit=MAX_REGEX_CHARS))
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
        parsed = _sre_parse.parse(pattern, re.IGNORECASE)
    except re.error as exc:
        raise InvalidRule(_("That is not a valid regex: {error}.", error=str(exc))) from None
    if _nests_unbounded_repeat(parsed):
        raise InvalidRule(_(
            "That regex repeats a repetition (like `(a+)+`), which can take forever on some prompts; "
            "rewrite it without the nesting."
        ))
    if compiled.search("") is not None:
        raise InvalidRule(_("That regex matches an empty prompt, so it would block everything."))
    return compiled


def validate(kind: str, pattern: str) -> str:
    """The cleaned pattern to store, or InvalidRule."""
    if kind not in KINDS:
        raise InvalidRule(_("A rule is either a `word` or a `regex`."))
    cleaned = pattern.strip()
    if not cleaned:
        raise InvalidRule(_("The rule is empty."))
    if kind == "word":
        if len(cleaned) > MAX_WORD_CHARS:
            raise InvalidRule(_("A blocked word can be at most {limit} characters.", limit=MAX_WORD_CHARS))
        compile_word(cleaned)
    else:
        compile_regex(cleaned)
    return cleaned


@dataclass(frozen=True)
class Match:
    """Which rule blocked a prompt (never shown to the member, who would learn the word)."""

    rule_id: int
    kind: str
    pattern: str


def first_match(rules: Iterable[RuleLike], prompt: str) -> Match | None:
    """The first rule the prompt breaks, or None. A stored rule that no longer compiles is skipped."""
    # The folded text as is ("bad!": a "!" that ends a sentence) and each leet reading ("b4d", "k!ll").
    word_texts = variants(prompt)
    regex_texts = [prompt[:MAX_INPUT_CHARS], *word_texts]
    for rule in rules:
        try:
            if rule.kind == "word":
                regex = compile_word(rule.pattern)
                texts = word_texts
            elif rule.kind == "regex":
                regex = compile_regex(rule.pattern)
                texts = regex_texts
            else:
                continue
        except InvalidRule:
            continue
        if rule.kind == "word":
            hit = any(_word_hit(regex, text) for text in texts)
        else:
            hit = any(regex.search(text) for text in texts)
        if hit:
            return Match(rule.id, rule.kind, rule.pattern)
    return None


# Letters standing alone between separators next to a match: the rest of a spelled-out word
# ("g l a s s"). "a" and "I" are words of their own, so one of them alone is not enough.
_LONE_BEFORE = re.compile(r"(?:^|[\W_])([^\W_])[\W_]{1,3}$")
_TWO_LONE_BEFORE = re.compile(r"(?:^|[\W_])[^\W_][\W_]{1,3}[^\W_][\W_]{1,3}$")
_LONE_AFTER = re.compile(r"[\W_]{1,3}([^\W_])(?:[\W_]|$)")
_TWO_LONE_AFTER = re.compile(r"[\W_]{1,3}[^\W_][\W_]{1,3}[^\W_](?:[\W_]|$)")
_ONE_LETTER_WORDS = frozenset("ai")
_SPLIT = re.compile(r"[\W_]+")


def _spelled_out(matched: str) -> bool:
    """Letters written apart ("a s s", "b.a.d"), as opposed to words written apart ("gore fest")."""
    parts = [part for part in _SPLIT.split(matched) if part]
    return len(parts) > 1 and any(len(part) == 1 for part in parts)


def _spells_on(text: str, start: int, end: int) -> bool:
    """Whether lone letters right before or after text[start:end] continue the spelled-out word."""
    before = text[max(0, start - 10):start]
    lone = _LONE_BEFORE.search(before)
    if lone and (lone.group(1) not in _ONE_LETTER_WORDS or _TWO_LONE_BEFORE.search(before)):
        return True
    lone = _LONE_AFTER.match(text, end)
    return bool(lone and (lone.group(1) not in _ONE_LETTER_WORDS or _TWO_LONE_AFTER.match(text, end)))


def _word_hit(regex: re.Pattern[str], text: str) -> bool:
    """A word rule's match that is a word of its own.

    Written together, the pattern's own boundaries decide. Spelled out ("a s s"), the match must
    not be the middle of a longer spelled-out word: "a s s u m e" and "g l a s s" spell words that
    merely contain it.
    """
    return any(not _spelled_out(found.group()) or not _spells_on(text, found.start(), found.end())
               for found in regex.finditer(text))
