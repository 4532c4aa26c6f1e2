"""One benchmark scenario in one process; prints a JSON line of measurements.

Runs the REAL JobService, Poller, PollSchedule, QuotaService, provider clients and SQLite storage
(a file in a temp dir) against the loopback vendor fakes of tests/fakes/vendors.py, on a FakeClock
driven by benchmarks.sim.SimDriver. Usually started by benchmarks/run.py, one process per scenario
so each one's CPU time and peak memory are its own.

    python benchmarks/scenario.py --jobs 1000 --mode polling --schedule learned
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.sim import ActivityTracker, SimDriver, percentile, untracked  # noqa: E402
from bot.catalog import Family, ProviderName  # noqa: E402
from bot.clock import FakeClock  # noqa: E402
from bot.delivery.base import ResultMessage  # noqa: E402
from bot.http_server import HealthChecks, OperatorsServer  # noqa: E402
from bot.jobs.models import JobRecord  # noqa: E402
from bot.jobs.poller import Poller  # noqa: E402
from bot.jobs.repository import JobRepository  # noqa: E402
from bot.jobs.schedule import PollSchedule  # noqa: E402
from bot.jobs.service import JobService, Requester  # noqa: E402
from bot.providers.registry import build_providers, close_providers  # noqa: E402
from bot.quota.service import QuotaService  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.validation import GenerationRequest  # noqa: E402
from storage.database import Database  # noqa: E402
from tests.fakes.vendors import (  # noqa: E402
    FakeKieVendor, FakeKlingVendor, FakeTask, FakeUnifiedVendor, FakeVendor, Outcome,
)
from benchmarks.workload import CallbackPump, make_plan, request_mix  # noqa: E402

API_KEY = "bench-key"
HMAC_KEY = "bench-webhook-key"
GUILD_ID = 1
PROBE_USER = 999_999
BASELINE_INTERVAL = 10.0


class FixedIntervalSchedule(PollSchedule):
    """The naive baseline: ask about every running job every 10 seconds."""

    async def next_poll_at(self, *, model_key: str, mode: str, submitted_at: float, now: float,
                           progress: float | None = None) -> float:
        return now + BASELINE_INTERVAL


@dataclass
class Delivery:
    job_id: int
    provider: str
    task_id: str | None
    status: str
    sim_at: float
    wall_at: float


class RecordingPublisher:
    """Stands in for Discord: records when each result was handed over."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.deliveries: dict[int, Delivery] = {}

    async def deliver(self, job: JobRecord, message: ResultMessage) -> int:
        self.deliveries.setdefault(job.id, Delivery(job.id, job.provider.value, job.provider_task_id,
                                                    job.status.value, self.clock.now(), time.perf_counter()))
        return 10_000_000 + job.id

    async def post_audit(self, guild_id: int, channel_id: int, text: str, nonce: str) -> int:
        return 1


class AllowEverything:
    """Moderation is not what is measured here; every request passes."""

    async def check(self, requester: Requester, spec: Any) -> None:
        return None


class Forward:
    """Lets the HTTP server start before the poller exists (the poller needs the server's URL)."""

    target: Poller | None = None

    async def on_callback(self, job_id: int, task_id: str | None) -> object:
        assert self.target is not None
        return await self.target.on_callback(job_id, task_id)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


