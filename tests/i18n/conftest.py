"""The cog harness of tests/cogs, with every extension the bot really loads (all commands present)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.discord_bot import EXTENSIONS
from tests.cogs.conftest import BotFactory, Harness, harness_factory, kie  # noqa: F401  (fixture re-export)
from fakes.discord_api import FakeDiscord
from fakes.vendors import FakeKieVendor


@pytest.fixture
async def make_harness(database_url: str, fake: FakeDiscord, kie: FakeKieVendor) -> AsyncIterator[BotFactory]:  # noqa: F811
    async with harness_factory(database_url, fake, kie, EXTENSIONS, Harness) as factory:
        yield factory


@pytest.fixture
async def harness(make_harness: BotFactory) -> Harness:
    return await make_harness()
