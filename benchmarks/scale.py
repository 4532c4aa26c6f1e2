"""The benchmark's PostgreSQL mode: real `python -m bot worker` processes scaling out on one database.

    python benchmarks/run.py --postgres --jobs 10000 --workers 1 2 4     (or python benchmarks/scale.py ...)
    python benchmarks/run.py --postgres --jobs 300 --workers 1 2         (a quick run while developing)
    python benchmarks/run.py --postgres --jobs 10000 --workers 1 2 4 --saturate 60   (the ceiling)

For each worker count, from scratch: a throwaway PostgreSQL server (fakes/postgres.py, durable as an
operator runs it), the vendor fakes and a loopback Discord REST API each in a process of their own
(benchmarks/scale_fakes.py), N real workers, and the jobs ordered through the real service path
(`JobService.create_job` as the gateway calls it: credit hold, job row, NOTIFY) over the workload's
arrival window, so that all of them are in flight at once. The bot's own brakes (in-flight caps,
submit windows, quotas) are raised out of the way: what is measured is the workers and the database.
Everything runs on the wall clock; the jobs take the workload's times (benchmarks/workload.py).

Measured: status checks per second (counted by the vendor fakes, per second), results delivered per
second and completion-to-notify (the vendor task's finish instant to the result post's arrival at the
Discord fake, one machine's clock), peak memory and CPU seconds of every process (/proc), the
machine's CPU, and every second the jobs due but not yet handled (the backlog: where the ceiling
shows). At the end every job must have been delivered exactly once and submitted at most once.

`--saturate SECONDS` makes every running job due every second (POLL_INTERVAL_SECONDS=1): far more
checks than the machine can make, so the rate the workers hold over SECONDS is the ceiling, whatever
the workload's pace. It stops after SECONDS without waiting for the jobs to end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.scale_report import print_comparison, print_run  # noqa: E402
from benchmarks.sim import percentile  # noqa: E402
from benchmarks.workload import ARRIVAL_WINDOW, SIGMA, arrival_times, request_mix, seed_history  # noqa: E402
from bot.clock import SystemClock  # noqa: E402
from bot.jobs.service import Requester  # noqa: E402
from bot.services import Services, build_services  # noqa: E402
from bot.settings import Settings  # noqa: E402
from fakes.postgres import PostgresServer  # noqa: E402
from fakes.processes import RoleProcess, clean_environment  # noqa: E402
from fakes.publisher import RecordingPublisher  # noqa: E402
from fakes.settings import make_settings  # noqa: E402
from storage.database import Database  # noqa: E402

API_KEY = "bench-scale-key-0123456789"
CREATORS = 16  # concurrent create_job calls: a gateway answers many members' commands at once
USERS = 2000
SAMPLE_SECONDS = 1.0
BACKLOG_AFTER = 1.0  # a job counts as waiting when it has been due for longer than this
TICKS = os.sysconf("SC_CLK_TCK")
LOGGED_IN = "logged in as"
SATURATE_POLL_INTERVAL = 1.0
PROGRESS_EVERY = 60.0
STEADY_AFTER = 5.0  # seconds after the last submit: the first checks of the last jobs are behind us


# --- /proc ------------------------------------------------------------------------------------------

def proc_cpu(pid: int, children: bool = False) -> float | None:
    """CPU seconds of a process (and, with `children`, of the children it has reaped)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the ")": state is fields[0], so utime/stime/cutime/cstime (stat fields 14-17) are 11-14.
    used = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return used / TICKS


