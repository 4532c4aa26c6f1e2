"""What the benchmark asks for, when, and how long the vendors take.

Durations: each kind of job (vendor model) takes a log-normal time around its own median with
sigma SIGMA (0.15 by default: real vendors' times for one model and mode are concentrated, within
roughly +-35% for 95% of jobs), while medians differ by model: the catalog's `Timing` p50 (fast Veo
140-150 s, quality Veo 230-240 s, Sora 280 s, Kling 150-240 s; 1-6 minutes overall). Draws are clipped to +-3 sigma so one
freak draw cannot stall the run.

Failures (FAILURE_RATE = 5% of tasks) come in three kinds, FAILURE_MIX of them (`--failures
realistic`, the default):
- rejected (40%): the input is refused soon after submit. Resellers retry a rejected request a few
  times before giving up (the unified API's own query example shows `max_retries: 3`,
  `error_sleep: 5000` ms next to a "rejected by google" message), so the task fails 5-25 s in;
- filtered (45%): the output is filtered when generation ends (Google's Veo reports
  `raiMediaFilteredCount` in the finished operation's response), i.e. at the would-be finish;
- broke mid-way (15%): an infrastructure error at 20-80% of the would-be duration.
The split is an assumption (no vendor publishes one). `--failures midway` makes every failure a
mid-way one, as an earlier version of this benchmark did: the worst case for a poll schedule.

History: by default the database starts with HISTORY_PER_KIND finished jobs of every kind drawn from
the same distributions (a bot that has been running for a while); `cold` skips it (catalog priors).
Arrivals: spread uniformly over ARRIVAL_WINDOW simulated seconds (shorter than the fastest job, so
every job is in flight at once), not all at one instant, which no real server sees.
"""

from __future__ import annotations

import asyncio
import json
import math
import multiprocessing
import random
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from bot.catalog import MODELS, Family, ProviderName, get_model
from bot.clock import FakeClock
from storage.jobs import JobRepository
from bot.jobs.schedule import PollSchedule
from bot.validation import GenerationRequest, JobSpec
from storage.database import Database, execute_many
from fakes.vendors import Outcome

from benchmarks.sim import ActivityTracker

# Median seconds per vendor model string: what the catalog's priors say (one place per fact), so that
# a cold run's jobs follow the priors as a warm run's follow their history.
MEDIANS: dict[str, float] = {model.vendor_model: model.timing.p50 for model in MODELS}
SIGMA = 0.15
FAILURE_RATE = 0.05
FAILURE_MIXES: dict[str, list[tuple[float, str]]] = {
    "realistic": [(0.40, "rejected"), (0.45, "filtered"), (0.15, "midway")],
    "midway": [(1.0, "midway")],
}
REJECTED_AFTER = (5.0, 25.0)  # seconds after submit
MIN_DURATION = 18.0  # a mid-way failure never comes sooner
RECHECK_SECONDS = 4.0  # < REJECTED_AFTER[0]: a task created while the pump sleeps is never called back late
ARRIVAL_WINDOW = 30.0
HISTORY_PER_KIND = 1000  # successes per kind (the schedule reads the latest 1,000; failures, the vendor's latest 2,000 jobs)

# (weight, request) - a plausible mix of what members order.
REQUEST_MIX: list[tuple[float, dict[str, Any]]] = [
    (0.30, {"family": Family.VEO, "model": "veo-fast-kie"}),
    (0.10, {"family": Family.VEO, "model": "veo-quality-kie"}),
    (0.10, {"family": Family.VEO, "model": "veo-fast-kkiai"}),
    (0.05, {"family": Family.VEO, "model": "veo-quality-kkiai"}),
    (0.20, {"family": Family.SORA}),
    (0.15, {"family": Family.KLING, "model": "std", "audio": False}),
    (0.10, {"family": Family.KLING, "model": "pro", "audio": True}),
]


def request_mix(rng: random.Random, count: int) -> list[GenerationRequest]:
    weights = [w for w, _ in REQUEST_MIX]
    picks = rng.choices([fields for _, fields in REQUEST_MIX], weights=weights, k=count)
    return [GenerationRequest(prompt=f"benchmark clip {i}", upsample=False if f["family"] is Family.VEO else None,
                              **f) for i, f in enumerate(picks)]


