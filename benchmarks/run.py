"""Framecast speed/cost benchmark: `python benchmarks/run.py` (see docs/performance.md).

`--postgres`: the PostgreSQL mode instead, real worker processes scaling out on one database
(benchmarks/scale.py): `python benchmarks/run.py --postgres --jobs 10000 --workers 1 2 4`.

Runs each scenario (jobs in flight x polling/callback with the learned schedule, and the naive
baseline for each count: the same bot polling every job every 10 s, no callbacks) in its own process,
so each one's CPU time and peak memory are its own, and prints a table per count and mode with ratios.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SCENARIO = Path(__file__).resolve().parent / "scenario.py"

# (label, key in the result, unit)
ROWS: list[tuple[str, str, str]] = [
    ("notify latency p50 (all jobs)", "all.latency_p50", "s"),
    ("notify latency p95 (all jobs)", "all.latency_p95", "s"),
    ("notify latency p99 (all jobs)", "all.latency_p99", "s"),
    ("succeeded jobs: latency p50", "succeeded.latency_p50", "s"),
    ("succeeded jobs: latency p99", "succeeded.latency_p99", "s"),
    ("failed jobs (5%): latency p50", "failed.latency_p50", "s"),
    ("status requests / job", "all.status_requests_per_job", ""),
    ("status requests / job, p99", "all.status_requests_p99", ""),
    ("kie jobs: latency p50", "kie.latency_p50", "s"),
    ("kie jobs: latency p99", "kie.latency_p99", "s"),
    ("kie jobs: requests / job", "kie.status_requests_per_job", ""),
    ("interaction p50", "interaction_ms_p50", "ms"),
    ("interaction p99", "interaction_ms_p99", "ms"),
    ("interaction max", "interaction_ms_max", "ms"),
    ("interaction p50, 60 s at real pace", "paced_interaction_ms_p50", "ms"),
    ("interaction p99, 60 s at real pace", "paced_interaction_ms_p99", "ms"),
    ("interaction max, 60 s at real pace", "paced_interaction_ms_max", "ms"),
    ("CPU share, 60 s at real pace", "paced_cpu_share", ""),
    ("jobs done in those 60 s: latency p50", "paced.latency_p50", "s"),
    ("jobs done in those 60 s: latency p99", "paced.latency_p99", "s"),
    ("CPU seconds (whole run)", "cpu_seconds_total", "s"),
    ("CPU share at real pace", "cpu_share_at_real_pace", ""),
    ("idle CPU share, jobs waiting (3 s at real pace)", "idle_cpu_share", ""),
    ("idle window: starts (simulated, after the first order)", "idle_window_at", "s"),
    ("idle window: jobs due in it (0 = truly idle)", "idle_window_due", ""),
    ("peak RSS (bot process)", "peak_rss_mb", "MB"),
    ("vendor fakes' CPU seconds (other process)", "vendor_cpu_seconds", "s"),
    ("wall time", "wall_seconds", "s"),
]


def lookup(result: dict[str, Any], dotted: str) -> Any:
    value: Any = result
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def run_scenario(jobs: int, mode: str, schedule: str, seed: int, extra: list[str]) -> dict[str, Any]:
    command = [sys.executable, str(SCENARIO), "--jobs", str(jobs), "--mode", mode, "--schedule", schedule,
               "--seed", str(seed), *extra]
    started = time.perf_counter()
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.stderr.write(completed.stderr[-4000:])
        raise SystemExit(f"scenario {jobs}/{mode}/{schedule} failed")
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    print(f"  {jobs:>6} jobs  {mode:<8} {schedule:<7} done in {time.perf_counter() - started:5.1f} s", flush=True)
    return result


def fmt(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.3f}" if abs(value) < 1 else f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def ratio(ours: Any, baseline: Any) -> str:
    if not isinstance(ours, (int, float)) or not isinstance(baseline, (int, float)) or not ours:
        return "-"
    return f"{baseline / ours:.1f}x"


def print_table(jobs: int, mode: str, ours: dict[str, Any], baseline: dict[str, Any]) -> None:
    print(f"\n### {jobs} jobs in flight, {mode} mode\n")
    print(f"| measure | learned schedule ({ours['jobs']} jobs) | naive 10 s polling ({baseline['jobs']} jobs)"
          " | baseline / ours |")
    print("| --- | --- | --- | --- |")
    for label, key, unit in ROWS:
        a, b = lookup(ours, key), lookup(baseline, key)
        shown = "-" if key.startswith("idle_window") else ratio(a, b)  # where, not how well
        print(f"| {label} | {fmt(a, unit)} | {fmt(b, unit)} | {shown} |")


def main() -> None:
    from benchmarks import scale  # the PostgreSQL mode's tables read this module's `lookup`

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, nargs="+",
                        help="jobs in flight (several allowed, e.g. 1000 10000; default 1000, with --postgres 10000)")
    parser.add_argument("--modes", nargs="+", choices=("polling", "callback"), default=["polling", "callback"])
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--baseline-jobs", type=int,
                        help="run the naive baseline on at most this many jobs (default: as many as ours;"
                             " it costs ~20 real requests per job, ~5 min at 10,000)")
    parser.add_argument("--sigma", type=float, help="log-normal sigma of one kind's durations (default 0.15)")
    parser.add_argument("--cold", action="store_true", help="start with no finished jobs in the database")
    parser.add_argument("--failures", choices=("realistic", "midway"), default="realistic",
                        help="when failing tasks fail: the default mix, or all part-way (benchmarks/workload.py)")
    parser.add_argument("--json", type=Path, help="also write every raw result to this file")
    parser.add_argument("--postgres", action="store_true",
                        help="real worker processes on PostgreSQL, wall clock (benchmarks/scale.py); options below")
    scale.add_arguments(parser.add_argument_group("--postgres"))
    args = parser.parse_args()
    if args.postgres:
        args.jobs = args.jobs or [10_000]
        scale.run_all(args)
        return
    args.jobs = args.jobs or [1000]
    extra = ((["--sigma", str(args.sigma)] if args.sigma else []) + (["--cold"] if args.cold else [])
             + ["--failures", args.failures])
    results: list[dict[str, Any]] = []
    # One baseline per count, for both modes: a naive bot polls and takes no callbacks.
    baselines: dict[int, dict[str, Any]] = {}
    print("running scenarios (each in its own process, one at a time):", flush=True)
    for jobs in args.jobs:
        baseline_jobs = jobs if args.baseline_jobs is None else min(jobs, args.baseline_jobs)
        for mode in args.modes:
            ours = run_scenario(jobs, mode, "learned", args.seed, extra)
            if baseline_jobs not in baselines:
                baselines[baseline_jobs] = run_scenario(baseline_jobs, "polling", "fixed", args.seed, extra)
                results.append(baselines[baseline_jobs])
            results.append(ours)
            print_table(jobs, mode, ours, baselines[baseline_jobs])
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
