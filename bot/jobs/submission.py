"""Starting a job at the vendor: queued -> submitting -> running, or uncertain when we cannot tell.

Split from the poller (bot.jobs.poller) so the job loop stays readable: this is the part that must
never pay twice. It keeps the poller's crash-safety rules and writes job rows only under the
poller's lease (directly in a transaction conditioned on it, or through its `JobLease`):
- the in-flight cap and the submit rate window are counted in the same transaction that moves the
  job to `submitting`, so every process on the database shares them;
- `submitting` is committed *before* the vendor is called; a submit whose outcome is unknown makes
  the job `uncertain`, which waits for a late task id (callback) and is never resent;
- a vendor task id is recorded even when our lease expired meanwhile, so a made video is not lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping

from bot.catalog import ProviderName, calls_back
from bot.clock import Clock
from bot.i18n import _
from bot.jobs.finish import Finisher
from bot.jobs.lease import CLEAR_LEASE, JobLease
from bot.jobs.limits import LimitsRegistry
from bot.jobs.models import JobRecord, JobStatus, deadline_for
from bot.jobs.outbox import notice_values
from storage.jobs import JobRepository
from bot.jobs.schedule import PollSchedule
from bot.providers.base import ErrorKind, ProviderClient, ProviderError
from bot.settings import Settings
from storage.database import Database

log = logging.getLogger(__name__)

LOST_SUBMIT_MESSAGE = _("We lost the vendor's answer while submitting and did not resend, to avoid paying "
                        "twice. Nothing was charged; please try again.")
CONFIRMED_NOTICE = _("The video service confirmed your request after all: your video is being made.")


def uncertain_notice(minutes: int) -> str:
    """What a member reads the moment a submit's outcome is unknown: what happened, what comes next."""
    return _("We sent your request to the video service but lost its answer, so we cannot tell yet whether "
             "your video was started. We will not send it again: that could make it, and charge you, twice. "
             "If the service reports the video within {minutes} minutes, it carries on as usual; otherwise "
             "it fails and your credits are released. We will post here either way.", minutes=minutes)

NO_PROVIDER_MESSAGE = _("This video service is no longer configured on the bot.")

CALLBACK_PATH = "/callbacks/kie/{job_id}"
"""Where kie.ai reports a job's completion, under PUBLIC_BASE_URL (served by bot.http_server)."""


def callback_url_for(settings: Settings, job_id: int) -> str | None:
    """The `callBackUrl` to hand kie.ai for this job, or None when no public address is configured."""
    if not settings.public_base_url:
        return None
    return settings.public_base_url.rstrip("/") + CALLBACK_PATH.format(job_id=job_id)


def callback_providers(settings: Settings) -> frozenset[ProviderName]:
    """Vendors that will call back on completion: kie.ai, once the bot has a public address."""
    return frozenset({ProviderName.KIE}) if settings.public_base_url else frozenset()


