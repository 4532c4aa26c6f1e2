"""Shared pieces of the reliability tests: the invariant checks and an in-process rig.

The invariants are the product's promises, checked from the outside (the database, the vendor fakes,
the Discord fake or a recording publisher) rather than from the code that is meant to keep them:
- every job has exactly one credit hold; a finished job exactly one settlement (a charge if it
  succeeded, a release otherwise); an unfinished job none;
- a finished job is marked delivered only with a real message id, and exactly one result message exists;
- no job ever caused more than one vendor task.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.catalog import Family, ProviderName
from bot.clock import FakeClock
from bot.publishing.base import DeliveryError, ResultMessage, job_nonce
from bot.jobs.models import JobRecord
from bot.jobs.poller import Poller
from bot.jobs.service import JobService, Requester
from bot.providers.base import ProviderClient
from bot.providers.registry import build_providers, close_providers
from bot.quota.service import QuotaService
from bot.settings import Settings
from bot.validation import GenerationRequest
from storage.database import Database
from storage.guild_settings import GuildSettingsStore
from tests.fakes.vendors import FakeKieVendor, FakeKlingVendor, FakeUnifiedVendor, FakeVendor

GUILD_ID = 10
CHANNEL_ID = 20
SETTLEMENT_FOR = {"succeeded": "charge", "failed": "release", "timed_out": "release", "cancelled": "release"}
TERMINAL = frozenset(SETTLEMENT_FOR)


# --- invariants --------------------------------------------------------------------------------------


async def ledger_violations(db: Database) -> list[str]:
    """Every way the jobs table and the credit ledger disagree with the credit promises."""
    jobs = await db.fetchall("SELECT id, status, cost FROM jobs ORDER BY id")
    rows = await db.fetchall("SELECT job_id, kind, amount FROM credit_ledger WHERE job_id IS NOT NULL")
    by_job: dict[int, Counter[str]] = {}
    amounts: dict[tuple[int, str], int] = {}
    for row in rows:
        by_job.setdefault(int(row["job_id"]), Counter())[row["kind"]] += 1
        amounts[(int(row["job_id"]), row["kind"])] = int(row["amount"])
    problems: list[str] = []
    for job in jobs:
        kinds = by_job.get(int(job["id"]), Counter())
        settles = {k: n for k, n in kinds.items() if k in ("charge", "release")}
        if kinds["hold"] != 1:
            problems.append(f"job {job['id']}: {kinds['hold']} holds")
        if job["status"] in TERMINAL:
            expected = SETTLEMENT_FOR[job["status"]]
            if settles != {expected: 1}:
                problems.append(f"job {job['id']} ({job['status']}): settlements {settles}, expected one {expected}")
            elif not _settled_as_promised(expected, amounts.get((int(job["id"]), expected)),
                                          amounts.get((int(job["id"]), "hold")), int(job["cost"])):
                problems.append(f"job {job['id']}: settled amount differs from the hold")
        elif settles:
            problems.append(f"job {job['id']} ({job['status']}) is not finished but settled: {settles}")
    return problems


def _settled_as_promised(kind: str, settled: int | None, hold: int | None, cost: int) -> bool:
    """A release gives back the whole hold; a charge is the job's cost, never above the hold (a video
    delivered with less than ordered costs less: its row's cost was lowered when it finished)."""
    if kind == "release" or settled is None or hold is None:
        return settled == hold
    return settled == cost and settled <= hold


async def delivery_violations(db: Database, *, all_finished: bool = True) -> list[str]:
    """Finished jobs must be delivered with a message id (and, if `all_finished`, every job finished)."""
    jobs = await db.fetchall("SELECT id, status, delivery_state, result_message_id FROM jobs ORDER BY id")
    problems: list[str] = []
    for job in jobs:
        if job["status"] not in TERMINAL:
            if all_finished:
                problems.append(f"job {job['id']} still {job['status']}")
            continue
        if job["delivery_state"] != "delivered":
            problems.append(f"job {job['id']} ({job['status']}) not delivered")
        elif not job["result_message_id"]:
            problems.append(f"job {job['id']} delivered without a message id")
    return problems


def vendor_tasks_by_prompt(vendors: Iterable[FakeVendor]) -> Counter[str]:
    """How many vendor tasks were created for each prompt (prompts are unique per job in these tests)."""
    counts: Counter[str] = Counter()
    for vendor in vendors:
        for task in vendor.tasks.values():
            counts[str(task.body.get("prompt") or "")] += 1
    return counts


