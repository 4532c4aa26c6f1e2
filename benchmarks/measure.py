"""What a benchmark scenario measures: CPU, memory, GC pauses, idle load, a member's commands and
the per-job latency and request figures. Used by benchmarks/scenario.py."""

from __future__ import annotations

import asyncio
import bisect
import gc
import resource
import time
from typing import TYPE_CHECKING, Any

from benchmarks.sim import SimDriver, percentile, untracked
from bot.catalog import Family
from bot.clock import FakeClock
from bot.jobs.placement import LATE_SECONDS, PROMPT_SECONDS
from bot.jobs.service import JobService, Requester
from bot.validation import GenerationRequest
from storage.database import Database

if TYPE_CHECKING:
    from benchmarks.scenario import RecordingPublisher
    from benchmarks.workload import CallbackPump

GUILD_ID = 1
PROBE_USER = 999_999
IDLE_SLACK = 0.5  # seconds kept clear after the idle measurement
IDLE_SEARCH_ROUNDS = 8


class GcPauses:
    """Wall time of every garbage-collector pass in this process (a full pass stalls the event loop)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[int(info["generation"])].append(time.perf_counter() - self._started)

    def summary(self) -> dict[str, Any]:
        full = self.pauses[2]
        return {"gc_full_passes": len(full), "gc_full_max_ms": ms(max(full) if full else None),
                "gc_young_max_ms": ms(max(self.pauses[0] + self.pauses[1], default=0.0))}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


async def run_to_quiet_window(db: Database, driver: SimDriver, clock: FakeClock, earliest: float,
                              latest: float, seconds: float) -> tuple[float, int]:
    """Run the simulation to the quietest `seconds` between `earliest` and `latest`: the fewest jobs
    due (from their due times in the database), the earliest of equals, so that "idle" means idle.

    Polls made on the way move jobs, so the choice is checked on arrival and made again if it no
    longer holds. Returns (where it starts, jobs due within it).
    """
    target = earliest
    for attempt in range(IDLE_SEARCH_ROUNDS):
        mark = asyncio.create_task(clock.sleep(max(0.0, target - clock.now())))
        await driver.run_until(mark.done, sim_limit=600)
        await driver.wait_idle()
        now = clock.now()
        dues = [float(row[0]) for row in await db.fetchall(
            "SELECT next_due_at FROM jobs WHERE next_due_at IS NOT NULL ORDER BY next_due_at")]

        def due_within(start: float) -> int:
            return bisect.bisect_right(dues, start + seconds + IDLE_SLACK) - bisect.bisect_left(dues, start)

        # A quiet stretch starts now or just after a due job (handled, then nothing until the next).
        starts = [now] + [due + IDLE_SLACK for due in dues if now < due < latest]
        target = min(starts, key=lambda start: (due_within(start), start))
        if target <= now + 1e-6 or attempt == IDLE_SEARCH_ROUNDS - 1:
            return now, due_within(now)
    raise AssertionError("unreachable")


async def measure_idle(driver: SimDriver, clock: FakeClock, seconds: float) -> float:
    """CPU share of one core over `seconds` of real time, with simulated time following real time."""
    driver.hold = True
    try:
        await driver.wait_idle()
        cpu0, wall0 = cpu_seconds(), time.perf_counter()
        last = wall0
        while (now := time.perf_counter()) - wall0 < seconds:
            clock.advance(now - last)
            driver.timeline.mark(clock.now())
            last = now
            await asyncio.sleep(0.05)
        return (cpu_seconds() - cpu0) / (time.perf_counter() - wall0)
    finally:
        driver.hold = False


async def probe_interactions(service: JobService, samples: list[float], paced: list[float], driver: SimDriver,
                             every: float = 0.05, limit: int = 4000) -> None:
    """A member using /veo then /jobs while the poller works: wall time of the bot-side calls, kept
    apart while the clock follows the wall clock (`paced`)."""
    token = untracked.set(True)
    try:
        requester = Requester(guild_id=GUILD_ID, channel_id=11, user_id=PROBE_USER)
        while len(samples) + len(paced) < limit:
            started = time.perf_counter()
            real_pace = driver.at_real_pace
            spec = service.validate(GenerationRequest(family=Family.VEO, prompt="a lighthouse at dusk",
                                                      model="veo-fast-kie", upsample=False))
            await service.precheck(requester, spec)
            job = await service.create_job(requester, spec)
            await service.list_jobs(GUILD_ID, PROBE_USER)
            (paced if real_pace and driver.at_real_pace else samples).append(time.perf_counter() - started)
            # Untimed: remove the probe's job and its rows before the poller sees it (this service does
            # not wake the poller). A member ordering a video every 50 ms would otherwise add thousands
            # of jobs to the workload being measured.
            async with service.db.transaction() as conn:
                for table, column in (("credit_ledger", "job_id"), ("audit_events", "job_id"), ("jobs", "id")):
                    await conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (job.id,))
            await asyncio.sleep(every)
    finally:
        untracked.reset(token)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def summarise(jobs: int, mode: str, schedule_name: str, vendor_tasks: list[list[Any]],
              publisher: RecordingPublisher, created_ids: set[int], driver: SimDriver,
              pump: CallbackPump | None) -> dict[str, Any]:
    tasks = {(name, task_id): (finishes_at, status_calls + hd_calls, model)
             for name, task_id, finishes_at, status_calls, hd_calls, model in vendor_tasks}
    groups: dict[str, tuple[list[float], list[float], list[int]]] = {"all": ([], [], [])}
    for job_id in created_ids:
        delivery = publisher.deliveries[job_id]
        task = tasks.get((delivery.provider, delivery.task_id or ""))
        if task is None:
            continue
        finishes_at, requests, vendor_model = task
        latency = driver.timeline.real_latency(finishes_at, delivery.sim_at, delivery.wall_at)
        sim_latency = max(0.0, delivery.sim_at - finishes_at)
        outcome = "succeeded" if delivery.status == "succeeded" else "failed"
        paced = driver.paced_span is not None and driver.paced_span[0] <= finishes_at <= driver.paced_span[1]
        # Per vendor model too ("model:sora-2"): compares with benchmarks/ablation.py's offline figures.
        for key in ("all", delivery.provider, outcome, f"model:{vendor_model}", *(("paced",) if paced else ())):
            bucket = groups.setdefault(key, ([], [], []))
            bucket[0].append(latency)
            bucket[1].append(sim_latency)
            bucket[2].append(requests)
    out: dict[str, Any] = {"jobs": jobs, "mode": mode, "schedule": schedule_name,
                           "delivered": len(created_ids & publisher.deliveries.keys()),
                           "callbacks_posted": pump.posted if pump else 0}
    for key, (latencies, sim_latencies, requests) in groups.items():
        out[key] = {
            "jobs": len(latencies),
            "latency_p50": rnd(percentile(latencies, 0.5)), "latency_p95": rnd(percentile(latencies, 0.95)),
            "latency_p99": rnd(percentile(latencies, 0.99)),
            # The share noticed more than LATE_SECONDS late: the p99 is under it when this is under 1%.
            "late_share": round(sum(lag > LATE_SECONDS for lag in latencies) / len(latencies), 5) if latencies else None,
            "within_prompt_share": (round(sum(lag <= PROMPT_SECONDS for lag in latencies) / len(latencies), 4)
                                    if latencies else None),
            "sim_latency_p50": rnd(percentile(sim_latencies, 0.5)), "sim_latency_p99": rnd(percentile(sim_latencies, 0.99)),
            "status_requests_per_job": round(sum(requests) / len(requests), 2) if requests else None,
            "status_requests_p99": percentile([float(r) for r in requests], 0.99),
            "status_requests_max": max(requests) if requests else None,
        }
    return out


def rnd(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
