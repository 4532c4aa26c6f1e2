"""Prompt normalisation: fold the many spellings of a word into one before rules look at it.

`fold` handles what is unambiguous: case, accents, compatibility forms (fullwidth, circled,
mathematical letters, ligatures), invisible characters, and Cyrillic/Greek letters that look like
Latin ones. Leetspeak is ambiguous ("1" is "i" or "l"; "!" may end a sentence), so it is not part
of `fold`: `variants` gives the folded text plus each leet reading, and rules are tried on all.
"""

from __future__ import annotations

import unicodedata

# Look-alike letters (after case-folding) -> the Latin letter they imitate.
HOMOGLYPHS: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h",
    "о": "o", "п": "n", "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ь": "b", "і": "i",
    "ї": "i", "ј": "j", "ѕ": "s", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ӏ": "l", "ɡ": "g",
    # Greek
    "α": "a", "β": "b", "γ": "y", "δ": "d", "ε": "e", "ζ": "z", "η": "n", "ι": "i", "κ": "k",
    "μ": "u", "ν": "v", "ο": "o", "ρ": "p", "σ": "o", "ς": "s", "τ": "t", "υ": "u", "χ": "x",
    "ω": "w",
    # Latin extras NFKD leaves alone
    "ı": "i", "ł": "l", "ø": "o", "đ": "d", "ħ": "h", "ŧ": "t", "ƒ": "f", "æ": "ae", "œ": "oe",
}

# Characters that stand in for letters in leetspeak -> the letters they can mean.
LEET: dict[str, str] = {
    "0": "o", "1": "il", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
    "@": "a", "$": "s", "!": "i", "|": "il", "+": "t", "€": "e", "£": "l",
}

# Unicode categories dropped outright: combining marks (accents once decomposed) and format
# characters (zero-width space/joiners, soft hyphen, direction marks, BOM).
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf"})

MAX_INPUT_CHARS = 10_000  # prompts are far shorter; a bound keeps every later step cheap


def fold(text: str) -> str:
    """Lower-case plain-Latin skeleton of `text`; digits, symbols, spacing and punctuation kept."""
    text = text[:MAX_INPUT_CHARS]
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    kept = (ch for ch in decomposed if unicodedata.category(ch) not in _DROPPED_CATEGORIES)
    folded = "".join(HOMOGLYPHS.get(ch, ch) for ch in kept)
    # Casefold after NFKD too: compatibility forms can decompose to capitals (e.g. "Ⓐ" -> "A").
    return folded.casefold()


def deleet(folded: str, choice: int = 0) -> str:
    """Replace leet characters by a letter; `choice` picks among several readings ("1" -> i or l)."""
    out = []
    for ch in folded:
        letters = LEET.get(ch)
        out.append(letters[min(choice, len(letters) - 1)] if letters else ch)
    return "".join(out)


def normalize(text: str) -> str:
    """The canonical normalised prompt: folded, with the first leet reading applied."""
    return deleet(fold(text))


def leet_readings(folded: str) -> list[str]:
    """Each way of reading the leet characters of folded text ("1" as i, then as l)."""
    first, second = deleet(folded, 0), deleet(folded, 1)
    return [first] if first == second else [first, second]


def variants(text: str) -> list[str]:
    """Every reading a regex rule should see: folded, and each leet reading (no duplicates)."""
    folded = fold(text)
    return [folded, *(reading for reading in leet_readings(folded) if reading != folded)]
