"""Fixtures shared by every test: a real SQLite file and a controllable clock."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.clock import FakeClock
from storage.database import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(tmp_path / "data" / "bot.db")
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()