def arrival_times(rng: random.Random, count: int) -> list[float]:
    """Seconds after the start at which each job is ordered, ascending."""
    return sorted(rng.uniform(0.0, ARRIVAL_WINDOW) for _ in range(count))


def draw_duration(rng: random.Random, vendor_model: str, sigma: float) -> float:
    median = MEDIANS.get(vendor_model, 180.0)
    z = max(-3.0, min(3.0, rng.gauss(0.0, 1.0)))
    return median * math.exp(sigma * z)


def draw_outcome(rng: random.Random, vendor_model: str, sigma: float, failures: str) -> tuple[float, bool]:
    """(seconds until the vendor is done, succeeded?) for one task."""
    duration = draw_duration(rng, vendor_model, sigma)
    if rng.random() >= FAILURE_RATE:
        return duration, True
    mix = FAILURE_MIXES[failures]
    kind = rng.choices([k for _, k in mix], weights=[w for w, _ in mix])[0]
    if kind == "rejected":
        return rng.uniform(*REJECTED_AFTER), False
    if kind == "filtered":
        return duration, False
    return max(MIN_DURATION, duration * rng.uniform(0.2, 0.8)), False


def make_plan(rng: random.Random, sigma: float = SIGMA, failures: str = "realistic"):  # -> fakes.vendors.Plan
    """Per-request (duration, outcome) for the fakes."""

    def plan(body: dict[str, Any]) -> tuple[float, Outcome]:
        took, succeeded = draw_outcome(rng, str(body.get("model")), sigma, failures)
        return took, (Outcome.ok() if succeeded else Outcome.fail("generation failed", code=501))

    return plan


def seed_history_apart(path: str, specs: list[JobSpec], seed: int, sigma: float, now: float, failures: str,
                       callback_providers: frozenset[ProviderName]) -> int:
    """`seed_history` into the database file at `path`, in a process of its own: a new bot's process
    never did this work, so its memory must not count in the bot's peak."""
    kinds = Counter((spec.model_key, spec.mode.value, spec.family.value, spec.provider.value) for spec in specs)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_seed_file, path, kinds, seed, sigma, now, failures, callback_providers).result()


def _seed_file(path: str, kinds: Counter[tuple[str, str, str, str]], seed: int, sigma: float, now: float,
               failures: str, callback_providers: frozenset[ProviderName]) -> int:
    async def fill() -> int:
        db = await Database.open(path)
        try:
            return await seed_history(db, kinds, random.Random(seed), sigma, now, failures=failures,
                                      callback_providers=callback_providers)
        finally:
            await db.close()

    return asyncio.run(fill())


async def seed_history(db: Database, counts: Counter[tuple[str, str, str, str]], rng: random.Random, sigma: float,
                       now: float, per_kind: int = HISTORY_PER_KIND, failures: str = "realistic",
                       callback_providers: frozenset[ProviderName] = frozenset()) -> int:
    """Finished jobs as a bot that has run for a while has them: ordered in the mix of `counts` (the
    run's jobs per (model_key, mode, family, provider): the schedule shares its request budget over
    the latest jobs' mix), until every kind has `per_kind` successes to learn from. Recorded as the
    bot records them: kie.ai and the unified API date their own finish, so exactly; Kling's gateway
    does not, so when observed, a poll gap late (uniform 0-5 s). Each job's status requests (and
    Kling's last progress figure) are what the bot's own schedule makes of it (`_record_requests`)."""
    kinds = sorted(counts)
    weights = [counts[kind] for kind in kinds]
    successes = dict.fromkeys(kinds, 0)
    draws: list[tuple[tuple[str, str, str, str], float, bool]] = []
    while min(successes.values()) < per_kind:
        kind = rng.choices(kinds, weights=weights)[0]
        took, succeeded = draw_outcome(rng, get_model(kind[0]).vendor_model, sigma, failures)
        successes[kind] += succeeded
        draws.append((kind, took, succeeded))
    spacing = 86_400 / len(draws)
    rows = []
    for n, ((model_key, mode, family, provider), took, succeeded) in enumerate(draws):
        submitted = now - 86_400 + n * spacing
        done = took + (rng.uniform(0.0, 5.0) if provider == "kling" else 0.0)
        rows.append((family, model_key, provider, mode, json.dumps({}), "succeeded" if succeeded else "failed",
                     submitted, submitted, submitted + done, submitted + done))
    async with db.transaction() as conn:
        await execute_many(
            conn, "INSERT INTO jobs (guild_id, channel_id, user_id, family, model_key, provider, mode, prompt, request_json,"
            " status, delivery_state, created_at, submitted_at, vendor_done_at, finished_at)"
            " VALUES (2, 1, 1, ?, ?, ?, ?, 'history', ?, ?, 'delivered', ?, ?, ?, ?)", rows)
    await _record_requests(db, callback_providers)
    return len(rows)


