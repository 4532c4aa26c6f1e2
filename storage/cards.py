"""All SQL of the job card and of the jobs members make from buttons (migration 0007).

Plain, portable SQL (CASE, window functions, partial indexes): the card keeper's query filters in
the database, so a tick reads only the cards whose job moved on, not every open card.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.database import Database, Row, change_rows, fetch_row

# How a job's status shows on its card: the three running statuses read as one "generating".
CARD_STATUS_SQL = (
    "CASE WHEN j.status = 'queued' THEN 'queued'"
    " WHEN j.status IN ('submitting', 'running', 'uncertain') THEN 'generating' ELSE j.status END"
)


@dataclass(frozen=True)
class CardRow:
    """What a card last showed (the outbox half of the card)."""

    job_id: int
    channel_id: int
    message_id: int
    shown_status: str
    shown_progress: float | None
    shown_position: int | None
    shown_at: float
    edits: int

    @classmethod
    def from_row(cls, row: Row | dict[str, Any]) -> CardRow:
        return cls(job_id=int(row["card_job_id"]), channel_id=int(row["card_channel_id"]),
                   message_id=int(row["card_message_id"]), shown_status=str(row["shown_status"]),
                   shown_progress=row["shown_progress"], shown_position=row["shown_position"],
                   shown_at=float(row["shown_at"]), edits=int(row["edits"]))


class CardStore:
    """SQL on `job_cards` and the 0007 columns of `jobs`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- the job's origin (written with the job row: storage.jobs.ORIGIN_COLUMNS) ----------
    async def job_id_for_key(self, request_key: str) -> int | None:
        value = await self.db.fetchval("SELECT id FROM jobs WHERE request_key = ?", (request_key,))
        return int(value) if value is not None else None

    # --- cards ------------------------------------------------------------------------------------
    async def record(self, job_id: int, *, channel_id: int, message_id: int, status: str,
                     position: int | None, now: float) -> None:
        """The card was posted showing `status`; a repeat (same job) keeps the first card."""
        async with self.db.transaction() as conn:
            existing = await fetch_row(conn, "SELECT 1 FROM job_cards WHERE job_id = ?", (job_id,))
            if existing is None:
                await change_rows(
                    conn, "INSERT INTO job_cards (job_id, channel_id, message_id, shown_status, shown_position,"
                    " shown_at, edits, closed) VALUES (?, ?, ?, ?, ?, ?, 0, 0)",
                    (job_id, channel_id, message_id, status, position, now))

    async def due(self, *, now: float, progress_gap: float, max_edits: int, limit: int) -> list[Row]:
        """Open cards that need an edit: the job finished (and its result went out, or delivery gave
        up), its card status changed, or (within the edit cap, at most every `progress_gap` s) the
        vendor's progress moved or it waits in the queue (its position may have moved)."""
        return await self.db.fetchall(
            "SELECT j.*, c.job_id AS card_job_id, c.channel_id AS card_channel_id,"
            " c.message_id AS card_message_id, c.shown_status, c.shown_progress, c.shown_position, c.shown_at,"
            " c.edits FROM job_cards c JOIN jobs j ON j.id = c.job_id WHERE c.closed = 0 AND ("
            " (j.status IN ('succeeded', 'failed', 'timed_out', 'cancelled')"
            "  AND (j.delivery_state = 'delivered' OR j.next_due_at IS NULL))"
            f" OR (j.status NOT IN ('succeeded', 'failed', 'timed_out', 'cancelled') AND c.shown_status <> {CARD_STATUS_SQL})"
            " OR (c.edits < ? AND c.shown_at <= ? AND ("
            "  (j.status = 'running' AND j.progress IS NOT NULL"
            "   AND (c.shown_progress IS NULL OR j.progress <> c.shown_progress))"
            "  OR (j.status = 'queued' AND c.shown_status = 'queued')))"
            ") ORDER BY c.job_id LIMIT ?",
            (max_edits, now - progress_gap, limit),
        )

    async def mark_shown(self, job_id: int, *, status: str, progress: float | None, position: int | None,
                         now: float, final: bool, counted: bool) -> None:
        await self.db.execute(
            "UPDATE job_cards SET shown_status = ?, shown_progress = ?, shown_position = ?, shown_at = ?,"
            " edits = edits + ?, closed = ? WHERE job_id = ?",
            (status, progress, position, now, 1 if counted else 0, 1 if final else 0, job_id))

    async def touch(self, job_id: int, now: float) -> None:
        """Looked at, nothing to show (a queued job whose position did not move)."""
        await self.db.execute("UPDATE job_cards SET shown_at = ? WHERE job_id = ?", (now, job_id))

    async def close(self, job_id: int) -> None:
        """The card is gone (deleted by a moderator, channel removed): never edited or re-made."""
        await self.db.execute("UPDATE job_cards SET closed = 1 WHERE job_id = ?", (job_id,))

    async def get(self, job_id: int) -> CardRow | None:
        row = await self.db.fetchone(
            "SELECT job_id AS card_job_id, channel_id AS card_channel_id, message_id AS card_message_id,"
            " shown_status, shown_progress, shown_position, shown_at, edits FROM job_cards WHERE job_id = ?",
            (job_id,))
        return CardRow.from_row(row) if row else None

    # --- what a queued job waits for --------------------------------------------------------------
    async def queue_positions(self, job_ids: Sequence[int]) -> dict[int, int]:
        """1-based place of each queued job among its vendor's queued jobs (one statement)."""
        if not job_ids:
            return {}
        rows = await self.db.fetchall(
            "SELECT id, ROW_NUMBER() OVER (PARTITION BY provider ORDER BY id) AS position"
            " FROM jobs WHERE status = 'queued'")
        wanted = set(job_ids)
        return {int(r["id"]): int(r["position"]) for r in rows if int(r["id"]) in wanted}

    async def vendor_load(self, provider: str, since: float) -> tuple[int, int]:
        """(jobs holding a vendor slot, submits since `since`) for one vendor."""
        row = await self.db.fetchone(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE provider = ? AND status IN ('submitting', 'running',"
            " 'uncertain')) AS in_flight, (SELECT COUNT(*) FROM jobs WHERE provider = ? AND submitted_at > ?)"
            " AS recent", (provider, provider, since))
        if row is None:
            return 0, 0
        return int(row["in_flight"] or 0), int(row["recent"] or 0)

    async def active_count(self, guild_id: int, user_id: int) -> int:
        value = await self.db.fetchval(
            "SELECT COUNT(*) FROM jobs WHERE guild_id = ? AND user_id = ?"
            " AND status IN ('queued', 'submitting', 'running', 'uncertain')", (guild_id, user_id))
        return int(value or 0)

    async def recent_for_member(self, guild_id: int, user_id: int, prefix: str, limit: int) -> list[Row]:
        """The member's latest jobs whose number starts with `prefix` (for /job's autocomplete)."""
        if prefix.isdigit():
            return await self.db.fetchall(
                "SELECT id, status, prompt FROM jobs WHERE guild_id = ? AND user_id = ?"
                " AND CAST(id AS TEXT) LIKE ? ORDER BY id DESC LIMIT ?", (guild_id, user_id, f"{prefix}%", limit))
        return await self.db.fetchall(
            "SELECT id, status, prompt FROM jobs WHERE guild_id = ? AND user_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, user_id, limit))
