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
        """Unposted events that are due, for servers that have an audit channel, oldest first.

        Servers with a channel first, then each one's pending rows (index audit_pending_guild), so the
        events of servers without a channel (never posted, possibly thousands) cost nothing. Asked on
        every poller pass of every process, it must stay cheap. SQLite keeps CROSS JOIN's loop order;
        PostgreSQL's planner walked the pending index in time order and probed each event's server
        (~5 ms with 12,000 events of a server without a channel), so it gets a LATERAL subquery per
        server (0.07 ms)."""
        rows = await self.db.fetchall(pending_sql(is_postgres(self.db)), {"now": now, "limit": limit})
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


def pending_sql(postgres: bool) -> str:
    """`AuditStore.pending`'s query for one dialect (the plan test reads it too)."""
    if postgres:
        return ("SELECT e.*, g.audit_channel_id AS channel_id FROM guild_settings AS g CROSS JOIN LATERAL ("
                "SELECT * FROM audit_events AS e WHERE e.guild_id = g.guild_id AND e.posted_at IS NULL"
                " AND e.next_attempt_at <= :now ORDER BY e.next_attempt_at, e.id LIMIT :limit) AS e"
                " WHERE g.audit_channel_id IS NOT NULL ORDER BY e.next_attempt_at, e.id LIMIT :limit")
    return ("SELECT e.*, g.audit_channel_id AS channel_id FROM guild_settings AS g"
            " CROSS JOIN audit_events AS e ON e.guild_id = g.guild_id"
            " WHERE g.audit_channel_id IS NOT NULL AND e.posted_at IS NULL AND e.next_attempt_at <= :now"
            " ORDER BY e.next_attempt_at, e.id LIMIT :limit")
