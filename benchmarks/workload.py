"""What the benchmark asks for and how long the vendors take.

Durations are drawn per vendor model, log-normally around a median and clipped: fast Veo 1-4 min,
quality Veo and Sora longer, Kling in between; about 5% of tasks fail (earlier than they would have
finished). The callback pump plays kie.ai's side of callbacks on the simulated clock.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from typing import Any

from bot.catalog import Family
from bot.clock import FakeClock
from bot.validation import GenerationRequest
from tests.fakes.vendors import FakeKieVendor, FakeTask, Outcome

from benchmarks.sim import ActivityTracker

# (low, median, high) seconds per vendor model string.
DURATIONS: dict[str, tuple[float, float, float]] = {
    "veo3_fast": (60, 140, 240), "veo3.1-fast": (60, 150, 240),
    "veo3": (120, 230, 360), "veo3.1-pro": (120, 240, 360),
    "sora-2": (150, 280, 480),
    "kling-v3-std-silent": (60, 150, 300), "kling-v3-std-audio": (70, 160, 300),
    "kling-v3-pro-silent": (120, 230, 420), "kling-v3-pro-audio": (120, 240, 420),
}
FAILURE_RATE = 0.05
MIN_DURATION = 18.0  # a failure at 0.3 x the shortest low bound
RECHECK_SECONDS = 10.0  # < MIN_DURATION: a task created while the pump sleeps is never called back late

# (weight, request) - a plausible mix of what members order.
_MIX: list[tuple[float, dict[str, Any]]] = [
    (0.30, {"family": Family.VEO, "model": "veo-fast-kie"}),
    (0.10, {"family": Family.VEO, "model": "veo-quality-kie"}),
    (0.10, {"family": Family.VEO, "model": "veo-fast-kkiai"}),
    (0.05, {"family": Family.VEO, "model": "veo-quality-kkiai"}),
    (0.20, {"family": Family.SORA}),
    (0.15, {"family": Family.KLING, "model": "std", "audio": False}),
    (0.10, {"family": Family.KLING, "model": "pro", "audio": True}),
]


def request_mix(rng: random.Random, count: int) -> list[GenerationRequest]:
    weights = [w for w, _ in _MIX]
    picks = rng.choices([fields for _, fields in _MIX], weights=weights, k=count)
    return [GenerationRequest(prompt=f"benchmark clip {i}", upsample=False if f["family"] is Family.VEO else None,
                              **f) for i, f in enumerate(picks)]


def make_plan(rng: random.Random):  # -> tests.fakes.vendors.Plan
    """Per-request (duration, outcome) for the fakes, drawn from DURATIONS."""

    def plan(body: dict[str, Any]) -> tuple[float, Outcome]:
        low, median, high = DURATIONS.get(str(body.get("model")), (60, 180, 360))
        sigma = math.log(high / median) / 1.64  # ~95% of draws under `high` before clipping
        duration = min(high, max(low, rng.lognormvariate(math.log(median), sigma)))
        if rng.random() < FAILURE_RATE:
            return max(MIN_DURATION, duration * rng.uniform(0.2, 0.8)), Outcome.fail("generation failed", code=501)
        return duration, Outcome.ok()

    return plan


class CallbackPump:
    """Posts kie.ai's signed callback when each kie task finishes, on the simulated clock.

    One heap and one sleeper whatever the number of tasks (the fake's own fire_due_callbacks scans
    every task, which is fine for tests but quadratic at 10,000 tasks).
    """

    def __init__(self, kie: FakeKieVendor, clock: FakeClock, tracker: ActivityTracker) -> None:
        self._kie = kie
        self._clock = clock
        self._tracker = tracker
        self._due: list[tuple[float, str]] = []
        self._seen = 0
        self.posted = 0

    def _collect_new_tasks(self) -> None:
        tasks = self._kie.tasks
        for task in itertools.islice(tasks.values(), self._seen, None):
            if task.callback_url:
                heapq.heappush(self._due, (task.finishes_at, task.id))
        self._seen = len(tasks)

    async def run(self) -> None:
        while True:
            self._collect_new_tasks()
            now = self._clock.now()
            while self._due and self._due[0][0] <= now:
                _, task_id = heapq.heappop(self._due)
                task: FakeTask = self._kie.tasks[task_id]
                if not task.callback_sent:
                    task.callback_sent = True
                    with self._tracker.busy():
                        await self._kie._send_callback(task)  # the fake's own signed POST
                    self.posted += 1
            wait = min(RECHECK_SECONDS, self._due[0][0] - now) if self._due else RECHECK_SECONDS
            await self._clock.sleep(max(0.001, wait))