async def vendor_violations(db: Database, vendors: Iterable[FakeVendor]) -> list[str]:
    """No job may cause two vendor tasks; a job that ran must have caused exactly one."""
    counts = vendor_tasks_by_prompt(vendors)
    rows = await db.fetchall("SELECT id, prompt, status, provider_task_id FROM jobs ORDER BY id")
    known_prompts = {row["prompt"] for row in rows}
    problems = [f"vendor task for an unknown prompt {p!r}" for p in counts if p not in known_prompts]
    for row in rows:
        made = counts.get(row["prompt"], 0)
        if made > 1:
            problems.append(f"job {row['id']}: {made} vendor tasks")
        if row["provider_task_id"] and made != 1:
            problems.append(f"job {row['id']} ran task {row['provider_task_id']} but the vendor made {made}")
    return problems


# --- an in-process rig: real JobService + Poller + SQLite + real vendor clients on the fakes -------------


class RecordingPublisher:
    """A Discord stand-in with Discord's own dedupe: a repeated nonce returns the first message.

    `plan` scripts faults per delivery attempt: "429", "503" (retryable, nothing posted), "gone"
    (no destination accepted it: final), "lost" (the message is posted, then the answer is lost).
    """

    def __init__(self) -> None:
        self.messages: dict[int, tuple[int, ResultMessage]] = {}  # message id -> (job id, message)
        self.by_nonce: dict[str, int] = {}
        self.attempts: Counter[int] = Counter()
        self.faults: list[str] = []
        self.fault_for: dict[int, list[str]] = {}
        self._ids = itertools.count(90_000)

    async def deliver(self, job: JobRecord, message: ResultMessage) -> int:
        self.attempts[job.id] += 1
        await asyncio.sleep(0)
        planned = self.fault_for.get(job.id) or self.faults
        fault = planned.pop(0) if planned else None
        if fault == "429":
            raise DeliveryError("rate limited", retryable=True, retry_after=2.0)
        if fault == "503":
            raise DeliveryError("Discord answered 503", retryable=True)
        if fault == "gone":
            raise DeliveryError("no destination accepted the result", retryable=False)
        message_id = self.by_nonce.get(message.nonce)
        if message_id is None:
            message_id = next(self._ids)
            self.by_nonce[message.nonce] = message_id
            self.messages[message_id] = (job.id, message)
        if fault == "lost":
            raise DeliveryError("connection reset after posting", retryable=True)
        return message_id

    async def post_audit(self, guild_id: int, channel_id: int, text: str, nonce: str) -> int:
        return next(self._ids)

    def results_for(self, job_id: int) -> list[ResultMessage]:
        return [m for j, m in self.messages.values() if j == job_id]


async def publisher_violations(db: Database, publisher: RecordingPublisher) -> list[str]:
    """Exactly one result message per finished job, and it is the one the job row names."""
    rows = await db.fetchall("SELECT id, status, result_message_id FROM jobs ORDER BY id")
    problems: list[str] = []
    for row in rows:
        if row["status"] not in TERMINAL:
            continue
        posted = [mid for mid, (job_id, _) in publisher.messages.items() if job_id == row["id"]]
        if len(posted) != 1:
            problems.append(f"job {row['id']}: {len(posted)} result messages")
        elif row["result_message_id"] not in (None, posted[0]):
            problems.append(f"job {row['id']}: row names message {row['result_message_id']}, posted {posted[0]}")
        for mid in posted:
            if publisher.messages[mid][1].nonce != job_nonce(row["id"]):
                problems.append(f"job {row['id']}: message without the job's nonce")
    return problems


class AllowAll:
    """The policy check is someone else's module; these tests are about what happens after it."""

    async def check(self, requester: Requester, spec: Any, *, snapshot: Any = None) -> None:
        return None


