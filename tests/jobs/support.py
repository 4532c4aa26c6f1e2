"""Small in-test stand-ins for the poller's collaborators (a scripted vendor, a recording publisher,
a ledger-backed quota) and a builder for JobService + Poller on a real SQLite file."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any


from bot.catalog import Family, ProviderName
from bot.clock import Clock, FakeClock
from bot.jobs.models import JobRecord
from bot.jobs.poller import Poller
from bot.jobs.service import JobService, Requester
from bot.providers.base import PollResult, TaskState
from bot.settings import Settings
from bot.validation import GenerationRequest, JobSpec
from fakes.publisher import RecordingPublisher
from fakes.settings import make_settings
from storage.database import Connection, Database, change_rows

REQUESTER = Requester(guild_id=10, channel_id=20, user_id=30, role_ids=(40,))


class ScriptedProvider:
    """A vendor whose tasks finish `duration` seconds (on the test clock) after submit.

    `submit_script` / `poll_script` hold exceptions (raised) or values consumed before the default
    behaviour; `submit_gate` lets a test hold a submit in flight.
    """

    def __init__(self, name: ProviderName, clock: Clock, *, duration: float = 120.0,
                 outcome: TaskState = TaskState.SUCCEEDED, error_message: str = "") -> None:
        self.name = name
        self.clock = clock
        self.duration = duration
        self.outcome = outcome
        self.error_message = error_message
        self.submit_script: list[Any] = []
        self.poll_script: list[Any] = []
        self.submit_gate: asyncio.Event | None = None
        self.submits: list[JobSpec] = []
        self.polls: list[str] = []
        self.tasks: dict[str, float] = {}
        self._ids = itertools.count(1)

    async def submit(self, job: JobSpec, *, callback_url: str | None = None) -> str:
        self.submits.append(job)
        if self.submit_gate is not None:
            await self.submit_gate.wait()
        if self.submit_script:
            step = self.submit_script.pop(0)
            if isinstance(step, BaseException):
                raise step
        task_id = f"{self.name.value}-task-{next(self._ids)}"
        self.tasks[task_id] = self.clock.now() + self.duration
        return task_id

    async def poll(self, task_id: str, job: JobSpec) -> PollResult:
        self.polls.append(task_id)
        if self.poll_script:
            step = self.poll_script.pop(0)
            if isinstance(step, BaseException):
                raise step
            return step
        done_at = self.tasks.get(task_id)
        if done_at is None or self.clock.now() < done_at:
            return PollResult(state=TaskState.RUNNING, raw_status="processing")
        if self.outcome is TaskState.SUCCEEDED:
            return PollResult(state=TaskState.SUCCEEDED, raw_status="completed",
                              video_url=f"https://cdn.example/{task_id}.mp4")
        return PollResult(state=TaskState.FAILED, raw_status="failed", error_message=self.error_message)

    async def aclose(self) -> None:
        return None


class LedgerQuota:
    """Holds and settlements straight into `credit_ledger` (its unique indexes police "once")."""

    def __init__(self, cost: int = 2) -> None:
        self.cost = cost

    async def cost_of(self, guild_id: int, spec: JobSpec, *, snapshot: Any = None) -> int:
        return self.cost

    async def balance(self, guild_id: int, user_id: int, role_ids: Any) -> Any:
        return None

    async def reserve_in(self, conn: Connection, *, guild_id: int, user_id: int, role_ids: Any,
                         job_id: int, cost: int, now: float) -> None:
        await change_rows(
            conn, "INSERT INTO credit_ledger (guild_id, user_id, job_id, kind, amount, created_at)"
            " VALUES (?, ?, ?, 'hold', ?, ?)", (guild_id, user_id, job_id, cost, now))

    async def price(self, guild_id: int, keys: Any) -> int:
        return self.cost - 1 if "1080p" not in keys else self.cost  # the 1080p surcharge is 1 credit here

    async def settle_in(self, conn: Connection, *, job_id: int, charge: bool, now: float,
                        amount: int | None = None) -> None:
        await change_rows(
            conn, "INSERT INTO credit_ledger (guild_id, user_id, job_id, kind, amount, created_at)"
            " SELECT guild_id, user_id, job_id, CAST(? AS TEXT), COALESCE(CAST(? AS INTEGER), amount),"
            " CAST(? AS DOUBLE PRECISION) FROM credit_ledger WHERE job_id = ? AND kind = 'hold'",
            ("charge" if charge else "release", amount, now, job_id))


class AllowAll:
    async def check(self, requester: Requester, spec: JobSpec, *, snapshot: Any = None) -> None:
        return None


@dataclass
class Rig:
    db: Database
    clock: FakeClock
    settings: Settings
    providers: dict[ProviderName, ScriptedProvider]
    publisher: RecordingPublisher
    jobs: JobService
    poller: Poller
    extra_pollers: list[Poller] = field(default_factory=list)

    async def create(self, prompt: str = "a cat surfing", family: Family = Family.VEO, model: str | None = None,
                     requester: Requester = REQUESTER) -> JobRecord:
        spec = self.jobs.validate(GenerationRequest(family=family, prompt=prompt, model=model))
        return await self.jobs.create_job(requester, spec)

    async def job(self, job_id: int) -> JobRecord:
        record = await self.jobs.repository.get(job_id)
        assert record is not None
        return record

    async def ledger(self, job_id: int) -> list[str]:
        rows = await self.db.fetchall("SELECT kind FROM credit_ledger WHERE job_id = ? ORDER BY id", (job_id,))
        return [r["kind"] for r in rows]

    async def run_until(self, predicate: Any, *, step: float = 1.0, limit: float = 3600.0,
                        pollers: list[Poller] | None = None) -> float:
        """Advance the fake clock in `step`s, running the poller(s) each time, until predicate() holds."""
        waited = 0.0
        while waited <= limit:
            await asyncio.gather(*(p.run_once() for p in (pollers or [self.poller])))
            if await predicate():
                return waited
            self.clock.advance(step)
            waited += step
        raise AssertionError("condition not reached")


def build_rig(db: Database, clock: FakeClock, *, settings: Settings | None = None, duration: float = 120.0,
              quota: Any = None, **poller_kwargs: Any) -> Rig:
    settings = settings or make_settings(kie_api_key="k", kkiai_api_key="k")
    providers = {name: ScriptedProvider(name, clock, duration=duration) for name in ProviderName}
    publisher = RecordingPublisher()
    quota = quota or LedgerQuota()
    poller = Poller(settings=settings, db=db, clock=clock, providers=providers, quota=quota, publisher=publisher,
                    instance_id="poller-a", **poller_kwargs)
    jobs = JobService(settings=settings, db=db, clock=clock, providers=providers, quota=quota, policy=AllowAll(),
                      wake_poller=poller.wake)
    return Rig(db, clock, settings, providers, publisher, jobs, poller)

