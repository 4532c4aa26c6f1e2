"""One benchmark scenario in one process; prints a JSON line of measurements.

Runs the REAL JobService, Poller, PollSchedule, QuotaService, provider clients and SQLite storage
(a file in a temp dir) against the loopback vendor fakes, which run in their own process
(benchmarks/vendor_process.py) so this process's CPU and memory are the bot's. Time is a FakeClock
driven by benchmarks.sim.SimDriver and mirrored to the vendor process. Usually started by
benchmarks/run.py, one process per scenario.

    python benchmarks/scenario.py --jobs 1000 --mode polling --schedule learned
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.measure import (  # noqa: E402
    GUILD_ID, GcPauses, cpu_seconds, current_rss_mb, measure_idle, ms, peak_rss_mb, probe_interactions,
    run_to_quiet_window, summarise,
)
from benchmarks.sim import ActivityTracker, SimDriver, percentile  # noqa: E402
from benchmarks.vendor_process import SharedClock  # noqa: E402
from benchmarks.workload import (  # noqa: E402
    FAILURE_MIXES, SIGMA, CallbackPump, arrival_times, request_mix, seed_history_apart,
)
from bot.app import freeze_startup_heap  # noqa: E402
from bot.catalog import ProviderName  # noqa: E402
from bot.clock import FakeClock  # noqa: E402
from bot.http_server import HealthChecks, OperatorsServer  # noqa: E402
from bot.jobs.cards import CardKeeper  # noqa: E402
from bot.jobs.limits import LimitsRegistry  # noqa: E402
from bot.jobs.models import JobRecord  # noqa: E402
from bot.jobs.poller import Poller  # noqa: E402
from storage.jobs import JobRepository  # noqa: E402
from bot.jobs.schedule import PollSchedule  # noqa: E402
from storage.cards import CardStore  # noqa: E402
from bot.jobs.service import JobService, Requester  # noqa: E402
from bot.jobs.submission import callback_providers  # noqa: E402
from bot.providers.registry import build_providers, close_providers  # noqa: E402
from bot.quota.service import QuotaService  # noqa: E402
from fakes.publisher import RecordingPublisher  # noqa: E402
from fakes.settings import make_settings  # noqa: E402
from storage.database import Database  # noqa: E402

API_KEY = "bench-key"
HMAC_KEY = "bench-webhook-key"
BASELINE_INTERVAL = 10.0
ARRIVAL_STEP = 0.25  # simulated seconds between batches of arrivals
# The clock follows the wall clock for 60 s from 120 s after the first order: the fast models' peak
# of completions (fast Veo ~140 s, Kling std ~150 s), at the pace a real server would see it.
REAL_PACE = (120.0, 60.0)
# Idle CPU: measured over IDLE_SECONDS of real time, in the stretch with the fewest jobs due between
# IDLE_AFTER (every job ordered) and IDLE_LATEST simulated seconds after the first order.
IDLE_AFTER, IDLE_SECONDS, IDLE_LATEST = 40.0, 3.0, 110.0
VENDOR_LATENCY = 0.25  # seconds per vendor round trip during the real-pace stretch (+-30%)


class CardCountingPublisher(RecordingPublisher):
    """The shared publisher, also counting job card edits per job (`--cards`): Discord is not measured."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.card_edits: dict[int, int] = {}

    async def edit_card(self, job: JobRecord, channel_id: int, message_id: int, card: Any) -> bool:
        self.card_edits[job.id] = self.card_edits.get(job.id, 0) + 1
        return True


class AllowEverything:
    """Moderation is not what is measured here; every request passes."""

    async def check(self, requester: Requester, spec: Any, *, snapshot: Any = None) -> None:
        return None


class Forward:
    """Lets the HTTP server start before the poller exists (the poller needs the server's URL)."""

    target: Poller | None = None

    async def on_callback(self, job_id: int, task_id: str | None) -> object:
        assert self.target is not None
        return await self.target.on_callback(job_id, task_id)


