"""Errors that carry a sentence for the member."""

from __future__ import annotations


class Refusal(Exception):
    """A policy or quota "no": nothing is spent; the cog shows `user_message` ephemerally.

    `kind` is a short machine word (paused, banned, channel, family, prompt, budget, concurrency,
    not_found, forbidden) used for the audit trail and tests.
    """

    def __init__(self, kind: str, user_message: str) -> None:
        super().__init__(user_message)
        self.kind = kind
        self.user_message = user_message