def proc_status(pid: int, key: str) -> float | None:
    """A kB line of /proc/<pid>/status (VmHWM, VmRSS, RssAnon) in MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return found


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --- the run -----------------------------------------------------------------------------------------

@dataclass
class Options:
    jobs: int
    seed: int = 20240601
    sigma: float = SIGMA
    latency: float = 0.25
    channels: int = 500
    cold: bool = False
    saturate: float | None = None
    poll_interval: float | None = None
    duration_scale: float = 1.0
    arrival_window: float = ARRIVAL_WINDOW
    timeout: float = 1800.0
    log_level: str = "INFO"


@dataclass
class Processes:
    """Who is who, for /proc."""

    workers: dict[str, int] = field(default_factory=dict)
    fakes: dict[str, int] = field(default_factory=dict)
    postgres: int = 0


@dataclass
class Sampler:
    """Every second: each process's CPU, the machine's, PostgreSQL's and the backlog of due jobs."""

    db: Database
    processes: Processes
    rows: list[dict[str, Any]] = field(default_factory=list)

    def cpu_now(self) -> dict[str, float]:
        cpu = {name: proc_cpu(pid) or 0.0 for name, pid in {**self.processes.workers, **self.processes.fakes}.items()}
        pg = self.processes.postgres
        cpu["postgres"] = (proc_cpu(pg, children=True) or 0.0) + sum(proc_cpu(c) or 0.0 for c in children_of(pg))
        cpu["driver"] = own_cpu()
        cpu["machine"] = machine_cpu()[0]
        return cpu

    async def run(self) -> None:
        last, at = self.cpu_now(), time.time()
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            now, cpu = time.time(), self.cpu_now()
            row = await self.db.fetchone(
                "SELECT COUNT(*) FILTER (WHERE next_due_at <= ?) AS waiting, COUNT(*) AS open FROM jobs"
                " WHERE next_due_at IS NOT NULL", (now - BACKLOG_AFTER,))  # the poller's own index
            span = now - at
            assert row is not None
            self.rows.append({"t": round(now, 3), "waiting": int(row["waiting"]), "open": int(row["open"]),
                              "cores": {k: round((cpu[k] - last.get(k, 0.0)) / span, 3) for k in cpu}})
            last, at = cpu, now


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def start_fake(role: str, *args: str) -> tuple[asyncio.subprocess.Process, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "benchmarks" / "scale_fakes.py"), role, *args, stdout=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    if not line:
        raise SystemExit(f"the {role} fake did not start")
    return process, json.loads(line)


def worker_env(options: Options, url: str, vendors: dict[str, str], discord: dict[str, Any]) -> dict[str, str]:
    big = str(options.jobs * 2)
    env = clean_environment()
    env.update({
        "DISCORD_TOKEN": discord["token"], "DISCORD_API_BASE": discord["api_base"], "DATABASE_URL": url,
        "KIE_BASE_URL": vendors["kie"], "KIE_UPLOAD_BASE_URL": vendors["kie"], "KIE_API_KEY": API_KEY,
        "KKIAI_BASE_URL": vendors["kkiai"], "KKIAI_API_KEY": API_KEY,
        "KLING_BASE_URL": vendors["kling"], "KLING_API_KEY": API_KEY,
        "PROVIDER_MAX_IN_FLIGHT": big, "KIE_SUBMITS_PER_10S": big, "KKIAI_SUBMITS_PER_10S": big,
        "KLING_SUBMITS_PER_10S": big, "QUOTA_DAILY_CREDITS": str(10**9), "QUOTA_MAX_CONCURRENT_JOBS": str(10**9),
        # No operators' server and no callbacks: several workers behind no load balancer; polling is measured.
        "HTTP_LISTEN": "off", "PUBLIC_BASE_URL": "", "LOG_LEVEL": options.log_level,
    })
    poll_interval = options.poll_interval or (SATURATE_POLL_INTERVAL if options.saturate else None)
    if poll_interval:
        env["POLL_INTERVAL_SECONDS"] = str(poll_interval)
    return env


async def create_jobs(services: Services, options: Options, discord: dict[str, Any],
                      created: dict[int, float], create_ms: list[float]) -> None:
    """The workload's orders through the gateway's service, at their arrival instants (wall clock)."""
    rng = random.Random(options.seed)
    requests = request_mix(rng, options.jobs)
    stretch = options.arrival_window / ARRIVAL_WINDOW
    arrivals = [at * stretch for at in arrival_times(rng, options.jobs)]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(options.jobs):
        queue.put_nowait(index)
    start = time.time()

    async def creator() -> None:
        while not queue.empty():
            index = queue.get_nowait()
            await asyncio.sleep(max(0.0, start + arrivals[index] - time.time()))
            requester = Requester(guild_id=discord["guild_id"], channel_id=discord["first_channel"]
                                  + index % options.channels, user_id=10_000 + index % USERS)
            began = time.perf_counter()
            job = await services.jobs.create_job(requester, services.jobs.validate(requests[index]))
            create_ms.append((time.perf_counter() - began) * 1000)
            created[job.id] = time.time()

    await asyncio.gather(*(creator() for _ in range(CREATORS)))