class SubmitCounter:
    """Counts submits that came back (the clients' own submit is wrapped)."""

    def __init__(self) -> None:
        self.done = 0

    def track(self, client: Any) -> None:
        original = client.submit

        async def submit(*args: Any, **kwargs: Any) -> Any:
            try:
                return await original(*args, **kwargs)
            finally:
                self.done += 1

        client.submit = submit


def start_vendor_process(clock: SharedClock, seed: int, sigma: float,
                         failures: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    command = [sys.executable, str(ROOT / "benchmarks" / "vendor_process.py"), "--shm", clock.memory.name,
               "--seed", str(seed), "--api-key", API_KEY, "--hmac-key", HMAC_KEY, "--sigma", str(sigma),
               "--failures", failures]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise SystemExit("the vendor process did not start")
    return process, json.loads(line)


async def run(jobs: int, mode: str, schedule_name: str, seed: int, probes: bool, sigma: float,
              cold: bool, failures: str = "realistic",
              real_pace: tuple[float, float] | None = REAL_PACE,
              vendor_latency_seconds: float = VENDOR_LATENCY, cards: bool = False) -> dict[str, Any]:
    rng = random.Random(seed)
    clock = SharedClock(start=time.time())
    tracker = ActivityTracker()
    driver = SimDriver(clock, tracker, real_pace=real_pace)
    vendor_process, endpoints = start_vendor_process(clock, seed, sigma, failures)
    control = endpoints["control"]
    urls = endpoints["vendors"]

    async def vendor_latency(on: bool) -> None:
        """Across the internet during the real-pace stretch: only there does a round trip cost time."""
        async with httpx.AsyncClient(timeout=30.0) as client:
            await client.post(f"{control}/latency", json={"seconds": vendor_latency_seconds if on else 0.0})

    driver.on_real_pace = vendor_latency
    tmp = tempfile.TemporaryDirectory(prefix="framecast-bench-")
    settings = make_settings(
        discord_token="bench", database_url=f"sqlite:///{tmp.name}/bot.db",
        kie_api_key=API_KEY, kie_base_url=urls["kie"], kie_upload_base_url=urls["kie"],
        kkiai_api_key=API_KEY, kkiai_base_url=urls["kkiai"],
        kling_api_key=API_KEY, kling_base_url=urls["kling"],
        provider_max_in_flight=jobs * 2, kie_submits_per_10s=jobs * 2,
        quota_daily_credits=10**9, quota_max_concurrent_jobs=10**9, kie_webhook_hmac_key=HMAC_KEY,
        # The naive baseline is the same bot with POLL_INTERVAL_SECONDS=10: every running job every 10 s.
        poll_interval_seconds=BASELINE_INTERVAL if schedule_name == "fixed" else None,
    )
    db = await Database.open(settings.database_path)
    forward = Forward()
    server: OperatorsServer | None = None
    if mode == "callback":
        health = HealthChecks(database=db, gateway_connected=lambda: True, clock=clock)
        server = OperatorsServer(settings=settings, health=health, callbacks=forward)
        host, port = (await server.start("127.0.0.1", 0))[0][:2]
        settings = settings.model_copy(update={"public_base_url": f"http://{host}:{port}"})
    providers = build_providers(settings, clock)
    submits = SubmitCounter()
    for client in providers.values():
        submits.track(client)
        tracker.track_client(client)
    publisher = CardCountingPublisher(clock)
    quota = QuotaService(db, settings, clock)
    repository = JobRepository(db)
    schedule = PollSchedule(repository, clock, min_interval=settings.poll_min_interval_seconds,
                            max_interval=settings.poll_max_interval_seconds,
                            fixed_interval=settings.poll_interval_seconds,
                            callback_providers=callback_providers(settings))
    # Every job in flight at once: the operator-set vendor rate limits (10 submits / 10 s by default for
    # the unified API and Kling) would otherwise queue most of them.
    limits = LimitsRegistry(clock=clock, max_in_flight=jobs * 2,
                            submits_per_window={provider: jobs * 2 for provider in ProviderName})
    poller = Poller(settings=settings, db=db, clock=clock, providers=providers, quota=quota,
                    publisher=publisher, repository=repository, schedule=schedule, limits=limits)
    forward.target = poller
    service = JobService(settings=settings, db=db, clock=clock, providers=providers, quota=quota,
                         policy=AllowEverything(), repository=repository, wake_poller=poller.wake)
    # `--cards`: every job gets a card, kept in step by the bot's card keeper (its own loop, reading the
    # progress the poller stores); the vendor's request count shows whether it costs a request.
    keeper = CardKeeper(store=CardStore(db), repository=repository, clock=clock, settings=settings,
                        publisher=publisher) if cards else None
    requests = request_mix(rng, jobs)
    specs = [service.validate(request) for request in requests]
    history_rows = 0 if cold else seed_history_apart(str(settings.database_path), specs, seed + 2, sigma, clock.now(),
                                                     failures, callback_providers(settings))
    tracker.track_database(db)
    freeze_startup_heap()  # as `python -m bot` does before it connects
    rss_before_jobs = current_rss_mb()
    gc_pauses = GcPauses()

    # --- the workload: jobs ordered through the real service over ARRIVAL_WINDOW, all in flight ----
    created_ids: set[int] = set()
    arrivals = arrival_times(rng, jobs)
    wall_start, cpu_start, sim_start = time.perf_counter(), cpu_seconds(), clock.now()

    async def arrive() -> None:
        index = 0
        while index < jobs:
            due_until = clock.now() - sim_start
            while index < jobs and arrivals[index] <= due_until:
                requester = Requester(guild_id=GUILD_ID, channel_id=10, user_id=1000 + index % 500)
                job = await service.create_job(requester, specs[index])
                created_ids.add(job.id)
                if keeper is not None:  # as the cog does once the card is posted
                    await keeper.record_posted(job, 10, 20_000_000 + job.id, 1)
                index += 1
            if index < jobs:
                await clock.sleep(ARRIVAL_STEP)

    poller.start()
    if keeper is not None:
        keeper.start()
    pump = CallbackPump(control, clock, tracker) if mode == "callback" else None
    pump_task = asyncio.create_task(pump.run()) if pump else None
    arrival_task = asyncio.create_task(arrive())
    # Phase 1: every job ordered and submitted.
    await driver.run_until(lambda: (arrival_task.done() and submits.done >= jobs), sim_limit=600)
    await arrival_task
    requests.clear()  # the benchmark's own copies: a bot does not hold N requests in memory
    specs.clear()
    submit_wall = time.perf_counter() - wall_start
    # Phase 2: idle CPU with every job waiting on its vendor and none due (usually after the early
    # checks for rejections, before the body of the plans) - the clock runs at real speed.
    idle_at, idle_due = await run_to_quiet_window(db, driver, clock, sim_start + IDLE_AFTER,
                                                  sim_start + IDLE_LATEST, seconds=IDLE_SECONDS)
    idle = await measure_idle(driver, clock, seconds=IDLE_SECONDS)
    # Phase 3: run to the end, with a member's interactions measured along the way.
    probe_times: list[float] = []  # while simulated time skips ahead: the bot works through bursts
    paced_times: list[float] = []  # while the clock follows the wall clock (see REAL_PACE)
    # The member's commands go through their own JobService, which does not wake the poller.
    probe_service = JobService(settings=settings, db=db, clock=clock, providers=providers, quota=quota,
                               policy=AllowEverything(), repository=repository)
    probe_task = (asyncio.create_task(probe_interactions(probe_service, probe_times, paced_times, driver))
                  if probes else None)
    cpu_sim_start = cpu_seconds()
    await driver.run_until(lambda: created_ids <= publisher.handovers.keys(), sim_limit=4 * 3600)
    sim_elapsed = clock.now() - sim_start
    cpu_sim = cpu_seconds() - cpu_sim_start
    cpu_total = cpu_seconds() - cpu_start
    wall_total = time.perf_counter() - wall_start
    for task in (probe_task, pump_task):
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async with httpx.AsyncClient(timeout=120.0) as client:
        vendor_tasks = (await client.get(f"{control}/tasks")).json()
        vendor_usage = (await client.get(f"{control}/usage")).json()
        await client.post(f"{control}/stop")
    result = summarise(jobs, mode, schedule_name, vendor_tasks, publisher, created_ids, driver, pump)
    result.update(
        sigma=sigma, failures=failures, history_rows=history_rows, vendor_latency=vendor_latency_seconds,
        interaction_ms_p50=ms(percentile(probe_times, 0.50)), interaction_ms_p99=ms(percentile(probe_times, 0.99)),
        interaction_ms_max=ms(max(probe_times) if probe_times else None), interaction_samples=len(probe_times),
        paced_interaction_ms_p50=ms(percentile(paced_times, 0.50)),
        paced_interaction_ms_p99=ms(percentile(paced_times, 0.99)),
        paced_interaction_ms_max=ms(max(paced_times) if paced_times else None),
        paced_interaction_samples=len(paced_times), real_pace=list(real_pace) if real_pace else None,
        paced_cpu_share=round(driver.paced_cpu_share, 3) if driver.paced_cpu_share is not None else None,
        cpu_seconds_total=round(cpu_total, 2), cpu_seconds_simulation=round(cpu_sim, 2),
        simulated_seconds=round(sim_elapsed, 1),
        cpu_share_at_real_pace=round(cpu_total / sim_elapsed, 4) if sim_elapsed else None,
        idle_cpu_share=round(idle, 4), idle_window_at=round(idle_at - sim_start, 1),
        idle_window_due=idle_due,
        rss_before_jobs_mb=round(rss_before_jobs, 1), peak_rss_mb=round(peak_rss_mb(), 1),
        vendor_cpu_seconds=round(vendor_usage["cpu_seconds"], 2), vendor_peak_rss_mb=round(vendor_usage["peak_rss_mb"], 1),
        wall_seconds=round(wall_total, 1), submit_wall_seconds=round(submit_wall, 1),
        clock_advances=driver.timeline.advances, **gc_pauses.summary(),
    )
    if keeper is not None:
        await keeper.stop()
        edits = list(publisher.card_edits.values())
        result.update(cards=True, card_edits_total=sum(edits),
                      card_edits_per_job=round(sum(edits) / len(created_ids), 2) if created_ids else None,
                      card_edits_max=max(edits) if edits else 0)
    await poller.stop()
    if server is not None:
        await server.stop()
    await close_providers(providers)
    await db.close()
    vendor_process.wait(timeout=30)
    clock.close()
    tmp.cleanup()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--mode", choices=("polling", "callback"), default="polling")
    parser.add_argument("--schedule", choices=("learned", "fixed"), default="learned")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--sigma", type=float, default=SIGMA, help="log-normal sigma of one kind's durations")
    parser.add_argument("--cold", action="store_true", help="no finished jobs in the database (catalog priors)")
    parser.add_argument("--failures", choices=sorted(FAILURE_MIXES), default="realistic",
                        help="when failing tasks fail (benchmarks/workload.py)")
    parser.add_argument("--no-probes", action="store_true", help="skip the interaction timing probe")
    parser.add_argument("--real-pace", type=float, nargs=2, default=REAL_PACE, metavar=("AT", "SECONDS"),
                        help="follow the wall clock for SECONDS from AT simulated seconds (0 0: never)")
    parser.add_argument("--vendor-latency", type=float, default=VENDOR_LATENCY,
                        help="seconds per vendor round trip while at real pace")
    parser.add_argument("--cards", action="store_true", help="keep a job card per job (the card keeper runs)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    real_pace = tuple(args.real_pace) if args.real_pace[1] > 0 else None
    result = asyncio.run(run(args.jobs, args.mode, args.schedule, args.seed, not args.no_probes, args.sigma,
                             args.cold, args.failures, real_pace, args.vendor_latency,  # type: ignore[arg-type]
                             cards=args.cards))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
