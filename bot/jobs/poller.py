"""The poller: the one loop that moves jobs forward (submit, poll, finish, then hand over to delivery).

It exists so that exactly one place decides a job's next step and owns the lease that makes the
step safe. Its collaborators do the wordier parts and change job rows only under that lease
(bot.jobs.lease, `JobLease`): bot.jobs.submission (`Submission`: queued -> submitting -> running,
or uncertain), bot.jobs.finish (`Finisher`: terminal status, settlement and audit) and
bot.jobs.outbox (`Outbox`: result messages and audit events posted to Discord).

Work is claimed with a lease in one statement; every change is one transaction conditioned on
that lease and on the status we saw, so a SIGKILL at any instant, or a second bot process on the
same database, never submits twice, settles twice or posts twice:
- the `submitting` status is committed *before* the vendor is called; finding a claimed row still
  in `submitting` means its worker died mid-submit, so it becomes `uncertain` and is never resent;
- the terminal status and the credit settlement commit together; the ledger's unique indexes
  refuse a second settlement anyway;
- a result is marked delivered only once Discord returned a message id, and a repeat post after a
  crash carries the same nonce, which Discord deduplicates.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping

from bot import metrics
from bot.audit import AuditService
from bot.catalog import ProviderName
from bot.clock import Clock, sleep_or_wake
from bot.i18n import _
from bot.jobs.finish import Finisher
from bot.jobs.heartbeat import Heartbeat
from bot.jobs.lease import JobLease
from bot.jobs.limits import LimitsRegistry, LoopLagLimiter
from bot.jobs.models import JobRecord, JobStatus
from bot.jobs.outbox import Outbox
from storage.jobs import JobRepository
from bot.jobs.schedule import PollSchedule
from bot.jobs.submission import NO_PROVIDER_MESSAGE, Submission, callback_providers
from bot.providers.base import NO_LINK_MESSAGE, ErrorKind, ProviderClient, ProviderError, TaskState
from bot.publishing.base import Publisher
from bot.quota.service import QuotaService
from bot.settings import Settings
from storage.database import JOBS_CHANNEL, Database, background_priority, mark_background

log = logging.getLogger(__name__)
DEADLINE_FALLBACK_NOTE = _("The higher-resolution file did not come before the time limit, so this is the 720p "
                           "video; its surcharge was not charged.")

TIMED_OUT_MESSAGE = _("Took longer than the model's time limit.")
MAX_ROUNDS_PER_RUN = 20
IDLE_SLEEP_CAP = 5.0
STOP_GRACE_SECONDS = 5.0
BUSY_FLOOR_SECONDS = 0.25
GAUGE_REFRESH_SECONDS = 10.0


class Poller:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        clock: Clock,
        providers: Mapping[ProviderName, ProviderClient],
        quota: QuotaService,
        publisher: Publisher,
        audit_service: AuditService | None = None,
        repository: JobRepository | None = None,
        schedule: PollSchedule | None = None,
        limits: LimitsRegistry | None = None,
        instance_id: str | None = None,
        batch_size: int = 50,
        max_concurrency: int | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.providers = providers
        self.quota = quota
        self.repository = repository or JobRepository(db)
        self.schedule = schedule or PollSchedule(
            self.repository, clock, min_interval=settings.poll_min_interval_seconds,
            max_interval=settings.poll_max_interval_seconds, fixed_interval=settings.poll_interval_seconds,
            callback_providers=callback_providers(settings))
        self.limits = limits or LimitsRegistry(
            clock=clock, max_in_flight=settings.provider_max_in_flight,
            submits_per_window={ProviderName.KIE: settings.kie_submits_per_10s,
                                ProviderName.KKIAI: settings.kkiai_submits_per_10s,
                                ProviderName.KLING: settings.kling_submits_per_10s})
        self.owner = instance_id or f"poller-{uuid.uuid4().hex[:12]}"
        self.lease = JobLease(self.repository, self.owner)
        self.heartbeat = Heartbeat(self.repository, clock, self.owner)
        self.outbox = Outbox(publisher=publisher, audit_service=audit_service, schedule=self.schedule, clock=clock,
                             lease=self.lease)
        self.finisher = Finisher(db=db, clock=clock, repository=self.repository, lease=self.lease, quota=quota,
                                 audit=audit_service or AuditService(db, clock), outbox=self.outbox)
        self.submission = Submission(settings=settings, db=db, clock=clock, providers=providers,
                                     repository=self.repository, schedule=self.schedule, limits=self.limits,
                                     lease=self.lease, finisher=self.finisher)
        self.batch_size = batch_size
        self.max_concurrency = max_concurrency or settings.poller_concurrency
        self.concurrency = LoopLagLimiter(self.max_concurrency)
        self._wake = asyncio.Event()
        self._stopping = False
        self._main: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._gauges_at = float("-inf")

    @property
    def publisher(self) -> Publisher:
        return self.outbox.publisher

    @publisher.setter
    def publisher(self, publisher: Publisher) -> None:
        self.outbox.publisher = publisher

    @property
    def audit_service(self) -> AuditService | None:
        """Read and set through to the outbox, so a service wired in after construction is used."""
        return self.outbox.audit_service

    @audit_service.setter
    def audit_service(self, service: AuditService | None) -> None:
        self.outbox.audit_service = service

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._main is None or self._main.done():
            self._stopping = False
            self._main = asyncio.create_task(self._run(), name=f"poller-{self.owner}")

    async def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop claiming, give jobs in hand `grace` seconds, then cancel the rest.

        A supervisor (Docker: 10 s) kills a process that lingers, so waiting out a 60 s submit would
        only turn a clean stop into a SIGKILL. Cancelling is as safe as being killed: a cancelled
        submit stays `submitting` and is reconciled as uncertain; an unfinished poll or delivery is
        simply done again after the lease expires.
        """
        self._stopping = True
        self._wake.set()
        if self._main is not None:
            await asyncio.gather(self._main, return_exceptions=True)
            self._main = None
        if self._tasks:
            _, unfinished = await asyncio.wait(set(self._tasks), timeout=grace)
            for task in unfinished:
                task.cancel()
            if unfinished:
                log.warning("stopped with %s job(s) still in hand; they resume after restart", len(unfinished))
                await asyncio.gather(*unfinished, return_exceptions=True)
        await self.heartbeat.stop()

    def wake(self) -> None:
        """Look for due work now (a job was created, cancelled, or a callback arrived)."""
        self._wake.set()

    async def run_once(self) -> int:
        """Process all currently due work and wait for it; returns the number of jobs handled."""
        handled = 0
        semaphore = asyncio.Semaphore(self.max_concurrency)

        async def bounded(job: JobRecord) -> None:
            async with semaphore:
                await self.process(job)

        for _round in range(MAX_ROUNDS_PER_RUN):
            jobs = await self.repository.claim_due(self.owner, self.clock.now(), self.settings.lease_seconds,
                                                   self.batch_size, self.heartbeat.stale_before())
            if not jobs:
                break
            await asyncio.gather(*(bounded(job) for job in jobs))
            handled += len(jobs)
        await self._housekeeping(force=True)
        return handled

    async def _run(self) -> None:
        mark_background()  # this task and the job tasks it starts yield the database to members
        await self._announce()
        await self._catch_up_on_lost_callbacks()
        while not self._stopping:
            # Cleared before looking for work, so a wake() that arrives while we look is not lost.
            self._wake.clear()
            claimed = 0
            try:
                claimed = await self._dispatch()
                await self._housekeeping()
            except Exception:
                log.exception("poller tick failed")
            if self._stopping:
                break
            await self._idle(claimed)

    async def _announce(self) -> None:
        """Beat before the first claim (a restarted process is alive at once, its predecessor stale), and
        listen for jobs other processes make due (PostgreSQL NOTIFY; the timer stays the safety net)."""
        try:
            await self.heartbeat.start()
        except Exception:
            log.exception("could not start the heartbeat; leases held here are freed only when they expire")
        try:
            await self.db.subscribe(JOBS_CHANNEL, self.wake)
        except Exception:
            log.exception("could not listen for new jobs; relying on the poll timer")

    async def _catch_up_on_lost_callbacks(self) -> None:
        """Jobs that expect a completion callback are polled only sparsely; a callback sent while this
        process was down (crash, deploy) is lost, so check each of them once at start."""
        if not self.settings.public_base_url or ProviderName.KIE not in self.providers:
            return
        try:
            count = await self.repository.make_running_due_now(ProviderName.KIE, self.clock.now())
        except Exception:
            log.exception("could not schedule the catch-up check of running kie jobs")
            return
        if count:
            log.info("checking %s running kie job(s) whose callback may have been missed", count)

    async def _dispatch(self) -> int:
        """Claim as much due work as there is room for and start it in the background."""
        room = await self.concurrency.measure() - len(self._tasks)
        metrics.POLLER_CONCURRENCY.set(self.concurrency.limit)
        if room <= 0:
            return 0
        jobs = await self.repository.claim_due(self.owner, self.clock.now(), self.settings.lease_seconds,
                                               min(room, self.batch_size), self.heartbeat.stale_before())
        for job in jobs:
            task = asyncio.create_task(self.process(job), name=f"job-{job.id}")
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
        return len(jobs)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def _idle(self, claimed: int) -> None:
        earliest = await self.repository.earliest_due()
        now = self.clock.now()
        delay = IDLE_SLEEP_CAP if earliest is None else min(IDLE_SLEEP_CAP, max(0.0, earliest - now))
        if claimed == 0 or len(self._tasks) >= self.concurrency.limit:
            # Due rows we could not claim are leased (by us or another process): do not spin.
            delay = max(delay, BUSY_FLOOR_SECONDS)
        if delay <= 0 or self._stopping:
            return
        await sleep_or_wake(self.clock, self._wake, delay)

    async def _housekeeping(self, force: bool = False) -> None:
        await self.outbox.post_notices()
        await self.outbox.post_audit_events()
        now = self.clock.now()
        if force or now - self._gauges_at >= GAUGE_REFRESH_SECONDS:
            self._gauges_at = now
            depths = await self.repository.queue_depths()
            for provider in ProviderName:
                metrics.QUEUE_DEPTH.labels(provider=provider.value).set(depths.get(provider.value, 0))
        metrics.POLLER_HEARTBEAT.set(now)

    # --- one job -----------------------------------------------------------------------------------
    async def process(self, job: JobRecord) -> None:
        """Do the work a claimed job needs; never raises (one bad job must not stop the loop)."""
        try:
            if job.is_terminal:
                await self.outbox.deliver_or_clear(job)
            elif job.status is JobStatus.SUBMITTING:
                await self.submission.mark_uncertain(job, "its worker stopped mid-submit")
            elif job.status is JobStatus.UNCERTAIN:
                await self.submission.handle_uncertain(job)
            elif job.deadline_at is not None and self.clock.now() >= job.deadline_at:
                await self._time_out(job)
            elif job.status is JobStatus.QUEUED:
                await self.submission.handle_queued(job)
            elif job.status is JobStatus.RUNNING:
                await self._handle_running(job)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("job %s: unexpected error while handling status %s", job.id, job.status.value)
            await self._defer_after_error(job)

    async def _defer_after_error(self, job: JobRecord) -> None:
        streak = job.error_streak + 1
        try:
            await self.lease.transition(job, {"error_streak": streak,
                                         "next_due_at": self.clock.now() + self.schedule.error_backoff(streak)})
        except Exception:
            log.exception("job %s: could not defer after an error", job.id)

    async def on_callback(self, job_id: int, task_id: str | None) -> bool:
        """A vendor callback for a job: record a lost task id, or check a running job right now."""
        with background_priority():  # vendor traffic: members' commands go first on the database
            return await self._on_callback(job_id, task_id)

    async def _on_callback(self, job_id: int, task_id: str | None) -> bool:
        job = await self.repository.get(job_id)
        if job is None:
            return False
        if job.status in (JobStatus.SUBMITTING, JobStatus.UNCERTAIN) and task_id:
            if await self.submission.record_task_id(job, task_id, owned=False):
                # The callback usually means "done": confirm now rather than at the first poll.
                await self.repository.make_due_now(job_id, self.clock.now(), [JobStatus.RUNNING])
                self.wake()
                return True
            # A fast vendor calls back before its submit answer is read; that answer may have recorded
            # the task in between, and the job is now running with it: the callback still counts.
            job = await self.repository.get(job_id)
            if job is None:
                return False
        acted = False
        if job.status is JobStatus.RUNNING:
            if task_id and job.provider_task_id and task_id != job.provider_task_id:
                log.warning("job %s: callback names task %s, job has %s; ignored", job_id, task_id,
                            job.provider_task_id)
                return False
            acted = await self.repository.make_due_now(job_id, self.clock.now(), [JobStatus.RUNNING])
        if acted:
            self.wake()
        return acted

    # --- running -> terminal -----------------------------------------------------------------------
    async def _handle_running(self, job: JobRecord) -> None:
        provider = self.providers.get(job.provider)
        if provider is None or not job.provider_task_id:
            await self.finisher.finish(job, JobStatus.FAILED, error_message=NO_PROVIDER_MESSAGE, from_vendor=False)
            return
        breaker = self.limits.for_provider(job.provider).breaker
        if not breaker.allow():
            await self.lease.transition(job, {"next_due_at": max(breaker.retry_at(), self.clock.now() + 0.05)})
            return
        try:
            result = await provider.poll(job.provider_task_id, job.spec)
        except ProviderError as error:
            if error.kind is ErrorKind.FINAL:
                breaker.record_success()
                await self.finisher.finish(job, JobStatus.FAILED, error_message=error.user_message)
            else:
                breaker.record_failure()
                await self._poll_failed(job, error, error.retry_after)
            return
        except Exception as error:
            log.exception("job %s: poll raised unexpectedly", job.id)
            breaker.record_failure()
            await self._poll_failed(job, error, None)
            return
        breaker.record_success()
        polls = job.poll_count + 1
        if result.state is TaskState.RUNNING:
            now = self.clock.now()
            next_at = await self.schedule.next_poll_at(
                model_key=job.model_key, mode=job.mode.value, submitted_at=job.submitted_at or now, now=now,
                progress=result.progress, previous_progress=job.progress, finishing=result.finishing,
                callback=self.submission.callback_url(job) is not None)
            if job.deadline_at is not None:
                next_at = min(next_at, max(job.deadline_at, now + 0.05))
            values = {"poll_count": polls, "raw_status": result.raw_status[:100], "error_streak": 0,
                      "next_due_at": next_at, "progress": result.progress}
            if result.video_url:  # a lesser result already exists (kie's 720p while 1080p is made)
                values["video_url"] = result.video_url
            await self.lease.transition(job, values)
        elif result.state is TaskState.SUCCEEDED and result.video_url:
            await self.finisher.finish(job, JobStatus.SUCCEEDED, video_url=result.video_url, poll_count=polls,
                               raw_status=result.raw_status, vendor_seconds=result.vendor_seconds,
                               note=result.note, uncharged=result.uncharged)
        else:
            reason = result.error_message if result.state is TaskState.FAILED else NO_LINK_MESSAGE
            await self.finisher.finish(job, JobStatus.FAILED, error_message=reason, poll_count=polls,
                               raw_status=result.raw_status, vendor_seconds=result.vendor_seconds)

    async def _poll_failed(self, job: JobRecord, error: Exception, retry_after: float | None) -> None:
        streak = job.error_streak + 1
        log.warning("job %s: poll failed (%s), streak %s", job.id, error, streak)
        await self.lease.transition(job, {"error_streak": streak, "poll_count": job.poll_count + 1,
                                     "next_due_at": self.clock.now() + self.schedule.error_backoff(streak, retry_after)})

    async def _time_out(self, job: JobRecord) -> None:
        if job.status is JobStatus.RUNNING and job.video_url:
            # The vendor finished a lesser version (720p while 1080p was pending): deliver that, do not
            # throw away a video the vendor made and billed.
            log.warning("job %s: past its deadline before the upgrade; delivering the video we have", job.id)
            await self.finisher.finish(job, JobStatus.SUCCEEDED, video_url=job.video_url, raw_status="deadline_fallback",
                                       note=DEADLINE_FALLBACK_NOTE, uncharged=tuple(job.spec.pass_cost_keys))
            return
        log.warning("job %s: past its deadline in status %s; timing out", job.id, job.status.value)
        await self.finisher.finish(job, JobStatus.TIMED_OUT, error_message=TIMED_OUT_MESSAGE,
                           from_vendor=False)