async def run(jobs: int, mode: str, schedule_name: str, seed: int, probes: bool) -> dict[str, Any]:
    rng = random.Random(seed)
    clock = FakeClock(start=time.time())
    tracker = ActivityTracker()
    driver = SimDriver(clock, tracker)
    plan = make_plan(random.Random(seed + 1))
    vendors: dict[str, FakeVendor] = {
        "kie": FakeKieVendor(api_key=API_KEY, clock=clock, plan=plan, callback_key=HMAC_KEY, auto_callbacks=False),
        "kkiai": FakeUnifiedVendor(api_key=API_KEY, clock=clock, plan=plan),
        "kling": FakeKlingVendor(api_key=API_KEY, clock=clock, plan=plan),
    }
    for vendor in vendors.values():
        await vendor.start()
    tmp = tempfile.TemporaryDirectory(prefix="framecast-bench-")
    settings = Settings(
        discord_token="bench", _env_file=None, database_url=f"sqlite:///{tmp.name}/bot.db",
        kie_api_key=API_KEY, kie_base_url=vendors["kie"].base_url, kie_upload_base_url=vendors["kie"].base_url,
        kkiai_api_key=API_KEY, kkiai_base_url=vendors["kkiai"].base_url,
        kling_api_key=API_KEY, kling_base_url=vendors["kling"].base_url,
        provider_max_in_flight=jobs * 2, kie_submits_per_10s=jobs * 2,
        quota_daily_credits=10**9, quota_max_concurrent_jobs=10**9, kie_webhook_hmac_key=HMAC_KEY,
    )
    db = await Database.open(settings.database_path)
    tracker.track_database(db)
    forward = Forward()
    server: OperatorsServer | None = None
    if mode == "callback":
        health = HealthChecks(database=db, gateway_connected=lambda: True, clock=clock)
        server = OperatorsServer(settings=settings, health=health, callbacks=forward)
        host, port = (await server.start("127.0.0.1", 0))[0][:2]
        settings = settings.model_copy(update={"public_base_url": f"http://{host}:{port}"})
    providers = build_providers(settings, clock)
    for client in providers.values():
        tracker.track_client(client)
    publisher = RecordingPublisher(clock)
    quota = QuotaService(db, settings, clock)
    repository = JobRepository(db)
    schedule_class = FixedIntervalSchedule if schedule_name == "fixed" else PollSchedule
    schedule = schedule_class(repository, clock, min_interval=settings.poll_min_interval_seconds,
                              max_interval=settings.poll_max_interval_seconds)
    poller = Poller(settings=settings, db=db, clock=clock, providers=providers, quota=quota,
                    publisher=publisher, repository=repository, schedule=schedule)
    forward.target = poller
    service = JobService(settings=settings, db=db, clock=clock, providers=providers, quota=quota,
                         policy=AllowEverything(), repository=repository, on_job_created=poller.wake)
    rss_before_jobs = current_rss_mb()

    # --- the workload: N jobs created through the real service, all in flight at once ----------
    requests = request_mix(rng, jobs)
    created_ids: set[int] = set()
    wall_start, cpu_start = time.perf_counter(), cpu_seconds()
    for index, request in enumerate(requests):
        requester = Requester(guild_id=GUILD_ID, channel_id=10, user_id=1000 + index % 500)
        spec = service.validate(request)
        created_ids.add((await service.create_job(requester, spec)).id)
    create_wall = time.perf_counter() - wall_start

    poller.start()
    pump = CallbackPump(vendors["kie"], clock, tracker) if mode == "callback" else None
    pump_task = asyncio.create_task(pump.run()) if pump else None

    # Phase 1: submit everything (simulated time stands still while the bot works).
    # (Bounded: a submit that failed and went `uncertain` is never resent, so creates may fall short.)
    submit_start = clock.now()
    await driver.run_until(lambda: sum(v.create_calls for v in vendors.values()) >= jobs
                           or clock.now() - submit_start > 30.0, sim_limit=600)
    submit_wall = time.perf_counter() - wall_start
    # Phase 2: idle CPU with every job waiting on its vendor - the clock runs at real speed.
    idle = await measure_idle(driver, clock, seconds=3.0)
    # Phase 3: run to the end, with a member's interactions measured along the way.
    probe_times: list[float] = []
    probe_task = asyncio.create_task(probe_interactions(service, probe_times)) if probes else None
    sim_start, cpu_sim_start, wall_sim_start = clock.now(), cpu_seconds(), time.perf_counter()
    await driver.run_until(lambda: created_ids <= publisher.deliveries.keys(), sim_limit=4 * 3600)
    sim_elapsed = clock.now() - sim_start
    cpu_sim = cpu_seconds() - cpu_sim_start
    wall_total = time.perf_counter() - wall_start
    for task in (probe_task, pump_task):
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    result = summarise(jobs, mode, schedule_name, vendors, publisher, created_ids, driver, pump)
    result.update(
        interaction_ms_p50=ms(percentile(probe_times, 0.50)), interaction_ms_p99=ms(percentile(probe_times, 0.99)),
        interaction_samples=len(probe_times),
        cpu_seconds_total=round(cpu_seconds() - cpu_start, 2), cpu_seconds_simulation=round(cpu_sim, 2),
        simulated_seconds=round(sim_elapsed, 1),
        cpu_share_at_real_pace=round(cpu_sim / sim_elapsed, 4) if sim_elapsed else None,
        idle_cpu_share=round(idle, 4),
        rss_before_jobs_mb=round(rss_before_jobs, 1), peak_rss_mb=round(peak_rss_mb(), 1),
        wall_seconds=round(wall_total, 1), create_wall_seconds=round(create_wall, 1),
        submit_wall_seconds=round(submit_wall, 1), clock_advances=driver.timeline.advances,
    )
    await poller.stop()
    if server is not None:
        await server.stop()
    await close_providers(providers)
    for vendor in vendors.values():
        await vendor.stop()
    await db.close()
    tmp.cleanup()
    return result


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


