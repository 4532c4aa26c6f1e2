"""SQL over the append-only credit ledger: rows are only ever inserted, balances are derived.

Why a ledger and not a counter: every credit movement names its job or its moderator, a settle can
be made idempotent by a unique index instead of by care, and the rolling day falls out of a range
query. The queries run on the `ledger_member_kind` index (guild, user, kind, created_at) and the
unique per-job indexes of migration 0001.

Window rule (the product contract): window_start = max(now - 24 h, the member's last reset);
used = charges - refunds - grants in the window + active holds (holds not yet charged or
released, of any age). A reset forgives every row written before it (compared by row id, so a
charge in the same second as the reset is not lost or forgiven by accident).
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Connection, Database, Row, change_rows, insert_row, is_postgres, lock_in
from storage.guild_settings import query_all, query_one

WINDOW_SECONDS = 24 * 60 * 60
ACTIVE_JOB_STATUSES = ("queued", "submitting", "running", "uncertain")

Source = Database | Connection


@dataclass(frozen=True)
class WindowRow:
    """A row that counts in the rolling day: +amount for a charge, -amount for a refund or grant."""

    kind: str
    amount: int
    created_at: float

    @property
    def signed(self) -> int:
        return self.amount if self.kind == "charge" else -self.amount


@dataclass(frozen=True)
class Usage:
    """The member's ledger totals at one moment (all in credits)."""

    charged: int  # charges in the window
    refunded: int  # refunds in the window
    granted: int  # grants in the window
    held: int  # active holds, any age
    oldest_charge_at: float | None  # the charge that leaves the window first

    @property
    def used(self) -> int:
        return self.charged - self.refunded - self.granted + self.held


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    guild_id: int
    user_id: int
    job_id: int | None
    kind: str
    amount: int
    actor_id: int | None
    note: str | None
    created_at: float


_LAST_RESET = (
    "SELECT COALESCE(MAX(id), 0) FROM credit_ledger "
    "WHERE guild_id = :guild AND user_id = :user AND kind = 'reset' AND created_at <= :now"
)

_IN_WINDOW = (
    "guild_id = :guild AND user_id = :user AND kind IN ('charge', 'refund', 'grant') "
    "AND created_at > :since AND created_at <= :now "
    f"AND id > ({_LAST_RESET})"
)

_USAGE = (
    "SELECT "
    "  COALESCE(SUM(amount) FILTER (WHERE kind = 'charge'), 0) AS charged, "
    "  COALESCE(SUM(amount) FILTER (WHERE kind = 'refund'), 0) AS refunded, "
    "  COALESCE(SUM(amount) FILTER (WHERE kind = 'grant'), 0) AS granted, "
    "  MIN(created_at) FILTER (WHERE kind = 'charge') AS oldest_charge_at, "
    "  (SELECT COALESCE(SUM(h.amount), 0) FROM credit_ledger AS h "
    "    WHERE h.guild_id = :guild AND h.user_id = :user AND h.kind = 'hold' "
    "    AND NOT EXISTS (SELECT 1 FROM credit_ledger AS s "
    "                    WHERE s.job_id = h.job_id AND s.kind IN ('charge', 'release'))) AS held "
    f"FROM credit_ledger WHERE {_IN_WINDOW}"
)

_WINDOW_ROWS = f"SELECT kind, amount, created_at FROM credit_ledger WHERE {_IN_WINDOW} ORDER BY created_at, id"


def _window_params(guild_id: int, user_id: int, now: float) -> dict[str, float | int]:
    return {"guild": guild_id, "user": user_id, "now": now, "since": now - WINDOW_SECONDS}


def _usage(row: Row) -> Usage:
    return Usage(
        charged=int(row["charged"]),
        refunded=int(row["refunded"]),
        granted=int(row["granted"]),
        held=int(row["held"]),
        oldest_charge_at=None if row["oldest_charge_at"] is None else float(row["oldest_charge_at"]),
    )


_USAGE_AND_ACTIVE = (
    "SELECT usage.*, (SELECT COUNT(*) FROM jobs WHERE guild_id = :guild AND user_id = :user "
    "AND status IN ('queued', 'submitting', 'running', 'uncertain') AND id != :exclude) AS active "
    f"FROM ({_USAGE}) AS usage"
)


