"""The cog harness of tests/cogs, with every extension the bot really loads (all commands present)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.discord_bot import EXTENSIONS
from tests.cogs.conftest import BotFactory, Harness, harness_factory, kie  # noqa: F401  (fixture re-export)
from tests.fakes.discord_api import FakeDiscord
from tests.fakes.vendors import FakeKieVendor


@pytest.fixture
async def make_harness(tmp_path: Path, fake: FakeDiscord, kie: FakeKieVendor) -> AsyncIterator[BotFactory]:  # noqa: F811
    async with harness_factory(lambda n: tmp_path / f"bot{n}", fake, kie, EXTENSIONS, Harness) as factory:
        yield factory


@pytest.fixture
async def harness(make_harness: BotFactory) -> Harness:
    return await make_harness()