async def probe_interactions(service: JobService, samples: list[float], every: float = 0.05,
                             limit: int = 2000) -> None:
    """A member using /veo then /jobs while the poller works: wall time of the bot-side calls."""
    token = untracked.set(True)
    try:
        requester = Requester(guild_id=GUILD_ID, channel_id=11, user_id=PROBE_USER)
        while len(samples) < limit:
            started = time.perf_counter()
            spec = service.validate(GenerationRequest(family=Family.VEO, prompt="a lighthouse at dusk",
                                                      model="veo-fast-kie", upsample=False))
            await service.precheck(requester, spec)
            await service.create_job(requester, spec)
            await service.list_jobs(GUILD_ID, PROBE_USER)
            samples.append(time.perf_counter() - started)
            await asyncio.sleep(every)
    finally:
        untracked.reset(token)


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def summarise(jobs: int, mode: str, schedule_name: str, vendors: dict[str, FakeVendor],
              publisher: RecordingPublisher, created_ids: set[int], driver: SimDriver,
              pump: CallbackPump | None) -> dict[str, Any]:
    tasks: dict[tuple[str, str], FakeTask] = {}
    for name, vendor in vendors.items():
        for task in vendor.tasks.values():
            tasks[(name, task.id)] = task
    groups: dict[str, tuple[list[float], list[float], list[int]]] = {"all": ([], [], [])}
    for job_id in created_ids:
        delivery = publisher.deliveries[job_id]
        task = tasks.get((delivery.provider, delivery.task_id or ""))
        if task is None:
            continue
        latency = driver.timeline.real_latency(task.finishes_at, delivery.sim_at, delivery.wall_at)
        sim_latency = max(0.0, delivery.sim_at - task.finishes_at)
        requests = task.status_calls + task.hd_calls
        for key in ("all", delivery.provider):
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
            "sim_latency_p50": rnd(percentile(sim_latencies, 0.5)), "sim_latency_p99": rnd(percentile(sim_latencies, 0.99)),
            "status_requests_per_job": round(sum(requests) / len(requests), 2) if requests else None,
            "status_requests_max": max(requests) if requests else None,
        }
    return out


def rnd(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--mode", choices=("polling", "callback"), default="polling")
    parser.add_argument("--schedule", choices=("learned", "fixed"), default="learned")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--no-probes", action="store_true", help="skip the interaction timing probe")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    result = asyncio.run(run(args.jobs, args.mode, args.schedule, args.seed, not args.no_probes))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
