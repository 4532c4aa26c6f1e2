"""`Finisher`: a job's last step, from running (or queued, or uncertain) to a terminal status.

The terminal status, the credit settlement and the audit line commit in one transaction conditioned
on the lease, so a job is settled exactly once however often a worker dies; the result is then
handed to the outbox at once, so the member hears without waiting for the next poller round.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from bot import metrics
from bot.audit import AuditService
from bot.clock import Clock
from bot.i18n import to_json
from bot.jobs.lease import JobLease
from bot.jobs.models import JobRecord, JobStatus
from bot.jobs.outbox import Outbox
from storage.jobs import JobRepository
from bot.quota.service import QuotaService
from storage.database import Database

log = logging.getLogger(__name__)


class Finisher:
    """Ends claimed jobs: status + settlement + audit in one transaction, then delivery."""

    def __init__(self, *, db: Database, clock: Clock, repository: JobRepository, lease: JobLease, quota: QuotaService,
                 audit: AuditService, outbox: Outbox) -> None:
        self.db = db
        self.clock = clock
        self.repository = repository
        self.lease = lease
        self.quota = quota
        self.audit = audit
        self.outbox = outbox

    async def finish(self, job: JobRecord, status: JobStatus, *, video_url: str | None = None,
                     error_message: str | None = None, poll_count: int | None = None,
                     raw_status: str | None = None, from_vendor: bool = True,
                     vendor_seconds: float | None = None, note: str | None = None,
                     uncharged: Sequence[str] = ()) -> None:
        """Terminal status + settlement + audit in one transaction, then deliver right away.
        `vendor_done_at` (the schedule learns from it): submit + the vendor's own duration, else now.
        A success with less than was ordered (`uncharged`: the cost keys it did not earn, `note`: what
        the member reads about it) charges what was delivered at today's prices, never above the hold."""
        now = self.clock.now()
        values: dict[str, Any] = {"status": status.value, "finished_at": now, "next_due_at": now,
                                  "video_url": video_url, "error_message": error_message or note,
                                  "error_text": to_json(error_message or note)}
        charged = job.cost
        if uncharged and status is JobStatus.SUCCEEDED:
            earned = [key for key in job.spec.cost_keys if key not in uncharged]
            charged = min(job.cost, await self.quota.price(job.guild_id, earned))
            values["cost"] = charged  # the job's row says what it cost; the hold keeps what was reserved
        if from_vendor and job.status is JobStatus.RUNNING:
            submitted = job.submitted_at
            values["vendor_done_at"] = now if vendor_seconds is None or submitted is None else (
                min(now, submitted + vendor_seconds))
        if poll_count is not None:
            values["poll_count"] = poll_count
        if raw_status is not None:
            values["raw_status"] = raw_status[:100]
        success = status is JobStatus.SUCCEEDED
        async with self.db.transaction() as conn:
            changed = await self.repository.update_leased_in(conn, job.id, self.lease.owner, job.status, values)
            if changed:
                await self.quota.settle_in(conn, job_id=job.id, charge=success, now=now,
                                           amount=charged if charged != job.cost else None)
                await self.audit.record(
                    conn=conn, guild_id=job.guild_id, kind=f"job_{status.value}", actor_id=None,
                    target_id=job.user_id, job_id=job.id, now=now,
                    text=audit_outcome(replace(job, cost=charged), status, video_url,
                                       error_message or note))
                finished = await self.repository.get_in(conn, job.id)
        if not changed:
            await self.lease.release(job.id)
            return
        metrics.JOBS_FINISHED.labels(family=job.family.value, outcome=status.value).inc()
        if success:
            metrics.CREDITS_SPENT.labels(family=job.family.value).inc(charged)
        log.info("job %s: %s", job.id, status.value)
        assert finished is not None
        await self.outbox.deliver_or_clear(finished)


def audit_outcome(job: JobRecord, status: JobStatus, video_url: str | None, error_message: str | None) -> str:
    """The audit line for a finished job: who, what, where, cost, outcome with the link or the reason."""
    where = f"<#{job.thread_id or job.channel_id}>"
    head = f"Job #{job.id} of <@{job.user_id}> ({job.model_key}) in {where} {status.value.replace('_', ' ')}"
    if status is JobStatus.SUCCEEDED:
        note = f" ({error_message[:200]})" if error_message else ""
        return f"{head}, {job.cost} credits charged: {video_url}{note}"
    reason = f": {error_message[:200]}" if error_message else ""
    return f"{head}{reason}; {job.cost} credits released."
