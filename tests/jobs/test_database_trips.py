"""A member's command makes few database statements: each is a hop through a busy event loop.

Counted with SQLite's own trace callback on every connection, with the real policy and quota
services, so a change that goes back to one small query per setting fails here (the benchmark
shows what that costs: each hop waits behind a loop turn of poller work).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import pytest

from bot.catalog import Family, ProviderName
from bot.clock import FakeClock
from bot.jobs.service import JobService
from bot.moderation.policy import PolicyService
from bot.quota.service import QuotaService
from bot.validation import GenerationRequest
from storage.database import Database
from storage.guild_settings import GuildSettingsStore
from tests.jobs.support import REQUESTER, make_settings

pytestmark = pytest.mark.sqlite_only  # counts statements through SQLite's trace hook

PRECHECK_STATEMENTS = 2  # the member's snapshot; their usage and active jobs
CREATE_STATEMENTS = 9  # snapshot; BEGIN, job row, snapshot and usage in the transaction, hold, audit, read back, COMMIT


@asynccontextmanager
async def counting(db: Database) -> AsyncIterator[list[str]]:
    statements: list[str] = []
    connections = {id(c): c for c in (db._writer, db._reader, db._background_reader)}.values()
    for conn in connections:
        await conn.set_trace_callback(statements.append)
    try:
        yield statements
    finally:
        for conn in connections:
            await conn.set_trace_callback(None)


def _without_noise(statements: list[str]) -> Iterator[str]:
    """sqlite3 traces the `SELECT last_insert_rowid()` of execute_insert in the same hop."""
    return (s for s in statements if "last_insert_rowid" not in s)


async def test_precheck_and_create_job_read_each_setting_in_one_statement(db: Database, fake_clock: FakeClock) -> None:
    settings = make_settings(kie_api_key="k")
    store = GuildSettingsStore(db)
    # A configured server: every table the checks read has rows, so no read can be skipped.
    await store.update(REQUESTER.guild_id, {"daily_credits": 100, "max_concurrent": 5}, now=1.0)
    await store.allow_channel(REQUESTER.guild_id, REQUESTER.channel_id)
    await store.add_prompt_rule(REQUESTER.guild_id, "word", "gizmo", created_by=1, now=1.0)
    await store.set_cost(REQUESTER.guild_id, "veo-fast-kie", 3)
    await store.set_role_budget(REQUESTER.guild_id, REQUESTER.role_ids[0], 50)
    quota = QuotaService(db, settings, fake_clock, store)
    service = JobService(settings=settings, db=db, clock=fake_clock, providers={ProviderName.KIE: object()},  # type: ignore[dict-item]
                         quota=quota, policy=PolicyService(db, fake_clock, store))
    spec = service.validate(GenerationRequest(family=Family.VEO, prompt="a lighthouse", model="veo-fast-kie",
                                              upsample=False))

    async with counting(db) as statements:
        assert await service.precheck(REQUESTER, spec) == 3
    assert len(list(_without_noise(statements))) <= PRECHECK_STATEMENTS, statements

    async with counting(db) as statements:
        job = await service.create_job(REQUESTER, spec)
    assert job.cost == 3
    assert len(list(_without_noise(statements))) <= CREATE_STATEMENTS, statements
