"""All SQL on the per-server `guild_*` tables; every statement is scoped by guild_id.

Nothing here is cached: each read goes to the database, so a moderator's change applies to the very
next command. Reads take an optional `conn` so a quota decision can read the settings inside its own
write transaction; writes take an optional `conn` so a caller can put the change and its audit event
in one transaction (without one, each write is its own transaction).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from storage.database import Connection, Database, Row, change_rows, fetch_rows, is_postgres

# Columns of guild_settings a moderator may change (guild_id and updated_at are ours).
SETTINGS_FIELDS = frozenset({"daily_credits", "max_concurrent", "paused", "audit_channel_id", "moderator_role_id"})


async def query_all(
    source: Database | Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> list[Row]:
    """Rows from the reader (a Database) or from inside a caller's transaction (a Connection)."""
    if isinstance(source, Database):
        return await source.fetchall(sql, params)
    return await fetch_rows(source, sql, params)


async def query_one(
    source: Database | Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()
) -> Row | None:
    rows = await query_all(source, sql, params)
    return rows[0] if rows else None


def id_list(ids: Iterable[int]) -> str:
    """A JSON array for `IN (SELECT value FROM json_each(?))`: one statement whatever the count."""
    return json.dumps([int(i) for i in ids])


@dataclass(frozen=True)
class GuildSettings:
    guild_id: int
    daily_credits: int | None = None  # None: the bot-wide default
    max_concurrent: int | None = None  # None: the bot-wide default
    paused: bool = False
    audit_channel_id: int | None = None
    moderator_role_id: int | None = None
    updated_at: float | None = None


@dataclass(frozen=True)
class Limit:
    """A configured budget: `credits` None means unlimited (distinct from "nothing configured")."""

    credits: int | None


@dataclass(frozen=True)
class PromptRule:
    id: int
    guild_id: int
    kind: str  # 'word' | 'regex'
    pattern: str
    created_by: int | None
    created_at: float


@dataclass(frozen=True)
class Ban:
    guild_id: int
    user_id: int
    reason: str | None
    banned_by: int | None
    created_at: float


_ROLE_LIMITS = ("SELECT credits FROM guild_role_budgets WHERE guild_id = ? "
                "AND role_id IN (SELECT value FROM json_each(?))")
_ROLE_LIMITS_PG = ("SELECT credits FROM guild_role_budgets WHERE guild_id = ? "
                   "AND role_id IN (SELECT value::bigint FROM json_array_elements_text(CAST(? AS json)))")


