"""Logging configuration and the filter that keeps secrets out of every log line.

Why a filter on the root *handlers* (not on loggers): a logger's filters do not see records that propagate
up from child loggers (discord.http, httpx, our own modules); a handler's filters see every record it emits.
The filter rewrites the record itself (message, args, exception text, stack), so any later handler or
formatter only ever sees the redacted text.
"""

from __future__ import annotations

import logging
import re
import sys
import traceback
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.settings import Settings

REDACTED = "[REDACTED]"
# Shorter values would turn ordinary words into [REDACTED]; every real key or token is far longer.
MIN_SECRET_LENGTH = 4

_SHAPED_SECRETS = [
    # "Authorization: Bearer abc" in any repr ("Bot <token>" is caught by the token shape below).
    re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    # A Discord bot token: base64 user id . timestamp . HMAC.
    re.compile(r"\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{5,8}\.[A-Za-z0-9_-]{25,}\b"),
    # key=value / "key": "value" for the usual secret-bearing names.
    re.compile(r"(?i)\b((?:api[_-]?key|access[_-]?token|secret|password|token)[\"']?\s*[:=]\s*[\"']?)"
               r"[^\s\"',&;}]{6,}"),
]


class SecretRedactingFilter(logging.Filter):
    """Replaces every known secret (and anything shaped like a token) in a record with [REDACTED]."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets_pattern: re.Pattern[str] | None = None
        self.set_secrets(secrets)

    def set_secrets(self, secrets: Iterable[str]) -> None:
        values = sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)
        self._secrets_pattern = re.compile("|".join(map(re.escape, values))) if values else None

    def redact(self, text: str) -> str:
        if self._secrets_pattern is not None:
            text = self._secrets_pattern.sub(REDACTED, text)
        for pattern in _SHAPED_SECRETS:
            text = pattern.sub(_keep_prefix, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not let raw args through
            message = f"{record.msg!r} {record.args!r}"
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text or "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = self.redact(text)
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def _keep_prefix(match: re.Match[str]) -> str:
    """Keep the label ("Bearer ", "api_key=") so the log still says what was there."""
    return (match.group(1) if match.lastindex else "") + REDACTED


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def configure_logging(settings: Settings, stream: object | None = None) -> SecretRedactingFilter:
    """Log to stderr at Settings.log_level, with the redacting filter on every root handler.

    Idempotent: a second call replaces our handler instead of adding another. Handlers that others
    installed on the root (pytest's capture, a supervisor's) get the filter too.
    """
    redactor = SecretRedactingFilter(settings.secret_values())
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_framecast", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler._framecast = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(_level(settings.log_level))
    for existing in root.handlers:
        for old in [f for f in existing.filters if isinstance(f, SecretRedactingFilter)]:
            existing.removeFilter(old)
        existing.addFilter(redactor)
    # discord.py's HTTP debug lines include request bodies; keep them out unless asked for explicitly.
    logging.getLogger("discord.http").setLevel(max(root.level, logging.INFO))
    logging.getLogger("httpx").setLevel(max(root.level, logging.WARNING))
    return redactor


def _level(name: str) -> int:
    value = logging.getLevelName(name.strip().upper())
    return value if isinstance(value, int) else logging.INFO
