"""Helpers for quota tests: job rows and a create-like transaction, as the job service will do it."""

from __future__ import annotations

from collections.abc import Sequence


from bot.quota.service import QuotaService
from bot.settings import Settings
from storage.database import Connection, Database, change_rows, insert_row

T0 = 1_700_000_000.0
DAY = 24 * 60 * 60.0


def make_settings(daily: int = 10, concurrent: int = 2) -> Settings:
    return Settings(
        discord_token="test-token", quota_daily_credits=daily, quota_max_concurrent_jobs=concurrent, _env_file=None
    )


async def insert_job(
    conn: Connection, *, guild_id: int, user_id: int, now: float, status: str = "queued", cost: int = 0
) -> int:
    return await insert_row(
        conn,
        "INSERT INTO jobs (guild_id, channel_id, user_id, family, model_key, provider, mode, prompt, request_json, "
        "cost, status, created_at) VALUES (?, 1, ?, 'veo', 'veo-fast-kie', 'kie', 'text', 'a cat', '{}', ?, ?, ?)",
        (guild_id, user_id, cost, status, now),
    )


async def create_job(
    db: Database,
    quota: QuotaService,
    *,
    guild_id: int,
    user_id: int,
    cost: int,
    now: float,
    role_ids: Sequence[int] = (),
) -> int:
    """What JobService.create_job does with credits: job row + hold in one transaction."""
    async with db.transaction() as conn:
        job_id = await insert_job(conn, guild_id=guild_id, user_id=user_id, now=now, cost=cost)
        await quota.reserve_in(
            conn, guild_id=guild_id, user_id=user_id, role_ids=role_ids, job_id=job_id, cost=cost, now=now
        )
    return job_id


async def finish_job(db: Database, quota: QuotaService, job_id: int, *, succeeded: bool, now: float) -> None:
    """What the poller does at the end: terminal status and settle, one transaction."""
    async with db.transaction() as conn:
        await change_rows(
            conn, "UPDATE jobs SET status = ?, finished_at = ? WHERE id = ?",
            ("succeeded" if succeeded else "failed", now, job_id),
        )
        await quota.settle_in(conn, job_id=job_id, charge=succeeded, now=now)
