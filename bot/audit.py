"""The audit trail: who did what, kept in `audit_events`, which doubles as an outbox.

`AuditService.record` is the one way to write an event: given the caller's connection, in the same
transaction as the change it describes, so the trail cannot miss a change or describe one that was
rolled back; without one, in a transaction of its own. A loop elsewhere posts pending events to
the server's audit channel (`AuditService.pending` / `mark_posted` / `mark_failed`). Texts name
people as `<@id>` only and the sender uses AllowedMentions.none(); `quote` makes member-written text
(a prompt, a ban reason) safe to embed.
"""

from __future__ import annotations

import re
from bot.clock import Clock
from storage.audit import AuditEvent, AuditStore
from storage.database import Connection, Database

__all__ = ["AuditEvent", "AuditService", "quote"]

_MENTION_LIKE = re.compile(r"@(everyone|here)|<(@[!&]?|#)(\d+)>", re.IGNORECASE)
_ZWSP = "\u200b"


def quote(text: str, limit: int = 200) -> str:
    """Member-written text made inert for an audit message: one line, no mentions, no code fences."""
    flat = " ".join(text.split())
    if len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    flat = flat.replace("`", "'")
    # A zero-width space after "@" / "<" keeps the text readable but stops Discord parsing a mention.
    flat = _MENTION_LIKE.sub(lambda m: m.group(0).replace("@", "@" + _ZWSP).replace("<", "<" + _ZWSP), flat)
    return flat


class AuditService:
    """Writes audit events (the one way) and answers the outbox queries of the poster loop."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self.db = db
        self.clock = clock
        self._store = AuditStore(db)

    async def record(
        self,
        *,
        guild_id: int,
        kind: str,
        text: str,
        actor_id: int | None = None,
        target_id: int | None = None,
        job_id: int | None = None,
        conn: Connection | None = None,
        now: float | None = None,
    ) -> int:
        """Record an event in `conn`'s transaction (it commits or rolls back with the change it describes),
        or in a transaction of its own when it goes with no other write; returns its id."""
        at = self.clock.now() if now is None else now
        if conn is not None:
            return await self._store.add(conn, guild_id=guild_id, kind=kind, text=text, actor_id=actor_id,
                                         target_id=target_id, job_id=job_id, now=at)
        async with self.db.transaction() as own:
            return await self._store.add(own, guild_id=guild_id, kind=kind, text=text, actor_id=actor_id,
                                         target_id=target_id, job_id=job_id, now=at)

    async def pending(self, now: float, limit: int = 20) -> list[AuditEvent]:
        """Unposted events that are due, for servers that have an audit channel, oldest first."""
        return await self._store.pending(now, limit)

    async def mark_posted(self, event_id: int, message_id: int, now: float) -> bool:
        """Record the posted message; False if it was already marked (never post twice)."""
        return await self._store.mark_posted(event_id, message_id, now)

    async def mark_failed(self, event_id: int, now: float, retry_in: float) -> None:
        """Count a failed post and push the next try back by `retry_in` seconds."""
        await self._store.mark_failed(event_id, now, retry_in)

    async def recent(self, guild_id: int, limit: int = 20) -> list[AuditEvent]:
        """The server's latest events, newest first."""
        return await self._store.recent(guild_id, limit)