async def wait_delivered(db: Database, options: Options, started: float) -> int:
    # Saturated: SECONDS from the end of the arrival window, when every job is in flight.
    deadline = started + (options.arrival_window + options.saturate if options.saturate else options.timeout)
    said = started
    while True:
        done = int(await db.fetchval("SELECT COUNT(*) FROM jobs WHERE prompt LIKE 'benchmark clip %'"
                                     " AND delivery_state = 'delivered'"))
        if done >= options.jobs or time.time() >= deadline:
            return done
        if time.time() - said >= PROGRESS_EVERY:
            said = time.time()
            print(f"    {said - started:4.0f} s: {done} delivered (load {load_average()})", flush=True)
        await asyncio.sleep(1.0)


@dataclass
class Stack:
    """Everything one run started, so that all of it is stopped whatever happens."""

    server: PostgresServer
    tmp: Path
    fakes: list[asyncio.subprocess.Process] = field(default_factory=list)
    controls: dict[str, str] = field(default_factory=dict)
    workers: list[RoleProcess] = field(default_factory=list)
    services: Services | None = None

    async def stop_workers(self) -> list[int]:
        return [await worker.stop(signal.SIGTERM, timeout=60) for worker in self.workers
                if worker.process is not None and worker.process.returncode is None]

    async def close(self) -> None:
        for worker in self.workers:
            if worker.process is not None and worker.process.returncode is None:
                await worker.stop(signal.SIGKILL)
        if self.services is not None:
            await self.services.aclose()
            self.services = None
        async with httpx.AsyncClient(timeout=30) as client:
            for url in self.controls.values():
                try:
                    await client.post(f"{url}/stop")
                except httpx.HTTPError:
                    pass
        for process in self.fakes:
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
        self.server.stop()


async def start_stack(workers: int, options: Options) -> tuple[Stack, dict[str, Any], Processes]:
    server = PostgresServer(durable=True, shared_buffers="128MB", preload=("pg_stat_statements",))
    server.start()
    stack = Stack(server=server, tmp=Path(tempfile.mkdtemp(prefix="framecast-scale-")))
    vendor_process, vendors = await start_fake("vendors", "--seed", str(options.seed), "--api-key", API_KEY,
                                               "--sigma", str(options.sigma), "--latency", str(options.latency),
                                               "--duration-scale", str(options.duration_scale))
    discord_process, discord = await start_fake("discord", "--channels", str(options.channels))
    stack.fakes = [vendor_process, discord_process]
    stack.controls = {"vendors": vendors["control"], "discord": discord["control"]}
    url = server.url(await server.create_database())
    env = worker_env(options, url, vendors["vendors"], discord)
    # The gateway's settings are the workers' (their environment), read the way the bot reads them.
    settings = make_settings(**{key.lower(): value for key, value in env.items() if key.lower() in Settings.model_fields})
    stack.services = await build_services(settings, RecordingPublisher(), SystemClock())
    processes = Processes(fakes={"vendor fakes": vendor_process.pid, "discord fake": discord_process.pid})
    processes.postgres = server.pid or 0
    info: dict[str, Any] = {"history_rows": 0, "discord": discord}
    if not options.cold:
        specs = [stack.services.jobs.validate(r) for r in request_mix(random.Random(options.seed), options.jobs)]
        kinds = Counter((s.model_key, s.mode.value, s.family.value, s.provider.value) for s in specs)
        began = time.perf_counter()
        info["history_rows"] = await seed_history(stack.services.db, kinds, random.Random(options.seed + 2),
                                                  options.sigma, time.time())
        print(f"    history: {info['history_rows']} finished jobs in {time.perf_counter() - began:.0f} s", flush=True)
    # Which statements PostgreSQL spends its time on (the history written above not counted).
    await stack.services.db.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    await stack.services.db.fetchall("SELECT pg_stat_statements_reset()")
    for n in range(workers):
        worker = RoleProcess(stack.tmp / f"worker-{n + 1}.log")
        await worker.start(("worker",), cwd=stack.tmp, env=env)
        stack.workers.append(worker)
    for n, worker in enumerate(stack.workers):
        await worker.wait_for_log(LOGGED_IN, timeout=120)
        assert worker.process is not None
        processes.workers[f"worker {n + 1}"] = worker.process.pid
    return stack, info, processes


