"""`RecordingPublisher`: Discord's side of `bot.publishing.base.Publisher`, in memory.

Records every post and, like Discord with `enforce_nonce`, answers a repeated nonce with the first
message's id, so a test can count "exactly one message per job". Faults are scripted per attempt.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass

from typing import TYPE_CHECKING

from bot.clock import Clock
from bot.jobs.models import JobRecord
from bot.publishing.base import DeliveryError, ResultMessage

if TYPE_CHECKING:
    from bot.jobs.cards import Card

Fault = DeliveryError | str
"""A DeliveryError to raise, or a shorthand: "429", "503" (retryable, nothing posted), "gone" (no
destination accepted it: final), "lost" (the message is posted, then the answer is lost)."""

_SHORTHAND = {
    "429": lambda: DeliveryError("rate limited", retryable=True, retry_after=2.0),
    "503": lambda: DeliveryError("Discord answered 503", retryable=True),
    "gone": lambda: DeliveryError("no destination accepted the result", retryable=False),
}


@dataclass(frozen=True)
class Handover:
    """When a job's result first reached the publisher: on the bot's clock and on the wall clock."""

    job_id: int
    provider: str
    task_id: str | None
    status: str
    sim_at: float
    wall_at: float


class RecordingPublisher:
    """Records posts; `faults` (any job) and `fault_for[job_id]` are consumed one per delivery attempt."""

    def __init__(self, clock: Clock | None = None, first_id: int = 9000) -> None:
        self.clock = clock
        self.messages: dict[int, tuple[int, ResultMessage]] = {}  # message id -> (job id, message)
        self.by_nonce: dict[str, int] = {}
        self.delivered: list[tuple[int, ResultMessage]] = []  # each message posted, in order
        self.handovers: dict[int, Handover] = {}  # job id -> its first delivery attempt
        self.attempts: list[int] = []  # a job id per delivery attempt
        self.audits: list[tuple[int, int, str, str]] = []
        self.notices: list[tuple[int, str, str]] = []  # (job id, text, nonce), a repeated nonce dropped
        self.faults: list[Fault] = []
        self.fault_for: dict[int, list[Fault]] = {}
        self.card_edits_made: list[tuple[int, "Card"]] = []  # (job id, card) per successful edit
        self.cards_gone: set[int] = set()  # card message ids Discord no longer has
        self.card_failures = 0  # the next N card edits raise (retryable)
        self.notice_faults: list[Fault] = []  # consumed one per notice post ("429", "503", "gone", ...)
        self._ids = itertools.count(first_id)

    async def deliver(self, job: JobRecord, message: ResultMessage) -> int:
        self.attempts.append(job.id)
        if job.id not in self.handovers:
            sim_at = self.clock.now() if self.clock is not None else time.time()
            self.handovers[job.id] = Handover(job.id, job.provider.value, job.provider_task_id, job.status.value,
                                              sim_at, time.perf_counter())
        await asyncio.sleep(0)
        planned = self.fault_for.get(job.id) or self.faults
        fault = planned.pop(0) if planned else None
        if isinstance(fault, DeliveryError):
            raise fault
        if fault in _SHORTHAND:
            raise _SHORTHAND[fault]()
        message_id = self.by_nonce.get(message.nonce)
        if message_id is None:
            message_id = next(self._ids)
            self.by_nonce[message.nonce] = message_id
            self.messages[message_id] = (job.id, message)
            self.delivered.append((job.id, message))
        if fault == "lost":
            raise DeliveryError("connection reset after posting", retryable=True)
        return message_id

    async def post_audit(self, guild_id: int, channel_id: int, text: str, nonce: str) -> int:
        self.audits.append((guild_id, channel_id, text, nonce))
        return next(self._ids)

    async def post_notice(self, job: JobRecord, text: str, nonce: str) -> int:
        fault = self.notice_faults.pop(0) if self.notice_faults else None
        if isinstance(fault, DeliveryError):
            raise fault
        if fault in _SHORTHAND:
            raise _SHORTHAND[fault]()
        if nonce not in {n for _, _, n in self.notices}:  # Discord drops a repeated nonce
            self.notices.append((job.id, str(text), nonce))
        return next(self._ids)

    async def edit_card(self, job: JobRecord, channel_id: int, message_id: int, card: "Card") -> bool:
        if self.card_failures:
            self.card_failures -= 1
            raise DeliveryError("Discord is busy", retryable=True)
        if message_id in self.cards_gone:
            return False
        self.card_edits_made.append((job.id, card))
        return True

    def results_for(self, job_id: int) -> list[ResultMessage]:
        return [m for j, m in self.messages.values() if j == job_id]
