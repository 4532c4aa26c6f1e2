"""`JobService`: what the cogs call to validate, check, create, find and cancel jobs.

The job row, its credit hold and its audit event are written in one transaction before any vendor
is called; the poller (woken here) does everything after that.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from bot import metrics
from bot.audit import AuditService, quote
from bot.catalog import ProviderName
from bot.clock import Clock
from bot.errors import Refusal
from bot.i18n import _
from bot.jobs.models import ACTIVE_STATUSES, JobRecord, JobStatus, deadline_for
from storage.jobs import JobRepository
from bot.moderation.policy import PolicyService
from bot.providers.base import ProviderClient
from bot.quota.service import QuotaService
from bot.settings import Settings
from bot.validation import GenerationRequest, JobSpec, validate_request
from storage.cards import CardStore
from storage.database import Database, DuplicateKey
from storage.snapshot import MemberSnapshot, read_snapshot

log = logging.getLogger(__name__)
# Stored as the job's reason; a sentence without parameters, so it is translated by its message id.
CANCELLED_MESSAGE = _("Cancelled by a moderator.")
CANCELLED_BY_REQUESTER = _("Cancelled by its requester.")

MAX_LIST_LIMIT = 50


@dataclass(frozen=True)
class Requester:
    """Who asked, and where; plain ids so nothing here depends on Discord objects."""

    guild_id: int
    channel_id: int
    user_id: int
    role_ids: tuple[int, ...] = ()
    parent_channel_id: int | None = None  # a thread's parent, for the channel allowlist
    display_name: str = ""
    locale: str | None = None  # the member's Discord locale: their job's public card and result use it
    guild_locale: str | None = None  # the server's, when the member's is unknown


@dataclass(frozen=True)
class JobOrigin:
    """Where a job came from beyond the member: the job whose button made it, and the click."""

    parent_job_id: int | None = None
    follow_up: str | None = None
    request_key: str | None = None
    thread_id: int | None = None  # an upscale is delivered in its source job's thread


class JobService:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        clock: Clock,
        providers: Mapping[ProviderName, ProviderClient],
        quota: QuotaService,
        policy: PolicyService,
        repository: JobRepository | None = None,
        audit: AuditService | None = None,
        wake_poller: Callable[[], None] | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.clock = clock
        self.providers = providers
        self.quota = quota
        self.policy = policy
        self.repository = repository or JobRepository(db)
        self.audit = audit or AuditService(db, clock)
        self.wake_poller = wake_poller
        self.cards = CardStore(db)

    def available_providers(self) -> set[ProviderName]:
        return set(self.providers)

    def validate(self, request: GenerationRequest) -> JobSpec:
        """Raises InputError; the preferred Veo vendor is used when both are configured."""
        preferred = ProviderName(self.settings.veo_preferred_provider)
        return validate_request(request, self.available_providers(), preferred)

    async def precheck(self, requester: Requester, spec: JobSpec) -> int:
        """Policy and budget, before the member spends time on attachments; returns the cost."""
        async with self._audited_refusals(requester, spec):
            snapshot = await self._snapshot(requester)
            await self.policy.check(requester, spec, snapshot=snapshot)
            cost = await self.quota.cost_of(requester.guild_id, spec, snapshot=snapshot)
            await self.quota.check_affordable(requester.guild_id, requester.user_id, requester.role_ids, cost,
                                              snapshot=snapshot)
        return cost

    async def _snapshot(self, requester: Requester) -> MemberSnapshot:
        """The server's settings for this member in one statement, shared by policy, price and budget."""
        return await read_snapshot(self.db, requester.guild_id, requester.user_id, requester.role_ids)

    @asynccontextmanager
    async def _audited_refusals(self, requester: Requester, spec: JobSpec) -> AsyncIterator[None]:
        """Every refusal reaches the server's audit channel (a blocked prompt is recorded by the policy,
        with the rule that matched)."""
        try:
            yield
        except Refusal as refusal:
            if refusal.kind != "prompt":
                await self._record_refusal(requester, spec, refusal)
            raise

    async def _record_refusal(self, requester: Requester, spec: JobSpec, refusal: Refusal) -> None:
        try:
            await self.audit.record(
                guild_id=requester.guild_id, kind=f"refused_{refusal.kind}", actor_id=requester.user_id,
                target_id=requester.user_id,
                text=(f"Refused /{spec.family.value} ({spec.model_key}) from <@{requester.user_id}> in "
                      f"<#{requester.channel_id}>: {refusal.user_message}"),
            )
        except Exception:  # the member's answer matters more than the audit line
            log.exception("could not record a %s refusal for user %s", refusal.kind, requester.user_id)

    async def create_job(self, requester: Requester, spec: JobSpec, *, request_key: str | None = None,
                         parent_job_id: int | None = None, follow_up: str | None = None,
                         thread_id: int | None = None) -> JobRecord:
        """Job row + credit hold + audit event in one transaction; raises Refusal and writes nothing.

        `request_key` names the click that asked (a button's interaction): a second call with the
        same key returns the first job instead of making (and paying the vendor for) another."""
        origin = JobOrigin(parent_job_id=parent_job_id, follow_up=follow_up, request_key=request_key,
                           thread_id=thread_id)
        if request_key is not None:
            existing = await self.job_for_key(request_key)
            if existing is not None:
                return existing
        async with self._audited_refusals(requester, spec):
            try:
                return await self._create_job(requester, spec, origin)
            except DuplicateKey:
                existing = await self.job_for_key(request_key) if request_key is not None else None
                if existing is None:
                    raise
                return existing

    async def job_for_key(self, request_key: str) -> JobRecord | None:
        """The job a click already made, if any."""
        job_id = await self.cards.job_id_for_key(request_key)
        return await self.repository.get(job_id) if job_id is not None else None

    async def _create_job(self, requester: Requester, spec: JobSpec, origin: JobOrigin) -> JobRecord:
        snapshot = await self._snapshot(requester)
        await self.policy.check(requester, spec, snapshot=snapshot)
        cost = await self.quota.cost_of(requester.guild_id, spec, snapshot=snapshot)
        now = self.clock.now()
        async with self.db.transaction() as conn:
            job_id = await self.repository.insert_in(
                conn, guild_id=requester.guild_id, channel_id=requester.channel_id, user_id=requester.user_id,
                spec=spec, cost=cost, now=now, deadline_at=deadline_for(self.settings, spec.model_key, now, spec.mode),
                thread_id=origin.thread_id, origin={"locale": requester.locale, "guild_locale": requester.guild_locale,
                        "parent_job_id": origin.parent_job_id, "follow_up": origin.follow_up,
                        "request_key": origin.request_key},
            )
            await self.quota.reserve_in(
                conn, guild_id=requester.guild_id, user_id=requester.user_id, role_ids=requester.role_ids,
                job_id=job_id, cost=cost, now=now,
            )
            await self.audit.record(
                conn=conn, guild_id=requester.guild_id, kind="job_created", actor_id=requester.user_id,
                target_id=requester.user_id, job_id=job_id, now=now,
                text=(f"<@{requester.user_id}> started job #{job_id} in <#{requester.channel_id}>: "
                      f"{spec.model_key}, {spec.mode.value}, {cost} credits. \u201c{quote(spec.prompt)}\u201d"),
            )
            job = await self.repository.get_in(conn, job_id)
        assert job is not None
        metrics.JOBS_CREATED.labels(family=spec.family.value, model=spec.model_key).inc()
        log.info("job %s created: guild %s user %s model %s cost %s",
                 job_id, requester.guild_id, requester.user_id, spec.model_key, cost)
        if self.wake_poller is not None:
            self.wake_poller()  # submit now rather than at the poller's next idle wake-up
        return job

    async def attach_destination(self, job_id: int, *, channel_id: int, thread_id: int | None,
                                 summary_message_id: int | None) -> None:
        """Where the result goes (the job's thread); written whatever the job's state or lease."""
        await self.repository.attach_destination(job_id, channel_id=channel_id, thread_id=thread_id,
                                                 summary_message_id=summary_message_id)

    async def queue_position(self, job: JobRecord) -> int:
        """1 = next to be submitted for its vendor; 0 = not waiting in the queue."""
        current = await self.repository.get(job.id)
        if current is None or current.status is not JobStatus.QUEUED:
            return 0
        return await self.repository.queue_position(current)

    async def get_job(self, guild_id: int, job_id: int) -> JobRecord | None:
        return await self.repository.get_for_guild(guild_id, job_id)

    async def recent_choices(self, guild_id: int, user_id: int, prefix: str, limit: int) -> list[Any]:
        """(id, status, prompt) of the member's latest jobs whose number starts with `prefix`."""
        return await self.cards.recent_for_member(guild_id, user_id, prefix, limit)

    async def list_jobs(self, guild_id: int, user_id: int, limit: int = 10) -> list[JobRecord]:
        return await self.repository.list_for_member(guild_id, user_id, max(1, min(limit, MAX_LIST_LIMIT)))

    async def cancel_job(self, guild_id: int, job_id: int, actor_id: int) -> JobRecord:
        """A moderator (or the requester) stops a job: hold released, audited, the card says who, and
        the member gets a "cancelled" message. Who may cancel is the caller's check."""
        now = self.clock.now()
        async with self.db.transaction() as conn:
            job = await self.repository.get_in(conn, job_id)
            if job is None or job.guild_id != guild_id:
                raise Refusal("not_found", _("There is no job #{id} in this server.", id=job_id))
            if job.status not in ACTIVE_STATUSES:
                raise Refusal("finished", _("Job #{id} has already finished ({status}).", id=job_id,
                                            status=job.status.word))
            # The lease is cleared on purpose: a worker still busy with the job fails its own
            # status-conditioned write, and any worker may now deliver the cancellation.
            changed = await self.repository.update_unleased_in(conn, job_id, ACTIVE_STATUSES, {
                "status": JobStatus.CANCELLED.value, "finished_at": now, "next_due_at": now,
                "error_message": CANCELLED_BY_REQUESTER if actor_id == job.user_id else CANCELLED_MESSAGE,
                "cancelled_by": actor_id, "lease_owner": None, "lease_until": None,
            })
            if not changed:
                raise Refusal("finished", _("Job #{id} has already finished.", id=job_id))
            await self.quota.settle_in(conn, job_id=job_id, charge=False, now=now)
            await self.audit.record(
                conn=conn, guild_id=guild_id, kind="job_cancelled", actor_id=actor_id, target_id=job.user_id,
                job_id=job_id, now=now, text=f"<@{actor_id}> cancelled job #{job_id} of <@{job.user_id}>.",
            )
            cancelled = await self.repository.get_in(conn, job_id)
        assert cancelled is not None
        metrics.JOBS_FINISHED.labels(family=job.family.value, outcome=JobStatus.CANCELLED.value).inc()
        log.info("job %s cancelled by %s", job_id, actor_id)
        if self.wake_poller is not None:
            self.wake_poller()  # wake the poller to deliver the cancellation now
        return cancelled
