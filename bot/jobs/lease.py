"""`JobLease`: the poller's lease-conditioned change of a claimed job row, shared with its helpers.

A worker changes a claimed job only on the condition that it still holds the lease and the row still
has the status it saw; otherwise another worker (or a moderator's cancel) moved it on, and the
change is dropped. The poller owns one `JobLease`; `Submission`, `Outbox` and `Finisher` write
through it, so the rule is kept in one place.
"""

from __future__ import annotations

import logging
from typing import Any

from bot.jobs.models import JobRecord
from storage.jobs import JobRepository

log = logging.getLogger(__name__)

CLEAR_LEASE: dict[str, Any] = {"lease_owner": None, "lease_until": None}
"""Column values that give a job's lease back; merged into every change that ends our turn."""


class JobLease:
    """The lease one poller (`owner`) holds on the jobs it claimed."""

    def __init__(self, repository: JobRepository, owner: str) -> None:
        self.repository = repository
        self.owner = owner

    async def transition(self, job: JobRecord, values: dict[str, Any], *, keep_lease: bool = False) -> bool:
        """One lease-conditioned change; False (and the lease given back) when the row moved on without us."""
        update = dict(values) if keep_lease else {**values, **CLEAR_LEASE}
        changed = await self.repository.update_leased(job.id, self.owner, job.status, update)
        if not changed:
            log.info("job %s changed under us (was %s); leaving it", job.id, job.status.value)
            await self.release(job.id)
        return changed

    async def release(self, job_id: int) -> None:
        """Give the lease back without changing the row (a conditioned write found it moved on)."""
        await self.repository.release_lease(job_id, self.owner)