def cancel_on_signals() -> None:
    """SIGTERM (and SIGINT, which a background job may have ignored) cancel the run, so that its
    server, fakes and workers are stopped by `Stack.close` rather than left behind."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)


async def run_one(workers: int, options: Options) -> dict[str, Any]:
    stack, info, processes = await start_stack(workers, options)
    try:
        assert stack.services is not None
        db = stack.services.db
        sampler = Sampler(db, processes)
        cpu_before, machine_before, load_before = sampler.cpu_now(), machine_cpu(), load_average()
        sampling = asyncio.create_task(sampler.run())
        created: dict[int, float] = {}
        create_ms: list[float] = []
        started = time.time()
        await create_jobs(stack.services, options, info["discord"], created, create_ms)
        delivered = await wait_delivered(db, options, started)
        ended = time.time()
        # VmHWM, not the fakes' own getrusage: on Linux ru_maxrss survives exec, so a child started by
        # this process would report this process's peak if it was higher.
        peaks = {name: proc_status(pid, "VmHWM") for name, pid in {**processes.workers, **processes.fakes}.items()}
        postgres_memory = postgres_rss(processes.postgres)
        fake_stats = await read_fakes(stack.controls)
        statements = await top_statements(db)
        rows = [dict(r) for r in await db.fetchall(
            "SELECT id, provider, provider_task_id, status, delivery_state, prompt FROM jobs"
            " WHERE prompt LIKE 'benchmark clip %'")]
        sampling.cancel()
        cpu_after, machine_after = sampler.cpu_now(), machine_cpu()  # the workers' own, while they still run
        exits = await stack.stop_workers()
        await stack.services.aclose()
        stack.services = None
        await asyncio.sleep(0.5)  # the backends exit and the postmaster reaps them (their CPU moves to cutime)
        cpu_after["postgres"] = sampler.cpu_now()["postgres"]
        result = {"statements": statements, **summarise(
            workers=workers, options=options, started=started, ended=ended, created=created, create_ms=create_ms,
            delivered=delivered, rows=rows, fakes=fake_stats, samples=sampler.rows, peaks=peaks,
            postgres_memory=postgres_memory, cpu=(cpu_before, cpu_after), machine=(machine_before, machine_after),
            load=(load_before, load_average()), exits=exits, history_rows=info["history_rows"])}
    except BaseException:
        print(f"  the run failed; the workers' logs are in {stack.tmp}", file=sys.stderr, flush=True)
        raise
    finally:
        await stack.close()
    shutil.rmtree(stack.tmp, ignore_errors=True)
    return result


async def run_cancellable(workers: int, options: Options) -> dict[str, Any]:
    cancel_on_signals()
    return await run_one(workers, options)


async def top_statements(db: Database, count: int = 8) -> list[dict[str, Any]]:
    """PostgreSQL's busiest statements of the run (pg_stat_statements), by total execution time."""
    rows = await db.fetchall(
        "SELECT calls, total_exec_time AS total_ms, rows, query FROM pg_stat_statements"
        " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " ORDER BY total_exec_time DESC LIMIT ?", (count,))
    return [{"calls": int(r["calls"]), "total_s": round(float(r["total_ms"]) / 1000, 1),
             "mean_ms": round(float(r["total_ms"]) / max(1, int(r["calls"])), 2), "rows": int(r["rows"]),
             "query": " ".join(str(r["query"]).split())[:160]} for r in rows]


def postgres_rss(postmaster: int) -> dict[str, Any]:
    """PostgreSQL's memory: each backend's peak counts the shared buffers it touched, so the private
    part (RssAnon) is summed, and the largest peak shown per backend."""
    pids = [postmaster, *children_of(postmaster)]
    peaks = [proc_status(pid, "VmHWM") or 0.0 for pid in pids]
    return {"processes": len(pids), "backend_peak_mb_max": round(max(peaks), 1),
            "private_mb_total": round(sum(proc_status(pid, "RssAnon") or 0.0 for pid in pids), 1)}


async def read_fakes(controls: dict[str, str]) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=120) as client:
        tasks = (await client.get(f"{controls['vendors']}/tasks")).json()
        stats = (await client.get(f"{controls['vendors']}/stats")).json()
        posts = (await client.get(f"{controls['discord']}/posts")).json()
    return {"tasks": tasks, "vendor_stats": stats, "discord": posts}


# --- figures -----------------------------------------------------------------------------------------

def per_second(instants: list[float], start: float, end: float) -> tuple[float | None, float | None]:
    """(peak over any wall-clock second, mean over [start, end]) of events at `instants`."""
    if not instants or end <= start:
        return None, None
    counts = Counter(int(t) for t in instants)
    return float(max(counts.values())), round(len(instants) / (end - start), 1)