class Submission:
    """Submits queued jobs within the provider limits, and settles submits whose outcome is unknown."""

    def __init__(self, *, settings: Settings, db: Database, clock: Clock,
                 providers: Mapping[ProviderName, ProviderClient], repository: JobRepository,
                 schedule: PollSchedule, limits: LimitsRegistry, lease: JobLease, finisher: Finisher) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.providers = providers
        self.repository = repository
        self.schedule = schedule
        self.limits = limits
        self.lease = lease
        self.finisher = finisher
        # This process decides a vendor's submits one at a time, in the order the jobs were claimed
        # (oldest first): the database's lock makes the decision safe across processes, this keeps
        # the queue's order within one (an engine with many connections grants its locks in any order).
        self._deciding: defaultdict[ProviderName, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def handle_queued(self, job: JobRecord) -> None:
        """Move a queued job to `submitting` if the provider's limits allow, then submit it; else requeue."""
        provider = self.providers.get(job.provider)
        if provider is None:
            await self.finisher.finish(job, JobStatus.FAILED, error_message=NO_PROVIDER_MESSAGE)
            return
        limits = self.limits.for_provider(job.provider)
        now = self.clock.now()
        if not limits.breaker.allow():
            await self._requeue(job, limits.breaker.retry_at(), "circuit open")
            return
        moved = False
        async with self._deciding[job.provider], self.db.transaction() as conn:
            in_flight = await self.repository.count_in_flight_in(conn, job.provider)
            recent, oldest = await self.repository.recent_submits_in(conn, job.provider, now - limits.window_seconds)
            if in_flight >= limits.max_in_flight:
                started, retry_at, why = False, now + self.schedule.min_interval, "in-flight limit"
            elif recent >= limits.submits_per_window:
                started, retry_at, why = False, (oldest or now) + limits.window_seconds, "submit rate window"
            else:
                started, retry_at, why = True, now, ""
                moved = await self.repository.update_leased_in(conn, job.id, self.lease.owner, JobStatus.QUEUED, {
                    "status": JobStatus.SUBMITTING.value, "submit_attempts": job.submit_attempts + 1,
                    "submitted_at": now, "next_due_at": now,
                })
        if not started:
            limits.breaker.release_probe()
            await self._requeue(job, retry_at, why)
            return
        if not moved:
            limits.breaker.release_probe()
            await self.lease.release(job.id)
            return
        submitting = await self.repository.get(job.id)
        assert submitting is not None
        await self._submit(submitting, provider)

    async def _requeue(self, job: JobRecord, at: float, why: str) -> None:
        at = max(at, self.clock.now() + 0.05)
        log.debug("job %s waits for %s until %.1f", job.id, why, at)
        await self.lease.transition(job, {"next_due_at": at})

    def callback_url(self, job: JobRecord) -> str | None:
        """Where kie should report completion; None when the bot has no public address, or the job's
        kind is never called back (kie's 1080p endpoint): then we poll."""
        if job.provider in callback_providers(self.settings) and calls_back(job.mode):
            return callback_url_for(self.settings, job.id)
        return None

    async def _submit(self, job: JobRecord, provider: ProviderClient) -> None:
        breaker = self.limits.for_provider(job.provider).breaker
        try:
            task_id = await provider.submit(job.spec, callback_url=self.callback_url(job))
        except ProviderError as error:
            await self._submit_failed(job, error)
            return
        except Exception as error:  # an unclassified failure may have reached the vendor: never resend
            log.exception("job %s: submit raised unexpectedly; treating as uncertain", job.id)
            breaker.record_failure()
            await self.mark_uncertain(job, f"submit raised {type(error).__name__}")
            return
        breaker.record_success()
        await self.record_task_id(job, str(task_id), owned=True)

    async def _submit_failed(self, job: JobRecord, error: ProviderError) -> None:
        breaker = self.limits.for_provider(job.provider).breaker
        log.warning("job %s: submit failed (%s)", job.id, error)
        if error.kind is ErrorKind.FINAL:
            breaker.record_success()  # the vendor answered; it is up
            await self.finisher.finish(job, JobStatus.FAILED, error_message=error.user_message)
        elif error.kind is ErrorKind.UNCERTAIN:
            breaker.record_failure()
            await self.mark_uncertain(job, str(error))
        else:
            # Provably nothing reached the vendor: wait and resend, however long the outage, until the
            # job's deadline times it out (hold released, member told). Failing after a fixed number of
            # attempts lost jobs to a few minutes of 503s, told "will be sent again shortly".
            breaker.record_failure()
            now = self.clock.now()
            next_at = now + self.schedule.error_backoff(job.submit_attempts, error.retry_after)
            if job.deadline_at is not None:
                next_at = min(next_at, max(job.deadline_at, now + 0.05))
            await self.lease.transition(job, {"status": JobStatus.QUEUED.value, "error_streak": job.error_streak + 1,
                                         "next_due_at": next_at})

    async def record_task_id(self, job: JobRecord, task_id: str, *, owned: bool) -> bool:
        """The vendor task exists: running from now, first poll from the schedule.

        Tried under our lease first; failing that (our lease expired and another worker marked the
        job uncertain), still recorded for a job in submitting/uncertain, so the task is not lost.
        """
        now = self.clock.now()
        first_poll = await self.schedule.next_poll_at(model_key=job.model_key, mode=job.mode.value,
                                                      submitted_at=now, now=now,
                                                      callback=self.callback_url(job) is not None)
        values = {"status": JobStatus.RUNNING.value, "provider_task_id": task_id, "submitted_at": now,
                  "deadline_at": deadline_for(self.settings, job.model_key, now, job.mode), "next_due_at": first_poll,
                  "error_streak": 0}
        if job.status is JobStatus.UNCERTAIN:  # the member was told we could not tell: settle it
            values.update(notice_values(CONFIRMED_NOTICE, "found", now))
        leased = False
        async with self.db.transaction() as conn:
            if owned:
                leased = await self.repository.update_leased_in(
                    conn, job.id, self.lease.owner, JobStatus.SUBMITTING, {**values, **CLEAR_LEASE})
            recorded = leased or await self.repository.update_unleased_in(
                conn, job.id, (JobStatus.SUBMITTING, JobStatus.UNCERTAIN), values)
        if owned and not leased:
            await self.lease.release(job.id)
        if recorded:
            log.info("job %s: vendor task %s", job.id, task_id)
        else:
            log.warning("job %s: vendor task %s arrived but the job has moved on", job.id, task_id)
        return recorded

    async def mark_uncertain(self, job: JobRecord, why: str) -> None:
        """The submit may have reached the vendor: wait out the grace period for a task id, never resend."""
        now = self.clock.now()
        grace_end = now + self.settings.uncertain_submit_grace_seconds
        log.warning("job %s: submit outcome unknown (%s); waiting for reconciliation, never resending", job.id, why)
        # The member hears at once (not after the grace period) what happened and what comes next: the
        # notice is queued in the same change, so it is posted even if Discord or this process is down now.
        minutes = max(1, round(self.settings.uncertain_submit_grace_seconds / 60))
        await self.lease.transition(job, {"status": JobStatus.UNCERTAIN.value, "deadline_at": grace_end,
                                          "next_due_at": grace_end, **notice_values(uncertain_notice(minutes), "lost", now)})

    async def handle_uncertain(self, job: JobRecord) -> None:
        """Keep waiting until the grace period ends; then fail the job and release the credits."""
        if job.deadline_at is not None and self.clock.now() < job.deadline_at:
            await self.lease.transition(job, {"next_due_at": job.deadline_at})
            return
        await self.finisher.finish(job, JobStatus.FAILED, error_message=LOST_SUBMIT_MESSAGE, from_vendor=False)
