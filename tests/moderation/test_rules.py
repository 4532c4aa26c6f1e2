"""Normalisation and rule matching: a table of evasions that must be caught and prompts that must pass."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from bot.moderation.normalize import fold, normalize, variants
from bot.moderation.rules import InvalidRule, compile_regex, compile_word, first_match, validate


@dataclass(frozen=True)
class Rule:
    id: int
    kind: str
    pattern: str


RULES = [Rule(1, "word", "ass"), Rule(2, "word", "bad"), Rule(3, "word", "kill"), Rule(4, "word", "gore fest")]

CAUGHT = [
    ("plain word", "a bad idea", 2),
    ("capitals", "BAD", 2),
    ("sentence punctuation", "That is bad!", 2),
    ("spaced", "b a d", 2),
    ("dotted", "b.a.d", 2),
    ("dashed", "b-a-d", 2),
    ("underscored", "b_a_d", 2),
    ("starred", "b*a*d", 2),
    ("mixed separators", "b. a -d", 2),
    ("repeated letters", "baaaad", 2),
    ("repeated and spaced", "b a a a d d", 2),
    ("spaced ass", "a s s", 1),
    ("at sign", "@ss", 1),
    ("dollar signs", "a$$", 1),
    ("digits", "4 5 5", 1),
    ("leet four", "b4d", 2),
    ("leet one as i", "k1ll", 3),
    ("leet one as l", "ki11", 3),
    ("leet bang", "k!ll", 3),
    ("accents", "bâd", 2),
    ("capital accents", "ÀSS", 1),
    ("fullwidth", "ｂａｄ", 2),
    ("fullwidth capitals", "ＫＩＬＬ", 3),
    ("cyrillic a", "b\u0430d", 2),
    ("cyrillic i", "k\u0456ll", 3),
    ("greek omicron", "g\u03bfre fest", 4),
    ("greek alpha", "b\u03b1d", 2),
    ("zero-width space", "b\u200bad", 2),
    ("zero-width joiner and soft hyphen", "ki\u200dl\u00adl", 3),
    ("combining accent between letters", "ba\u0301d", 2),
    ("phrase", "a gore fest please", 4),
    ("phrase without space", "gorefest", 4),
    ("circled letters", "\u24b7\u24b6\u24b9", 2),
    ("spaced, then a word starting with its last letter", "so b a d dog", 2),
    ("spaced, then the same letter", "a s s s", 1),
    ("in a sentence with newlines", "first line\nthen k i l l\nend", 3),
    ("spelled out after a one-letter word", "I a s s", 1),
    ("spelled out before a one-letter word", "k i l l a dragon", 3),
]

PASSES = [
    ("contains ass inside a word", "a class of students"),
    ("bass", "a bass guitar solo"),
    ("assume", "assume a sunny day"),
    ("passing", "cars passing by"),
    ("glass", "a glass sandwich"),
    ("cl@ss", "a cl@ss act"),
    ("word boundary across words", "as soon as I was sad"),
    ("badminton", "a badminton match"),
    ("skill", "a skilled painter"),
    ("killer whale", "a killer whale"),  # whole-word rules: variants need their own rule
    ("badass", "a badass robot"),
    ("numbers", "1080p video at 24 fps, 16:9"),
    ("embassy", "the embassy at night"),
    ("ambassador", "an ambassador waves"),
    ("unrelated cyrillic", "Привет, мир"),
    ("spelled-out word that starts with a rule", "a s s u m e a sunny day"),
    ("spelled-out word that ends with a rule", "g l a s s of water"),
    ("spelled-out word with a rule inside", "b a d m i n t o n"),
    ("spelled-out word continuing with a one-letter word's letter", "a s s i g n"),
]


@pytest.mark.parametrize("prompt, rule_id", [(p, r) for _, p, r in CAUGHT], ids=[name for name, _, _ in CAUGHT])
def test_evasions_are_caught(prompt: str, rule_id: int) -> None:
    match = first_match(RULES, prompt)
    assert match is not None and match.rule_id == rule_id


@pytest.mark.parametrize("prompt", [p for _, p in PASSES], ids=[name for name, _ in PASSES])
def test_innocent_prompts_pass(prompt: str) -> None:
    assert first_match(RULES, prompt) is None


def test_fold_and_normalize() -> None:
    assert fold("ÉCOLE ｆｕｌｌ wid\u200bth") == "ecole full width"
    assert fold("\u0440\u0430\u0441\u0441") == "pacc"  # Cyrillic look-alikes become Latin
    assert normalize("H3LL0 W0RLD") == "hello world"
    assert variants("1") == ["1", "i", "l"]
    assert variants("plain") == ["plain"]


def test_regex_rules_see_original_and_normalised_text() -> None:
    rules = [Rule(10, "regex", r"\bfoo+bar\b"), Rule(11, "regex", r"<@&\d+>")]
    assert first_match(rules, "FOOOBAR!").rule_id == 10  # case-insensitive
    assert first_match(rules, "f00bar").rule_id == 10  # leet, normalised
    assert first_match(rules, "ｆｏｏｂａｒ").rule_id == 10  # fullwidth, normalised
    assert first_match(rules, "ping <@&123>").rule_id == 11  # only in the original text
    assert first_match(rules, "foo bar") is None


@pytest.mark.parametrize(
    "kind, pattern, reason",
    [
        ("regex", "[unclosed", "not a valid regex"),
        ("regex", "(a+)+$", "repeats a repetition"),
        ("regex", r"(\w+\s?)*x", "repeats a repetition"),
        ("regex", "x" * 201, "keep it to 200"),
        ("regex", "a*", "matches an empty prompt"),
        ("word", "   ", "empty"),
        ("word", "!!!", "at least one letter"),
        ("word", "w" * 65, "at most 64"),
        ("phrase", "bad", "either a `word` or a `regex`"),
    ],
)
def test_invalid_rules_are_refused_with_a_reason(kind: str, pattern: str, reason: str) -> None:
    with pytest.raises(InvalidRule) as refused:
        validate(kind, pattern)
    assert reason in refused.value.message


def test_valid_rules_are_cleaned() -> None:
    assert validate("word", "  bad  ") == "bad"
    assert validate("regex", r"\bcat(s)?\b") == r"\bcat(s)?\b"
    assert compile_regex(r"(cat|dog){1,3}").search("catdog")


def test_stored_rule_that_no_longer_compiles_is_skipped() -> None:
    assert first_match([Rule(1, "regex", "(a+)+"), Rule(2, "word", "bad")], "bad") == first_match(
        [Rule(2, "word", "bad")], "bad"
    )


@pytest.mark.parametrize(
    "word, text",
    [
        ("a" * 30, "a" * 9_999 + "b"),
        ("ill" * 5, "1" * 9_999 + "x"),
        ("il" * 10, "1 " * 4_999 + "x"),
        ("abcdefghij" * 6, "abcdefghi " * 1_000),
    ],
)
def test_word_matching_stays_fast_on_hostile_prompts(word: str, text: str) -> None:
    pattern = compile_word(word)
    started = time.perf_counter()
    for reading in variants(text):
        pattern.search(reading)
    assert time.perf_counter() - started < 2.0  # linear: milliseconds; a backtracking blow-up takes minutes