async def usage_and_active(source: Source, *, guild_id: int, user_id: int, now: float,
                           exclude_job_id: int | None = None) -> tuple[Usage, int]:
    """The member's rolling-day totals, the credits held by unsettled jobs, and their jobs still in
    progress (the `jobs_active` partial index), in one statement: one hop for a member's command."""
    params = {**_window_params(guild_id, user_id, now), "exclude": -1 if exclude_job_id is None else exclude_job_id}
    if not isinstance(source, Database):
        # Inside a transaction this read decides (a reservation): hold the member's lock until commit,
        # so two commands of one member on two processes decide one after the other.
        await lock_in(source, "member", guild_id, user_id)
    row = await query_one(source, _USAGE_AND_ACTIVE, params)
    assert row is not None
    return _usage(row), int(row["active"])


async def window_rows(source: Source, *, guild_id: int, user_id: int, now: float) -> list[WindowRow]:
    """The rows behind the usage totals, oldest first: to say when enough credits come back."""
    rows = await query_all(source, _WINDOW_ROWS, _window_params(guild_id, user_id, now))
    return [WindowRow(r["kind"], int(r["amount"]), float(r["created_at"])) for r in rows]


async def insert_hold(
    conn: Connection, *, guild_id: int, user_id: int, job_id: int, amount: int, now: float
) -> None:
    await change_rows(
        conn,
        "INSERT INTO credit_ledger (guild_id, user_id, job_id, kind, amount, created_at) "
        "VALUES (?, ?, ?, 'hold', ?, ?)",
        (guild_id, user_id, job_id, amount, now),
    )


async def settle(conn: Connection, *, job_id: int, charge: bool, now: float, amount: int | None = None) -> bool:
    """Turn the job's hold into a charge or a release; False if there is no hold or it is settled.
    `amount`: a charge below the hold (never above it); a release is always the whole hold.

    The NOT EXISTS makes the usual second call a no-op; `ledger_one_settle` would stop a second
    settle even if that check were ever wrong.
    """
    await lock_in(conn, "settle", job_id)
    least = "LEAST" if is_postgres(conn) else "MIN"  # SQLite's two-argument MIN is PostgreSQL's LEAST
    written = await change_rows(
        conn,
        "INSERT INTO credit_ledger (guild_id, user_id, job_id, kind, amount, created_at) "
        f"SELECT h.guild_id, h.user_id, h.job_id, CAST(? AS TEXT), {least}(h.amount, COALESCE(CAST(? AS INTEGER), h.amount)),"
        " CAST(? AS DOUBLE PRECISION) FROM credit_ledger AS h "
        "WHERE h.job_id = ? AND h.kind = 'hold' "
        "AND NOT EXISTS (SELECT 1 FROM credit_ledger AS s WHERE s.job_id = h.job_id AND s.kind IN ('charge', 'release')) "
        "ON CONFLICT DO NOTHING",
        ("charge" if charge else "release", amount if charge else None, now, job_id),
    )
    return written > 0


async def insert_moderator_row(
    conn: Connection,
    *,
    guild_id: int,
    user_id: int,
    kind: str,
    amount: int,
    actor_id: int,
    note: str | None,
    now: float,
) -> int:
    """A `grant` or `reset` row naming the moderator."""
    if kind not in ("grant", "reset"):
        raise ValueError(f"not a moderator ledger kind: {kind}")
    return await insert_row(
        conn,
        "INSERT INTO credit_ledger (guild_id, user_id, kind, amount, actor_id, note, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (guild_id, user_id, kind, amount, actor_id, note, now),
    )


async def recent_entries(source: Source, *, guild_id: int, user_id: int, limit: int) -> list[LedgerEntry]:
    rows = await query_all(
        source,
        "SELECT * FROM credit_ledger WHERE guild_id = ? AND user_id = ? ORDER BY created_at DESC, id DESC LIMIT ?",
        (guild_id, user_id, limit),
    )
    return [_entry(row) for row in rows]


def _entry(row: Row) -> LedgerEntry:
    return LedgerEntry(
        id=int(row["id"]),
        guild_id=int(row["guild_id"]),
        user_id=int(row["user_id"]),
        job_id=row["job_id"],
        kind=row["kind"],
        amount=int(row["amount"]),
        actor_id=row["actor_id"],
        note=row["note"],
        created_at=float(row["created_at"]),
    )
