"""`make_settings`: the bot's Settings for a test or a benchmark, from keyword values only.

Never reads `.env` or the environment's defaults file, so a developer's local configuration cannot
change a test's outcome; a placeholder Discord token is filled in unless one is given.
"""

from __future__ import annotations

from typing import Any

from bot.settings import Settings


def make_settings(**values: Any) -> Settings:
    values.setdefault("discord_token", "test-token")
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]
