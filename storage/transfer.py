"""Moving a SQLite database's settings, ledger, audit trail and finished jobs to PostgreSQL.

`python -m bot migrate-to-postgres SQLITE_URL POSTGRES_URL` (bot/app.py) calls `copy_to_postgres`.
Rows keep their ids (the ledger, the audit trail and the job cards name jobs by id), and each identity
sequence then continues after the highest copied id. Everything is copied in one transaction: a copy
that fails half way leaves the PostgreSQL database as empty as it was.

It refuses rather than guess: while a job still has work left (not finished, or its result not yet
posted) its lease, hold and vendor task belong to the running bot, so the operator first lets the
bot finish; and a target that already holds data is never merged into.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from storage.database import Database, execute_many, is_postgres

# Parents before children: jobs before the ledger entries, audit events and cards that name them.
COPIED_TABLES = (
    "guild_settings", "guild_costs", "guild_role_budgets", "guild_member_overrides", "guild_prompt_rules",
    "guild_channel_allowlist", "guild_family_toggles", "guild_bans",
    "jobs", "credit_ledger", "audit_events", "job_cards",
)
IDENTITY_TABLES = ("jobs", "credit_ledger", "audit_events", "guild_prompt_rules")
UNFINISHED_JOBS = ("SELECT COUNT(*) FROM jobs WHERE status IN ('queued','submitting','running','uncertain')"
                   " OR next_due_at IS NOT NULL")


class TransferRefused(Exception):
    """Why the copy did not start; one sentence for the operator."""


def _as_int(value: Any) -> Any:
    return int(value) if isinstance(value, (float, bool)) and float(value).is_integer() else value


def _as_float(value: Any) -> Any:
    return float(value) if isinstance(value, (int, bool)) else value


def _as_text(value: Any) -> Any:
    return value if isinstance(value, str) else str(value)


CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "bigint": _as_int, "integer": _as_int, "smallint": _as_int,
    "double precision": _as_float, "real": _as_float, "numeric": _as_float,
    "text": _as_text, "character varying": _as_text,
}


async def _column_types(target: Database) -> dict[str, dict[str, str]]:
    rows = await target.fetchall(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = current_schema()")
    types: dict[str, dict[str, str]] = {}
    for row in rows:
        types.setdefault(row["table_name"], {})[row["column_name"]] = row["data_type"]
    return types


async def check_transfer(source: Database, target: Database) -> None:
    """Raise TransferRefused when copying now would lose or duplicate something."""
    if is_postgres(source) or not is_postgres(target):
        raise TransferRefused("copy from a SQLite database to a PostgreSQL database")
    unfinished = int(await source.fetchval(UNFINISHED_JOBS) or 0)
    if unfinished:
        raise TransferRefused(
            f"{unfinished} job(s) in the SQLite database are not finished (or their result is not posted yet): "
            "run the bot on SQLite until they are, stop it, then copy")
    for table in COPIED_TABLES:
        if await target.fetchval(f"SELECT COUNT(*) FROM {table}"):
            raise TransferRefused(f"the PostgreSQL database already has rows in {table}: copy into an empty one")


async def copy_to_postgres(source: Database, target: Database) -> dict[str, int]:
    """Copy every table of COPIED_TABLES; returns rows copied per table. See the module docstring."""
    await check_transfer(source, target)
    types = await _column_types(target)
    copied: dict[str, int] = {}
    async with target.transaction() as conn:
        for table in COPIED_TABLES:
            rows = await source.fetchall(f"SELECT * FROM {table}")
            copied[table] = len(rows)
            if not rows:
                continue
            target_types = types.get(table, {})
            columns = [name for name in rows[0].keys() if name in target_types]  # noqa: SIM118 - a Row iterates values
            converters = [CONVERTERS.get(target_types[name], lambda v: v) for name in columns]
            values = [[None if row[name] is None else convert(row[name])
                       for name, convert in zip(columns, converters, strict=True)] for row in rows]
            marks = ", ".join("?" for _ in columns)
            await execute_many(conn, f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", values)
    for table in IDENTITY_TABLES:
        await target.fetchval(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE((SELECT MAX(id) FROM {table}), 0) + 1,"
            " false)")
    return copied
