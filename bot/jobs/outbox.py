"""The outbox: finished jobs' results, notices about jobs in progress and pending audit events, posted
to Discord with retries.

Split from the poller (bot.jobs.poller) so the loop that moves jobs forward stays readable: this is
the part that talks to the publisher and decides what to do when Discord says no. It never writes a
job row itself; every change goes through the poller's `JobLease`, so the same
crash-safety rules hold: a result is marked delivered only once Discord returned a message id, and a
repeat post after a crash carries the same nonce, which Discord deduplicates.
"""

from __future__ import annotations

import logging
from typing import Any

from bot import metrics
from bot.audit import AuditService, quote
from bot.clock import Clock
from bot.i18n import from_json, to_json, translate
from bot.jobs.lease import JobLease
from bot.jobs.models import JobRecord
from bot.jobs.schedule import PollSchedule
from bot.publishing.base import DeliveryError, Publisher, audit_nonce, notice_nonce
from bot.publishing.render import render_result

log = logging.getLogger(__name__)

MAX_DELIVERY_ATTEMPTS = 25
MAX_FINAL_DELIVERY_ATTEMPTS = 3
AUDIT_BATCH = 20
NOTICE_BATCH = 20
MAX_NOTICE_ATTEMPTS = 12


def notice_values(text: Any, key: str, now: float) -> dict[str, Any]:
    """The columns that queue a notice on its job, written in the same change as the status it explains:
    posted by `Outbox.post_notices` (at once, retried while Discord is down, after a restart too)."""
    return {"notice_key": key, "notice_text": to_json(text), "notice_due_at": now, "notice_attempts": 0}


class Outbox:
    """Posts results and audit events; `publisher` and `audit_service` may be swapped after start-up."""

    def __init__(self, *, publisher: Publisher, audit_service: AuditService | None, schedule: PollSchedule, clock: Clock,
                 lease: JobLease) -> None:
        self.publisher = publisher
        self.audit_service = audit_service
        self.schedule = schedule
        self.clock = clock
        self.lease = lease

    async def post_notices(self) -> None:
        """Post the notices queued on jobs (`notice_values`), in each reader's language; a failed post is
        retried with backoff, a repeat after a crash carries the same nonce (Discord drops it). Never
        lets an error out: a notice never holds a job up."""
        repository = self.lease.repository
        now = self.clock.now()
        try:
            due = await repository.due_notices(now, NOTICE_BATCH)
        except Exception:
            log.exception("could not read due notices")
            return
        for job, key, stored, attempts in due:
            text = from_json(stored)
            try:
                if text is not None:
                    await self.publisher.post_notice(job, translate(text, job.reader_locale),
                                                     notice_nonce(job.id, key))
                await repository.notice_done(job.id, key)
            except Exception as error:  # noqa: BLE001 - DeliveryError or a database hiccup: retried
                retryable = not isinstance(error, DeliveryError) or error.retryable
                if not retryable or attempts + 1 >= MAX_NOTICE_ATTEMPTS:
                    log.warning("job %s: giving up on the %s notice (%s)", job.id, key, error)
                    await self._quietly(repository.notice_done(job.id, key))
                    continue
                retry_after = error.retry_after if isinstance(error, DeliveryError) else None
                retry_in = self.schedule.error_backoff(attempts + 1, retry_after)
                log.warning("job %s: %s notice not posted (%s); retry in %.0fs", job.id, key, error, retry_in)
                await self._quietly(repository.notice_failed(job.id, key, now + retry_in))

    @staticmethod
    async def _quietly(write: Any) -> None:
        try:
            await write
        except Exception:
            log.exception("could not record a notice's outcome; it is tried again")

    async def deliver_or_clear(self, job: JobRecord) -> None:
        """Post a terminal job's result, or just clear its due time when it is already delivered."""
        if job.delivery_state.value == "delivered":
            await self.lease.transition(job, {"next_due_at": None})
            return
        message = render_result(job)
        try:
            message_id = await self.publisher.deliver(job, message)
        except DeliveryError as error:
            await self._delivery_failed(job, error, error.retryable, error.retry_after)
            return
        except Exception as error:
            log.exception("job %s: publisher raised unexpectedly", job.id)
            await self._delivery_failed(job, error, True, None)
            return
        if not message_id:
            await self._delivery_failed(job, RuntimeError("no message id came back"), True, None)
            return
        now = self.clock.now()
        recorded = await self.lease.transition(job, {"delivery_state": "delivered", "result_message_id": int(message_id),
                                                "delivered_at": now, "next_due_at": None})
        metrics.DELIVERIES.labels(outcome="delivered").inc()
        if recorded and job.vendor_done_at is not None:
            metrics.NOTIFY_LATENCY.observe(max(0.0, now - job.vendor_done_at))
        log.info("job %s: result delivered as message %s", job.id, message_id)

    async def _delivery_failed(self, job: JobRecord, error: Exception, retryable: bool,
                               retry_after: float | None) -> None:
        attempts = job.delivery_attempts + 1
        limit = MAX_DELIVERY_ATTEMPTS if retryable else MAX_FINAL_DELIVERY_ATTEMPTS
        metrics.DELIVERIES.labels(outcome="retry" if attempts < limit else "failed").inc()
        if attempts >= limit:
            log.error("job %s: giving up delivering after %s attempts (%s); result stays pending", job.id,
                      attempts, error)
            next_at = None
            await self._tell_moderators(job, error)
        else:
            delay = self.schedule.error_backoff(attempts, retry_after) if retryable else 300.0
            next_at = self.clock.now() + delay
            log.warning("job %s: delivery failed (%s); retry in %.1fs", job.id, error, delay)
        await self.lease.transition(job, {"delivery_attempts": attempts, "next_due_at": next_at})

    async def _tell_moderators(self, job: JobRecord, error: Exception) -> None:
        """The thread, the channel and a DM all refused: the audit channel is the one place left where
        someone can act (fix the bot's permissions, pass the link on). Never lets an error out."""
        if self.audit_service is None:
            return
        outcome = f"its video: {job.video_url}" if job.video_url else f"its outcome ({job.status.value})"
        try:
            await self.audit_service.record(
                guild_id=job.guild_id, kind="delivery_failed", target_id=job.user_id, job_id=job.id,
                text=(f"Could not post job #{job.id} of <@{job.user_id}> in <#{job.thread_id or job.channel_id}> "
                      f"({quote(str(error))}); check the bot's permissions there. The member can still see "
                      f"{outcome} with /job id:{job.id}."))
        except Exception:
            log.exception("job %s: could not record the failed delivery for moderators", job.id)

    async def post_audit_events(self) -> None:
        """Post pending audit events to their servers' audit channels (never lets an error out)."""
        service = self.audit_service
        if service is None:
            return
        try:
            events = await service.pending(limit=AUDIT_BATCH, now=self.clock.now())
        except Exception:
            log.exception("could not read pending audit events")
            return
        for event in events:
            if event.channel_id is None:  # `pending` returns only servers with an audit channel
                continue
            try:
                message_id = await self.publisher.post_audit(event.guild_id, event.channel_id, event.text,
                                                             audit_nonce(event.id))
                await service.mark_posted(event.id, message_id, now=self.clock.now())
            except DeliveryError as error:
                retry_in = self.schedule.error_backoff(event.attempts + 1, error.retry_after)
                log.warning("audit event %s: post failed (%s); retry in %.0fs", event.id, error, retry_in)
                await service.mark_failed(event.id, now=self.clock.now(), retry_in=retry_in)
            except Exception:
                log.exception("audit event %s: could not post", event.id)

