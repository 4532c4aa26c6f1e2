"""No secret may reach a log line: not through the message, its args, an exception, or a child logger."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from bot.logging_setup import REDACTED, SecretRedactingFilter, configure_logging
from bot.settings import Settings

DISCORD_TOKEN = "MTEwMDAwMDAwMDAwMDAwMDAwMQ.GabcDE.abcdefghijklmnopqrstuvwxyz012345"
KIE_KEY = "kie-secret-key-0123456789"
KKIAI_KEY = "sk-kkiai-abcdefabcdef"


@pytest.fixture
def settings() -> Settings:
    return Settings(discord_token=DISCORD_TOKEN, kie_api_key=KIE_KEY, kkiai_api_key=KKIAI_KEY,
                    log_level="DEBUG", _env_file=None)  # type: ignore[call-arg]


@pytest.fixture
def captured(settings: Settings) -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging(settings, stream=stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        for handler in saved_handlers:
            for f in [f for f in handler.filters if isinstance(f, SecretRedactingFilter)]:
                handler.removeFilter(f)
        root.setLevel(saved_level)


def test_secrets_in_message_and_args_are_redacted(captured: io.StringIO) -> None:
    log = logging.getLogger("bot.providers.kie")
    log.info("calling kie with key %s and token %r", KIE_KEY, DISCORD_TOKEN)
    log.warning(f"inline {KKIAI_KEY} in an f-string")
    output = captured.getvalue()
    assert KIE_KEY not in output and DISCORD_TOKEN not in output and KKIAI_KEY not in output
    assert output.count(REDACTED) == 3
    assert "calling kie with key" in output


def test_secrets_in_exceptions_are_redacted(captured: io.StringIO) -> None:
    log = logging.getLogger("discord.client")
    try:
        raise RuntimeError(f"401 for headers {{'Authorization': 'Bot {DISCORD_TOKEN}'}}")
    except RuntimeError:
        log.exception("login failed")
    output = captured.getvalue()
    assert DISCORD_TOKEN not in output
    assert "RuntimeError" in output and "login failed" in output and REDACTED in output


@pytest.mark.parametrize("line", [
    "Authorization: Bearer abcdefghijklmnop123",
    "GET /v1/video?api_key=zzzzzzzzzzzz",
    '{"token": "qqqqqqqqqqqqqqqq"}',
    "another bot token NzkyNzE1NDU0MTk2MDg4ODQy.X-hvzA.Ovy4MCQywSkoMRRclStW4xAYK7I",
])
def test_token_shaped_values_are_redacted_even_if_not_configured(line: str) -> None:
    redacted = SecretRedactingFilter().redact(line)
    assert REDACTED in redacted
    secret_part = line.split()[-1].split("=")[-1].strip('"}')
    assert secret_part not in redacted


def test_ordinary_text_survives() -> None:
    text = "Bot connected to the gateway; token expired for interaction 123; job 7 succeeded"
    assert SecretRedactingFilter(["abcd"]).redact(text) == text


def test_filter_is_installed_on_every_root_handler_and_configure_is_idempotent(
        settings: Settings, captured: io.StringIO) -> None:
    configure_logging(settings, stream=captured)
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "_framecast", False)]
    assert len(ours) == 1
    for handler in root.handlers:
        assert sum(isinstance(f, SecretRedactingFilter) for f in handler.filters) == 1
    assert root.level == logging.DEBUG


def test_bad_format_args_do_not_leak(captured: io.StringIO) -> None:
    logging.getLogger("bot").error("two placeholders %s %s", KIE_KEY)
    output = captured.getvalue()
    assert KIE_KEY not in output and REDACTED in output
