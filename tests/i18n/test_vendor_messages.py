"""What a vendor client tells a member (busy, unreachable, refused, unreadable) is marked text: it reaches
the member in their language, and a redacted API key does not cost it its translation."""

from __future__ import annotations

import httpx
import pytest

from bot.catalog import ProviderName
from bot.i18n import Text, translate
from bot.providers.http import (
    Phase,
    classify_http_error,
    classify_transport_error,
    final_error,
    redacted,
    unreadable_body,
)

REQUEST = httpx.Request("POST", "https://vendor.example/v1/video")


def _answer(status: int) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": "nope"}}, request=REQUEST)


MESSAGES = {
    "busy": lambda: classify_http_error(ProviderName.KKIAI, Phase.SUBMIT, _answer(503), 0.0).user_message,
    "poll answer": lambda: classify_http_error(ProviderName.KKIAI, Phase.POLL, _answer(502), 0.0).user_message,
    "vendor failed": lambda: classify_http_error(ProviderName.KLING, Phase.SUBMIT, _answer(500), 0.0).user_message,
    "unreachable": lambda: classify_transport_error(ProviderName.KLING, Phase.POLL,
                                                    httpx.ConnectError("refused")).user_message,
    "broke after sending": lambda: classify_transport_error(ProviderName.KLING, Phase.SUBMIT,
                                                            httpx.ReadTimeout("slow")).user_message,
    "key refused": lambda: final_error(ProviderName.KIE, 401, "").user_message,
    "refused, no reason": lambda: final_error(ProviderName.KIE, 400, "").user_message,
    "policy, no reason": lambda: final_error(ProviderName.KIE, 400, "", policy=True).user_message,
    "unreadable submit": lambda: unreadable_body(ProviderName.KKIAI, Phase.SUBMIT, 200, "not JSON").user_message,
    "unreadable poll": lambda: unreadable_body(ProviderName.KKIAI, Phase.POLL, 200, "not JSON").user_message,
}


@pytest.mark.parametrize("case", sorted(MESSAGES))
@pytest.mark.parametrize("locale", ["es-ES", "ja"])
def test_vendor_messages_reach_the_member_in_their_language(case: str, locale: str) -> None:
    message = MESSAGES[case]()
    assert isinstance(message, Text), f"{case}: {message!r} is not marked for translation"
    assert translate(message, locale) != str(message), f"{case} has no {locale} translation"


def test_a_redacted_key_keeps_the_sentence_translatable() -> None:
    leaked = final_error(ProviderName.KIE, 400, "bad key sk-SECRET-123 given").user_message
    clean = redacted(leaked, "sk-SECRET-123")
    assert isinstance(clean, Text) and "sk-SECRET-123" not in clean
    assert "[REDACTED]" in translate(clean, "ja") and "sk-SECRET-123" not in translate(clean, "ja")
    assert redacted("plain sk-SECRET-123", "sk-SECRET-123") == "plain [REDACTED]"
