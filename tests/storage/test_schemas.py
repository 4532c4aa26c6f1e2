"""Both engines' migrations build the same schema: the same versions, tables, columns and indexes.

A migration added for one dialect and forgotten for the other (or a column spelled differently)
fails here, not on an operator's PostgreSQL server.
"""

from __future__ import annotations

from pathlib import Path

import asyncpg

from storage.database import migrations_for, open_database
from fakes.postgres import PostgresServer


async def _sqlite_schema(path: Path) -> dict[str, object]:
    db = await open_database(path)
    try:
        tables = [r["name"] for r in await db.fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        columns = {t: sorted(r["name"] for r in await db.fetchall(f"PRAGMA table_info({t})")) for t in tables}
        indexes = {(r["tbl_name"], r["name"]) for r in await db.fetchall(
            "SELECT tbl_name, name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_autoindex%'")}
        index_columns = {name: [r["name"] for r in await db.fetchall(f"PRAGMA index_info({name})")]
                         for _, name in indexes}
    finally:
        await db.close()
    return {"columns": columns, "indexes": indexes, "index_columns": index_columns}


async def _postgres_schema(url: str) -> dict[str, object]:
    conn = await asyncpg.connect(url)
    try:
        columns: dict[str, list[str]] = {}
        for r in await conn.fetch("SELECT table_name, column_name FROM information_schema.columns"
                                  " WHERE table_schema = 'public' ORDER BY table_name, column_name"):
            columns.setdefault(r["table_name"], []).append(r["column_name"])
        # Indexes that back a PRIMARY KEY or UNIQUE constraint are SQLite's sqlite_autoindex_*: left out.
        rows = await conn.fetch(
            "SELECT t.relname AS tbl, i.relname AS name, array_agg(a.attname ORDER BY k.n) AS cols"
            " FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid"
            " JOIN pg_namespace s ON s.oid = t.relnamespace"
            " CROSS JOIN LATERAL unnest(x.indkey) WITH ORDINALITY AS k(attnum, n)"
            " JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum"
            " WHERE s.nspname = 'public' AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
            " GROUP BY t.relname, i.relname")
    finally:
        await conn.close()
    return {"columns": columns, "indexes": {(r["tbl"], r["name"]) for r in rows},
            "index_columns": {r["name"]: list(r["cols"]) for r in rows}}


def test_both_dialects_have_the_same_migration_versions() -> None:
    sqlite = [(v, n) for v, n, _ in migrations_for("sqlite")]
    postgres = [(v, n) for v, n, _ in migrations_for("postgres")]
    assert sqlite == postgres


async def test_both_dialects_build_the_same_tables_columns_and_indexes(
        tmp_path: Path, postgres_server: PostgresServer, postgres_template: str) -> None:
    sqlite = await _sqlite_schema(tmp_path / "bot.db")
    postgres = await _postgres_schema(postgres_server.url(postgres_template))
    assert sqlite["columns"] == postgres["columns"]
    assert sqlite["indexes"] == postgres["indexes"]
    assert sqlite["index_columns"] == postgres["index_columns"]
    assert "jobs" in sqlite["columns"]  # type: ignore[operator]


async def test_discord_ids_are_bigint_and_times_keep_sub_second_precision(
        postgres_server: PostgresServer, postgres_template: str) -> None:
    conn = await asyncpg.connect(postgres_server.url(postgres_template))
    try:
        types = {(r["table_name"], r["column_name"]): r["data_type"] for r in await conn.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = 'public'")}
        identity = {(r["table_name"], r["column_name"]) for r in await conn.fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND is_identity = 'YES'")}
    finally:
        await conn.close()
    for (table, column), kind in types.items():
        if (column.endswith("_id") or column == "id") and column != "provider_task_id":  # a vendor's text id
            assert kind == "bigint", (table, column)
        if column.endswith("_at") or column == "lease_until":
            assert kind == "double precision", (table, column)
    assert {("jobs", "id"), ("credit_ledger", "id"), ("audit_events", "id"), ("guild_prompt_rules", "id")} <= identity