def status_rates(series: list[list[Any]], start: float, end: float, steady_from: float) -> dict[str, Any]:
    """Status checks per second from the vendor fakes' per-second counts, between `start` and `end`;
    `steady` is the mean from `steady_from` (every job submitted) on: what a saturated run holds."""
    inside = [(float(at), int(counts.get("query", 0))) for at, counts in series if start < at <= end + 1]
    if not inside:
        return {"peak": None, "mean": None, "steady": None, "total": 0}
    steady = [n for at, n in inside if at > steady_from]
    return {"peak": max(n for _, n in inside), "mean": round(sum(n for _, n in inside) / max(1.0, end - start), 1),
            "steady": round(sum(steady) / len(steady), 1) if steady else None, "total": sum(n for _, n in inside)}


def correctness(rows: list[dict[str, Any]], created: dict[int, float], posts: list[list[Any]],
                tasks: list[list[Any]]) -> dict[str, Any]:
    posted = Counter(str(nonce) for _, nonce, _ in posts)
    ids = {int(r["id"]) for r in rows}
    prompts = Counter(str(task[8]) for task in tasks)  # a vendor task per submit: a prompt twice was sent twice
    return {
        "created": len(created), "rows": len(rows),
        "delivered": sum(r["delivery_state"] == "delivered" for r in rows),
        "posted_once": sum(posted.get(f"fc-job-{i}", 0) == 1 for i in ids),
        "posted_twice": sum(posted.get(f"fc-job-{i}", 0) > 1 for i in ids),
        "not_posted": sum(f"fc-job-{i}" not in posted for i in ids),
        "vendor_tasks": sum(prompts.values()), "submitted_twice": sum(n > 1 for n in prompts.values()),
        "statuses": dict(Counter(str(r["status"]) for r in rows)),
    }


def latencies(rows: list[dict[str, Any]], posts: list[list[Any]], tasks: list[list[Any]]) -> dict[str, Any]:
    """Completion-to-notify: the vendor task's finish -> its result post's arrival at Discord."""
    finishes = {(name, task_id): finishes_at for name, task_id, _, finishes_at, *_ in tasks}
    arrived: dict[str, float] = {}
    for at, nonce, _ in posts:
        arrived.setdefault(str(nonce), float(at))
    lags = []
    for row in rows:
        finish = finishes.get((row["provider"], row["provider_task_id"] or ""))
        post = arrived.get(f"fc-job-{row['id']}")
        if finish is not None and post is not None:
            lags.append(max(0.0, post - finish))
    return {"jobs": len(lags), "p50": rnd(percentile(lags, 0.5)), "p95": rnd(percentile(lags, 0.95)),
            "p99": rnd(percentile(lags, 0.99)), "max": rnd(max(lags) if lags else None)}


def cpu_figures(cpu: tuple[dict[str, float], dict[str, float]], machine: tuple[tuple[float, float], ...],
                seconds: float) -> dict[str, Any]:
    before, after = cpu
    used = {name: round(after[name] - before.get(name, 0.0), 1) for name in after if name != "machine"}
    busy = machine[1][0] - machine[0][0]
    total = machine[1][1] - machine[0][1]
    ours = sum(used.values())
    return {"seconds": used, "ours": round(ours, 1), "machine_busy": round(busy, 1),
            "machine_cores_used": round(busy / seconds, 2) if seconds else None,
            "machine_share": round(busy / total, 3) if total else None,
            "others": round(max(0.0, busy - ours), 1),
            "postgres_share_of_ours": round(used.get("postgres", 0.0) / ours, 3) if ours else None}


def ours(sample: dict[str, Any]) -> float:
    """Cores this run's processes used in one sample (the machine's own figure left out)."""
    return float(sum(v for k, v in sample["cores"].items() if k != "machine"))


def busiest(samples: list[dict[str, Any]], seconds: int = 10) -> dict[str, Any]:
    """The `seconds` consecutive samples in which this run's processes used the most CPU: who used it,
    and the whole machine's use (other users of the machine included) in the same stretch."""
    if len(samples) < seconds:
        return {}
    best = max(range(len(samples) - seconds + 1), key=lambda i: sum(ours(s) for s in samples[i:i + seconds]))
    window = samples[best:best + seconds]
    names = window[0]["cores"].keys()
    return {"at": window[0]["t"], "cores": {n: round(sum(s["cores"].get(n, 0.0) for s in window) / seconds, 2)
                                            for n in names},
            "ours": round(sum(ours(s) for s in window) / seconds, 2), "waiting_max": max(s["waiting"] for s in window)}


