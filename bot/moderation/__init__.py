"""Moderation: prompt normalisation, word/regex rules and the per-server policy check."""

from bot.moderation.normalize import fold, normalize, variants
from bot.moderation.policy import PolicyService, RequesterLike
from bot.moderation.rules import InvalidRule, Match, first_match, validate

__all__ = [
    "InvalidRule",
    "Match",
    "PolicyService",
    "RequesterLike",
    "first_match",
    "fold",
    "normalize",
    "validate",
    "variants",
]
