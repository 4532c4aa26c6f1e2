"""The `Publisher` protocol is the whole contract: every publisher implements every method, with the
protocol's parameters, so nothing in the job engine probes a publisher for what it can do."""

from __future__ import annotations

import inspect

import pytest

from bot.publishing.base import Publisher
from bot.publishing.discord_publisher import DiscordPublisher
from fakes.publisher import RecordingPublisher

PROTOCOL_METHODS = sorted(name for name, value in vars(Publisher).items()
                          if inspect.iscoroutinefunction(value) and not name.startswith("_"))


def test_the_protocol_declares_what_the_engine_calls() -> None:
    assert {"deliver", "post_audit", "post_notice", "edit_card"} <= set(PROTOCOL_METHODS)


@pytest.mark.parametrize("implementation", [DiscordPublisher, RecordingPublisher])
@pytest.mark.parametrize("name", PROTOCOL_METHODS)
def test_every_publisher_implements_every_method(implementation: type, name: str) -> None:
    method = getattr(implementation, name, None)
    assert method is not None and inspect.iscoroutinefunction(method), f"{implementation.__name__}.{name}"
    wanted = list(inspect.signature(getattr(Publisher, name)).parameters)
    assert list(inspect.signature(method).parameters) == wanted