def rig_settings(kie: FakeVendor, unified: FakeVendor, kling: FakeVendor, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": "reliability-token-not-real",
        "kie_api_key": kie.api_key, "kie_base_url": kie.base_url, "kie_upload_base_url": kie.base_url,
        "kkiai_api_key": unified.api_key, "kkiai_base_url": unified.base_url,
        "kling_api_key": kling.api_key, "kling_base_url": kling.base_url,
        "poll_min_interval_seconds": 3.0, "poll_max_interval_seconds": 30.0,
        "http_timeout_seconds": 2.0, "submit_timeout_seconds": 2.0,
        "uncertain_submit_grace_seconds": 300.0, "lease_seconds": 120.0,
        "quota_daily_credits": 1_000_000, "quota_max_concurrent_jobs": 1_000_000,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@dataclass
class Rig:
    """JobService + Poller(s) on one SQLite file, the three vendor fakes on a FakeClock."""

    db: Database
    clock: FakeClock
    settings: Settings
    providers: Mapping[ProviderName, ProviderClient]
    jobs: JobService
    poller: Poller
    publisher: Any  # a RecordingPublisher, or the real DiscordPublisher
    kie: FakeKieVendor
    unified: FakeUnifiedVendor
    kling: FakeKlingVendor
    pollers: list[Poller] = field(default_factory=list)
    _prompt_numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def vendors(self) -> tuple[FakeVendor, FakeVendor, FakeVendor]:
        return (self.kie, self.unified, self.kling)

    def vendor_for(self, provider: ProviderName) -> FakeVendor:
        return {ProviderName.KIE: self.kie, ProviderName.KKIAI: self.unified, ProviderName.KLING: self.kling}[provider]

    async def create(self, family: Family = Family.VEO, *, model: str | None = None, user_id: int = 30,
                     prompt: str | None = None, guild_id: int = GUILD_ID, channel_id: int = CHANNEL_ID) -> JobRecord:
        """A job with a unique prompt (the vendor fakes are matched to jobs by prompt)."""
        text = prompt or f"reliability scene {next(self._prompt_numbers)}"
        spec = self.jobs.validate(GenerationRequest(family=family, prompt=text, model=model))
        requester = Requester(guild_id=guild_id, channel_id=channel_id, user_id=user_id)
        return await self.jobs.create_job(requester, spec)

    async def job(self, job_id: int) -> JobRecord:
        record = await self.jobs.repository.get(job_id)
        assert record is not None
        return record

    def add_poller(self, db: Database, instance_id: str) -> Poller:
        """A second poller (another process) on its own connection to the same file."""
        quota = QuotaService(db, self.settings, self.clock, GuildSettingsStore(db))
        poller = Poller(settings=self.settings, db=db, clock=self.clock, providers=self.providers, quota=quota,
                        publisher=self.publisher, instance_id=instance_id)
        poller.schedule.rng = random.Random(len(self.pollers))
        self.pollers.append(poller)
        return poller

    async def run_until(self, predicate: Any, *, step: float = 1.0, limit: float = 7200.0,
                        between: Any = None) -> float:
        """Advance the fake clock in `step`s, running every poller, until `await predicate()` holds."""
        waited = 0.0
        while waited <= limit:
            await asyncio.gather(*(p.run_once() for p in self.pollers))
            if between is not None:
                await between()
            if await predicate():
                return waited
            self.clock.advance(step)
            waited += step
        raise AssertionError(f"condition not reached within {limit} fake seconds")

    async def all_delivered(self) -> bool:
        value = await self.db.fetchval(
            "SELECT COUNT(*) FROM jobs WHERE delivery_state != 'delivered'"
            " OR status NOT IN ('succeeded','failed','timed_out','cancelled')")
        return int(value or 0) == 0

    async def violations(self, *, all_finished: bool = True) -> list[str]:
        found = [*await ledger_violations(self.db), *await delivery_violations(self.db, all_finished=all_finished),
                 *await vendor_violations(self.db, self.vendors)]
        if isinstance(self.publisher, RecordingPublisher):
            found += await publisher_violations(self.db, self.publisher)
        return found


class RigFactory:
    """Starts the fakes and builds a Rig; closes everything it opened."""

    def __init__(self, db: Database, clock: FakeClock) -> None:
        self.db = db
        self.clock = clock
        self.kie = FakeKieVendor(api_key="kie-key-rel-0123456789", clock=clock, duration=90, hd_delay=None)
        self.unified = FakeUnifiedVendor(api_key="kkiai-key-rel-0123456789", clock=clock, duration=120)
        self.kling = FakeKlingVendor(api_key="kling-key-rel-0123456789", clock=clock, duration=100)
        self._providers: list[Mapping[ProviderName, ProviderClient]] = []

    async def __aenter__(self) -> RigFactory:
        for vendor in (self.kie, self.unified, self.kling):
            await vendor.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for providers in self._providers:
            await close_providers(providers)
        for vendor in (self.kie, self.unified, self.kling):
            await vendor.stop()

    def build(self, publisher: Any = None, **settings_overrides: Any) -> Rig:
        settings = rig_settings(self.kie, self.unified, self.kling, **settings_overrides)
        providers = build_providers(settings, self.clock)
        self._providers.append(providers)
        publisher = publisher or RecordingPublisher()
        quota = QuotaService(self.db, settings, self.clock, GuildSettingsStore(self.db))
        poller = Poller(settings=settings, db=self.db, clock=self.clock, providers=providers, quota=quota,
                        publisher=publisher, instance_id="poller-a")
        poller.schedule.rng = random.Random(4242)  # jittered backoff, but the same every run
        jobs = JobService(settings=settings, db=self.db, clock=self.clock, providers=providers, quota=quota,
                          policy=AllowAll(), wake_poller=poller.wake)
        return Rig(self.db, self.clock, settings, providers, jobs, poller, publisher, self.kie, self.unified,
                   self.kling, pollers=[poller])