class GuildSettingsStore:
    """Read and write one server's configuration."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def _write(self, conn: Connection | None, sql: str, params: Sequence[Any]) -> int:
        if conn is not None:
            return await change_rows(conn, sql, params)
        return await self.db.execute(sql, params)

    def _src(self, conn: Connection | None) -> Database | Connection:
        return self.db if conn is None else conn

    # --- guild_settings ---------------------------------------------------------------------

    async def get(self, guild_id: int, *, conn: Connection | None = None) -> GuildSettings:
        row = await query_one(self._src(conn), "SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
        return settings_from(guild_id, row)

    async def update(
        self, guild_id: int, fields: Mapping[str, Any], *, now: float, conn: Connection | None = None
    ) -> None:
        """Set some settings columns (None resets a column to the bot-wide default)."""
        unknown = set(fields) - SETTINGS_FIELDS
        if unknown:
            raise ValueError(f"unknown guild setting(s): {', '.join(sorted(unknown))}")
        if not fields:
            return
        if fields.get("daily_credits") is not None and int(fields["daily_credits"]) < 0:
            raise ValueError("daily_credits cannot be negative")
        if fields.get("max_concurrent") is not None and int(fields["max_concurrent"]) < 1:
            raise ValueError("max_concurrent must be at least 1")
        values = {k: (int(bool(v)) if k == "paused" else v) for k, v in fields.items()}
        columns = sorted(values)
        assignments = ", ".join(f"{c} = excluded.{c}" for c in columns)
        sql = (
            f"INSERT INTO guild_settings (guild_id, updated_at, {', '.join(columns)}) "
            f"VALUES (?, ?, {', '.join('?' for _ in columns)}) "
            f"ON CONFLICT (guild_id) DO UPDATE SET updated_at = excluded.updated_at, {assignments}"
        )
        await self._write(conn, sql, [guild_id, now, *(values[c] for c in columns)])

    # --- costs ------------------------------------------------------------------------------

    async def costs(self, guild_id: int, *, conn: Connection | None = None) -> dict[str, int]:
        rows = await query_all(
            self._src(conn), "SELECT cost_key, cost FROM guild_costs WHERE guild_id = ?", (guild_id,)
        )
        return {row["cost_key"]: int(row["cost"]) for row in rows}

    async def set_cost(self, guild_id: int, cost_key: str, cost: int, *, conn: Connection | None = None) -> None:
        if cost < 0:
            raise ValueError("a cost cannot be negative")
        await self._write(
            conn,
            "INSERT INTO guild_costs (guild_id, cost_key, cost) VALUES (?, ?, ?) "
            "ON CONFLICT (guild_id, cost_key) DO UPDATE SET cost = excluded.cost",
            (guild_id, cost_key, cost),
        )

    async def clear_cost(self, guild_id: int, cost_key: str, *, conn: Connection | None = None) -> bool:
        return await self._write(
            conn, "DELETE FROM guild_costs WHERE guild_id = ? AND cost_key = ?", (guild_id, cost_key)
        ) > 0

    # --- role budgets and member overrides --------------------------------------------------

    async def role_budgets(self, guild_id: int, *, conn: Connection | None = None) -> dict[int, Limit]:
        rows = await query_all(
            self._src(conn), "SELECT role_id, credits FROM guild_role_budgets WHERE guild_id = ?", (guild_id,)
        )
        return {int(row["role_id"]): Limit(row["credits"]) for row in rows}

    async def role_limits_for(
        self, guild_id: int, role_ids: Iterable[int], *, conn: Connection | None = None
    ) -> list[Limit]:
        """The budgets configured for any of these roles (empty: none of them has one)."""
        role_json = id_list(role_ids)
        if role_json == "[]":
            return []
        source = self._src(conn)
        rows = await query_all(source, _ROLE_LIMITS_PG if is_postgres(source) else _ROLE_LIMITS, (guild_id, role_json))
        return [Limit(row["credits"]) for row in rows]

    async def set_role_budget(
        self, guild_id: int, role_id: int, credits: int | None, *, conn: Connection | None = None
    ) -> None:
        if credits is not None and credits < 0:
            raise ValueError("a budget cannot be negative")
        await self._write(
            conn,
            "INSERT INTO guild_role_budgets (guild_id, role_id, credits) VALUES (?, ?, ?) "
            "ON CONFLICT (guild_id, role_id) DO UPDATE SET credits = excluded.credits",
            (guild_id, role_id, credits),
        )

    async def remove_role_budget(self, guild_id: int, role_id: int, *, conn: Connection | None = None) -> bool:
        return await self._write(
            conn, "DELETE FROM guild_role_budgets WHERE guild_id = ? AND role_id = ?", (guild_id, role_id)
        ) > 0

    async def member_override(
        self, guild_id: int, user_id: int, *, conn: Connection | None = None
    ) -> Limit | None:
        row = await query_one(
            self._src(conn),
            "SELECT credits FROM guild_member_overrides WHERE guild_id = ? AND user_id = ?",
            (guild_id, user_id),
        )
        return None if row is None else Limit(row["credits"])

    async def member_overrides(self, guild_id: int, *, conn: Connection | None = None) -> dict[int, Limit]:
        rows = await query_all(
            self._src(conn), "SELECT user_id, credits FROM guild_member_overrides WHERE guild_id = ?", (guild_id,)
        )
        return {int(row["user_id"]): Limit(row["credits"]) for row in rows}

    async def set_member_override(
        self, guild_id: int, user_id: int, credits: int | None, *, conn: Connection | None = None
    ) -> None:
        if credits is not None and credits < 0:
            raise ValueError("a budget cannot be negative")
        await self._write(
            conn,
            "INSERT INTO guild_member_overrides (guild_id, user_id, credits) VALUES (?, ?, ?) "
            "ON CONFLICT (guild_id, user_id) DO UPDATE SET credits = excluded.credits",
            (guild_id, user_id, credits),
        )

    async def remove_member_override(
        self, guild_id: int, user_id: int, *, conn: Connection | None = None
    ) -> bool:
        return await self._write(
            conn, "DELETE FROM guild_member_overrides WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        ) > 0

    # --- prompt rules -----------------------------------------------------------------------

    async def prompt_rules(self, guild_id: int, *, conn: Connection | None = None) -> list[PromptRule]:
        rows = await query_all(
            self._src(conn), "SELECT * FROM guild_prompt_rules WHERE guild_id = ? ORDER BY id", (guild_id,)
        )
        return [rule_from(row) for row in rows]

    async def add_prompt_rule(
        self,
        guild_id: int,
        kind: str,
        pattern: str,
        *,
        created_by: int | None,
        now: float,
        conn: Connection | None = None,
    ) -> PromptRule:
        """Store a rule (validate it first: see bot.moderation.rules); an identical rule is returned as is."""
        sql_insert = (
            "INSERT INTO guild_prompt_rules (guild_id, kind, pattern, created_by, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (guild_id, kind, pattern) DO NOTHING"
        )
        params = (guild_id, kind, pattern, created_by, now)
        select = "SELECT * FROM guild_prompt_rules WHERE guild_id = ? AND kind = ? AND pattern = ?"
        if conn is not None:
            await self._write(conn, sql_insert, params)
            row = await query_one(conn, select, (guild_id, kind, pattern))
        else:
            async with self.db.transaction() as own:
                await self._write(own, sql_insert, params)
                row = await query_one(own, select, (guild_id, kind, pattern))
        assert row is not None  # inserted or already there, in this transaction
        return rule_from(row)

    async def remove_prompt_rule(self, guild_id: int, rule_id: int, *, conn: Connection | None = None) -> bool:
        return await self._write(
            conn, "DELETE FROM guild_prompt_rules WHERE guild_id = ? AND id = ?", (guild_id, rule_id)
        ) > 0

    # --- channel allowlist ------------------------------------------------------------------

    async def allowed_channels(self, guild_id: int, *, conn: Connection | None = None) -> list[int]:
        rows = await query_all(
            self._src(conn),
            "SELECT channel_id FROM guild_channel_allowlist WHERE guild_id = ? ORDER BY channel_id",
            (guild_id,),
        )
        return [int(row["channel_id"]) for row in rows]

    async def allow_channel(self, guild_id: int, channel_id: int, *, conn: Connection | None = None) -> bool:
        return await self._write(
            conn,
            "INSERT INTO guild_channel_allowlist (guild_id, channel_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (guild_id, channel_id),
        ) > 0

    async def disallow_channel(self, guild_id: int, channel_id: int, *, conn: Connection | None = None) -> bool:
        return await self._write(
            conn, "DELETE FROM guild_channel_allowlist WHERE guild_id = ? AND channel_id = ?", (guild_id, channel_id)
        ) > 0

    # --- family toggles ---------------------------------------------------------------------

    async def family_toggles(self, guild_id: int, *, conn: Connection | None = None) -> dict[str, bool]:
        rows = await query_all(
            self._src(conn), "SELECT family, enabled FROM guild_family_toggles WHERE guild_id = ?", (guild_id,)
        )
        return {row["family"]: bool(row["enabled"]) for row in rows}

    async def is_family_enabled(self, guild_id: int, family: str, *, conn: Connection | None = None) -> bool:
        """Families are on unless a moderator turned them off."""
        row = await query_one(
            self._src(conn),
            "SELECT enabled FROM guild_family_toggles WHERE guild_id = ? AND family = ?",
            (guild_id, family),
        )
        return True if row is None else bool(row["enabled"])

    async def set_family_enabled(
        self, guild_id: int, family: str, enabled: bool, *, conn: Connection | None = None
    ) -> None:
        await self._write(
            conn,
            "INSERT INTO guild_family_toggles (guild_id, family, enabled) VALUES (?, ?, ?) "
            "ON CONFLICT (guild_id, family) DO UPDATE SET enabled = excluded.enabled",
            (guild_id, family, int(enabled)),
        )

    # --- bans -------------------------------------------------------------------------------

    async def ban(
        self,
        guild_id: int,
        user_id: int,
        *,
        reason: str | None,
        banned_by: int | None,
        now: float,
        conn: Connection | None = None,
    ) -> None:
        """Ban a member from making videos (banning again updates the reason)."""
        await self._write(
            conn,
            "INSERT INTO guild_bans (guild_id, user_id, reason, banned_by, created_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (guild_id, user_id) DO UPDATE SET reason = excluded.reason, "
            "banned_by = excluded.banned_by, created_at = excluded.created_at",
            (guild_id, user_id, reason, banned_by, now),
        )

    async def unban(self, guild_id: int, user_id: int, *, conn: Connection | None = None) -> bool:
        return await self._write(
            conn, "DELETE FROM guild_bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        ) > 0

    async def get_ban(self, guild_id: int, user_id: int, *, conn: Connection | None = None) -> Ban | None:
        row = await query_one(
            self._src(conn), "SELECT * FROM guild_bans WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        )
        return None if row is None else ban_from(row)

    async def bans(self, guild_id: int, *, conn: Connection | None = None) -> list[Ban]:
        rows = await query_all(
            self._src(conn), "SELECT * FROM guild_bans WHERE guild_id = ? ORDER BY created_at", (guild_id,)
        )
        return [ban_from(row) for row in rows]


def settings_from(guild_id: int, row: Mapping[str, Any] | Row | None) -> GuildSettings:
    """A `guild_settings` row (or the same fields as a mapping); None = the defaults."""
    if row is None:
        return GuildSettings(guild_id=guild_id)
    return GuildSettings(
        guild_id=guild_id,
        daily_credits=row["daily_credits"],
        max_concurrent=row["max_concurrent"],
        paused=bool(row["paused"]),
        audit_channel_id=row["audit_channel_id"],
        moderator_role_id=row["moderator_role_id"],
        updated_at=row["updated_at"],
    )


def rule_from(row: Mapping[str, Any] | Row) -> PromptRule:
    return PromptRule(
        id=int(row["id"]),
        guild_id=int(row["guild_id"]),
        kind=row["kind"],
        pattern=row["pattern"],
        created_by=row["created_by"],
        created_at=float(row["created_at"]),
    )


def ban_from(row: Mapping[str, Any] | Row) -> Ban:
    return Ban(
        guild_id=int(row["guild_id"]),
        user_id=int(row["user_id"]),
        reason=row["reason"],
        banned_by=row["banned_by"],
        created_at=float(row["created_at"]),
    )
