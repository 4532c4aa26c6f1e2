"""What the benchmark asks for, when, and how long the vendors take.

Durations: each kind of job (vendor model) takes a log-normal time around its own median with
sigma SIGMA (0.15 by default: real vendors' times for one model and mode are concentrated, within
roughly +-35% for 95% of jobs), while medians differ by model: fast Veo 140-150 s, quality Veo
230-240 s, Sora 280 s, Kling 150-240 s (1-6 minutes overall). Draws are clipped to +-3 sigma so one
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

import json
import math
import random
from typing import Any

from bot.catalog import Family, get_model
from bot.clock import FakeClock
from bot.validation import GenerationRequest, JobSpec
from storage.database import Database
from tests.fakes.vendors import Outcome

from benchmarks.sim import ActivityTracker

# Median seconds per vendor model string.
MEDIANS: dict[str, float] = {
    "veo3_fast": 140, "veo3.1-fast": 150,
    "veo3": 230, "veo3.1-pro": 240,
    "sora-2": 280,
    "kling-v3-std-silent": 150, "kling-v3-std-audio": 160,
    "kling-v3-pro-silent": 230, "kling-v3-pro-audio": 240,
}
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


def make_plan(rng: random.Random, sigma: float = SIGMA, failures: str = "realistic"):  # -> tests.fakes.vendors.Plan
    """Per-request (duration, outcome) for the fakes."""

    def plan(body: dict[str, Any]) -> tuple[float, Outcome]:
        took, succeeded = draw_outcome(rng, str(body.get("model")), sigma, failures)
        return took, (Outcome.ok() if succeeded else Outcome.fail("generation failed", code=501))

    return plan


async def seed_history(db: Database, specs: list[JobSpec], rng: random.Random, sigma: float, now: float,
                       per_kind: int = HISTORY_PER_KIND, failures: str = "realistic") -> int:
    """Finished jobs of every kind in `specs` (`per_kind` successes and the failures among them), as
    a bot that has run for a while has: the schedule learns from them. Recorded as the bot records
    them: kie.ai and the unified API date their own finish, so exactly; Kling's gateway does not,
    so when observed, a poll gap late (uniform 0-5 s)."""
    kinds = {(spec.model_key, spec.mode.value, spec.family.value, spec.provider.value) for spec in specs}
    rows = []
    for model_key, mode, family, provider in sorted(kinds):
        vendor_model = get_model(model_key).vendor_model
        successes, n = 0, 0
        while successes < per_kind:
            submitted = now - 86_400 + n * 60
            n += 1
            took, succeeded = draw_outcome(rng, vendor_model, sigma, failures)
            took += rng.uniform(0.0, 5.0) if provider == "kling" else 0.0
            successes += succeeded
            rows.append((family, model_key, provider, mode, json.dumps({}), "succeeded" if succeeded else "failed",
                         submitted, submitted, submitted + took, submitted + took))
    async with db.transaction() as conn:
        await conn.executemany(
            "INSERT INTO jobs (guild_id, channel_id, user_id, family, model_key, provider, mode, prompt, request_json,"
            " status, delivery_state, created_at, submitted_at, vendor_done_at, finished_at)"
            " VALUES (2, 1, 1, ?, ?, ?, ?, 'history', ?, ?, 'delivered', ?, ?, ?, ?)", rows)
    return len(rows)


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