async def _record_requests(db: Database, callback_providers: frozenset[ProviderName]) -> None:
    """Fill in each history job's status requests (and last progress figure) by walking the bot's
    schedule over it, as the poller would have: Kling's gateway reports the share of the run done in
    whole percents; a kind with callbacks is checked once when the vendor calls back. Kinds paced by
    progress or callbacks first: the others' plans share what those leave of the budget."""
    rows = await db.fetchall("SELECT id, model_key, provider, mode, submitted_at, vendor_done_at FROM jobs"
                             " WHERE prompt = 'history' ORDER BY id")

    def paced(row: Any) -> bool:
        return row["provider"] == "kling" or ProviderName(row["provider"]) in callback_providers

    for batch in ([r for r in rows if paced(r)], [r for r in rows if not paced(r)]):
        schedule = PollSchedule(JobRepository(db), FakeClock(start=_latest_finish(rows)),
                                callback_providers=callback_providers)
        updates = []
        for row in batch:
            requests, progress = await _walk(schedule, row, ProviderName(row["provider"]) in callback_providers)
            updates.append((requests, progress, row["id"]))
        async with db.transaction() as conn:
            await execute_many(conn, "UPDATE jobs SET poll_count = ?, progress = ? WHERE id = ?", updates)


def _latest_finish(rows: list[Any]) -> float:
    return max((float(r["vendor_done_at"]) for r in rows), default=0.0)


async def _walk(schedule: PollSchedule, row: Any, callback: bool) -> tuple[int, float | None]:
    """(status requests, last progress figure read while running) for one finished history job."""
    submitted, took = float(row["submitted_at"]), float(row["vendor_done_at"]) - float(row["submitted_at"])
    reports_progress = row["provider"] == "kling"
    kind = {"model_key": row["model_key"], "mode": row["mode"], "submitted_at": submitted, "callback": callback}
    at = await schedule.next_poll_at(now=submitted, **kind)
    requests, previous = 0, None
    while True:
        if callback and at - submitted > took:
            return requests + 1, previous  # the callback's confirming check
        requests += 1
        if at - submitted >= took:
            return requests, previous
        progress = math.floor(100 * (at - submitted) / took) / 100 if reports_progress else None
        at = await schedule.next_poll_at(now=at, progress=progress, previous_progress=previous, **kind)
        previous = progress


class CallbackPump:
    """Plays kie.ai's side of callbacks on the simulated clock: asks the vendor process to send
    every callback that is due, then sleeps until the next one (or RECHECK_SECONDS for new tasks)."""

    def __init__(self, control_url: str, clock: FakeClock, tracker: ActivityTracker) -> None:
        self._control_url = control_url
        self._clock = clock
        self._tracker = tracker
        self.posted = 0

    async def run(self) -> None:
        import httpx

        async with httpx.AsyncClient(timeout=120.0) as client:
            while True:
                with self._tracker.busy():
                    answer = (await client.post(f"{self._control_url}/fire")).json()
                self.posted += int(answer["fired"])
                now = self._clock.now()
                wait = RECHECK_SECONDS
                if answer["next_due"] is not None:
                    wait = min(wait, float(answer["next_due"]) - now)
                await self._clock.sleep(max(0.001, wait))