def summarise(*, workers: int, options: Options, started: float, ended: float, created: dict[int, float],
              create_ms: list[float], delivered: int, rows: list[dict[str, Any]], fakes: dict[str, Any],
              samples: list[dict[str, Any]], peaks: dict[str, float | None], postgres_memory: dict[str, Any],
              cpu: tuple[dict[str, float], dict[str, float]], machine: tuple[tuple[float, float], ...],
              load: tuple[str, str], exits: list[int], history_rows: int) -> dict[str, Any]:
    tasks, posts = fakes["tasks"], fakes["discord"]["posts"]
    post_times = [float(p[0]) for p in posts]
    submitted = [float(t[2]) for t in tasks]
    first_post = min(post_times) if post_times else ended
    delivered_peak, delivered_mean = per_second(post_times, first_post, max(post_times, default=ended))
    waiting = [s["waiting"] for s in samples]
    return {
        "workers": workers, "jobs": options.jobs, "saturate": options.saturate, "vendor_latency": options.latency,
        "history_rows": history_rows, "wall_seconds": round(ended - started, 1),
        "arrival_span": round(max(created.values()) - started, 1) if created else None,
        "submit_span": round(max(submitted) - started, 1) if submitted else None,
        "create_ms_p50": rnd(percentile(create_ms, 0.5)), "create_ms_p99": rnd(percentile(create_ms, 0.99)),
        "status_checks": status_rates(fakes["vendor_stats"]["series"], started, ended,
                                      max(submitted, default=ended) + STEADY_AFTER),
        "delivered_per_second": {"peak": delivered_peak, "mean": delivered_mean},
        "latency": latencies(rows, posts, tasks),
        "correct": {**correctness(rows, created, posts, tasks), "delivered_by_count": delivered,
                    "worker_exits": exits},
        "memory_mb": {**{n: rnd(v) for n, v in peaks.items()}, "postgres": postgres_memory,
                      "driver": rnd(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)},
        "cpu": cpu_figures(cpu, machine, ended - started),
        "backlog": {"peak": max(waiting, default=0), "mean": round(sum(waiting) / len(waiting), 1) if waiting else 0,
                    "seconds_over_100": sum(w > 100 for w in waiting)},
        "busiest_10s": busiest(samples), "load": {"before": load[0], "after": load[1]},
        "samples": samples,
    }


def rnd(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


# --- entry point ---------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4], help="worker counts, one run each")
    parser.add_argument("--latency", type=float, default=0.25, help="seconds per vendor round trip (+-30%%)")
    parser.add_argument("--channels", type=int, default=500, help="Discord channels the results go to")
    parser.add_argument("--saturate", type=float, metavar="SECONDS",
                        help="every running job due every second; measure for SECONDS, then stop")
    parser.add_argument("--timeout", type=float, default=1800.0, help="give up waiting for deliveries after this")
    parser.add_argument("--log-level", default="INFO", help="the workers' LOG_LEVEL")
    parser.add_argument("--poll-interval", type=float,
                        help="POLL_INTERVAL_SECONDS for the workers (default: the learned schedule)")
    parser.add_argument("--duration-scale", type=float, default=1.0,
                        help="quick runs only: every vendor task takes this fraction of the workload's time")
    parser.add_argument("--arrival-window", type=float, default=ARRIVAL_WINDOW,
                        help="seconds over which the jobs are ordered (the workload's: 30)")


def options_from(args: argparse.Namespace, jobs: int) -> Options:
    return Options(jobs=jobs, seed=args.seed, sigma=args.sigma or SIGMA, latency=args.latency,
                   channels=args.channels, cold=args.cold, saturate=args.saturate, timeout=args.timeout,
                   log_level=args.log_level, poll_interval=args.poll_interval, duration_scale=args.duration_scale,
                   arrival_window=args.arrival_window)


def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """One fresh run per (jobs, workers), one at a time; a table each and the comparison."""
    results: list[dict[str, Any]] = []
    for jobs in args.jobs:
        runs = []
        for workers in args.workers:
            print(f"  {jobs} jobs, {workers} worker(s): starting (load {load_average()})", flush=True)
            result = asyncio.run(run_cancellable(workers, options_from(args, jobs)))
            print_run(result)
            runs.append(result)
        print_comparison(runs)
        results += runs
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, nargs="+", default=[10_000])
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--sigma", type=float)
    parser.add_argument("--cold", action="store_true", help="no finished jobs in the database (catalog priors)")
    parser.add_argument("--json", type=Path, help="also write every raw result to this file")
    add_arguments(parser)
    run_all(parser.parse_args())


if __name__ == "__main__":
    main()
