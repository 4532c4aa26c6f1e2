"""What the poller hands to Discord, and what it needs back: the `Publisher` protocol.

Discord-agnostic on purpose: the poller and its tests never import discord. The only
implementation that talks to Discord is `bot/publishing/discord_publisher.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bot.jobs.models import JobRecord, JobStatus

if TYPE_CHECKING:
    from bot.jobs.cards import Button, Card

NONCE_MAX_CHARS = 25  # Discord's limit for a message nonce


def job_nonce(job_id: int) -> str:
    """A per-job nonce, so a repeat post after a crash is deduplicated by Discord (enforce_nonce)."""
    nonce = f"fc-job-{job_id}"
    if len(nonce) > NONCE_MAX_CHARS:  # ids this large cannot occur in SQLite's 63-bit range
        raise ValueError("job id too long for a nonce")
    return nonce


def audit_nonce(event_id: int) -> str:
    return f"fc-audit-{event_id}"[:NONCE_MAX_CHARS]


def notice_nonce(job_id: int, key: str) -> str:
    """One nonce per (job, notice): a notice repeated after a crash is deduplicated by Discord."""
    return f"fc-n{job_id}-{key}"[:NONCE_MAX_CHARS]


@dataclass(frozen=True)
class ResultMessage:
    """A job's result as plain data.

    `content` already mentions the requester; the publisher must send it with AllowedMentions that
    allow only `mention_user_id`, so nothing a member typed can ping anyone.
    """

    job_id: int
    outcome: JobStatus  # one of TERMINAL_STATUSES
    content: str
    mention_user_id: int
    nonce: str
    video_url: str | None = None
    buttons: tuple["Button", ...] = ()  # persistent buttons under the result (Again, Remix, ...)


class DeliveryError(Exception):
    """A result or audit post that did not happen; `retryable` False means retrying cannot help."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Publisher(Protocol):
    """Everything the job engine asks of Discord; every publisher implements all of it (nothing is probed)."""

    async def deliver(self, job: JobRecord, message: ResultMessage) -> int:
        """Post the result (job thread -> channel -> DM) and return the message id; raise DeliveryError."""

    async def post_audit(self, guild_id: int, channel_id: int, text: str, nonce: str) -> int:
        """Post one audit line to a server's audit channel and return the message id; raise DeliveryError."""

    async def post_notice(self, job: JobRecord, text: str, nonce: str) -> int:
        """Tell the member something about a job still in progress (its thread, else its channel), pinging
        nobody; return the message id; raise DeliveryError. Never names the job as `job #<id>`: that
        marks its result (a retried result looks for it)."""

    async def edit_card(self, job: JobRecord, channel_id: int, message_id: int, card: "Card") -> bool:
        """Edit the job's card; False when it no longer exists (never re-made). Raises on a retryable failure."""
