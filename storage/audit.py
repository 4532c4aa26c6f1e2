"""All SQL on `audit_events`, the audit trail that doubles as an outbox (see bot.audit for why).

`AuditStore.add` is the one INSERT (inside the caller's transaction, so an event commits with the
change it describes); the rest are the outbox queries of the poster loop. Callers write through
`bot.audit.AuditService.record`.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Connection, Database, Row, insert_row, is_postgres


@dataclass(frozen=True)
class AuditEvent:
    id: int
    guild_id: int
    kind: str
    text: str
    actor_id: int | None
    target_id: int | None
    job_id: int | None
    created_at: float
    posted_at: float | None
    message_id: int | None
    attempts: int
    next_attempt_at: float | None
    channel_id: int | None = None  # the server's audit channel (set by `pending`)


def _event(row: Row) -> AuditEvent:
    keys = row.keys()
    return AuditEvent(
        id=int(row["id"]),
        guild_id=int(row["guild_id"]),
        kind=row["kind"],
        text=row["text"],
        actor_id=row["actor_id"],
        target_id=row["target_id"],
        job_id=row["job_id"],
        created_at=float(row["created_at"]),
        posted_at=row["posted_at"],
        message_id=row["message_id"],
        attempts=int(row["attempts"]),
        next_attempt_at=row["next_attempt_at"],
        channel_id=row["channel_id"] if "channel_id" in keys else None,
    )


class AuditStore:
    """The one write of an event, the outbox queries (what is due, posted, failed) and a server's latest."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @staticmethod
    async def add(conn: Connection, *, guild_id: int, kind: str, text: str, actor_id: int | None,
                  target_id: int | None, job_id: int | None, now: float) -> int:
        """Add an event inside the caller's transaction; returns its id. It is due for posting at once."""
        return await insert_row(
            conn,
            "INSERT INTO audit_events (guild_id, kind, actor_id, target_id, job_id, text, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (guild_id, kind, actor_id, target_id, job_id, text, now, now),
        )

    async def pending(self, now: float, limit: int = 20) -> list[AuditEvent]:
        """Unposted events that are due, for servers that have an audit channel, oldest first."""
        # SQLite's CROSS JOIN fixes the loop order: servers with a channel first, then their pending
        # rows (index audit_pending_guild), so servers without a channel cost nothing. PostgreSQL's
        # planner picks that order from its statistics (and has no CROSS JOIN ... ON).
        join = "JOIN" if is_postgres(self.db) else "CROSS JOIN"
        rows = await self.db.fetchall(
            f"SELECT e.*, g.audit_channel_id AS channel_id FROM guild_settings AS g "
            f"{join} audit_events AS e ON e.guild_id = g.guild_id "
            "WHERE g.audit_channel_id IS NOT NULL AND e.posted_at IS NULL AND e.next_attempt_at <= ? "
            "ORDER BY e.next_attempt_at, e.id LIMIT ?",
            (now, limit),
        )
        return [_event(row) for row in rows]

    async def mark_posted(self, event_id: int, message_id: int, now: float) -> bool:
        """Record the posted message; False if it was already marked (never post twice)."""
        changed = await self.db.execute(
            "UPDATE audit_events SET posted_at = ?, message_id = ?, next_attempt_at = NULL, attempts = attempts + 1 "
            "WHERE id = ? AND posted_at IS NULL",
            (now, message_id, event_id),
        )
        return changed > 0

    async def mark_failed(self, event_id: int, now: float, retry_in: float) -> None:
        """Count a failed post and push the next try back by `retry_in` seconds."""
        await self.db.execute(
            "UPDATE audit_events SET attempts = attempts + 1, next_attempt_at = ? WHERE id = ? AND posted_at IS NULL",
            (now + retry_in, event_id),
        )

    async def recent(self, guild_id: int, limit: int = 20) -> list[AuditEvent]:
        """The server's latest events, newest first."""
        rows = await self.db.fetchall(
            "SELECT * FROM audit_events WHERE guild_id = ? ORDER BY id DESC LIMIT ?", (guild_id, limit)
        )
        return [_event(row) for row in rows]
