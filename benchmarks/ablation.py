"""The poll schedule alone, in simulated time: what each of its parts buys, and how it does cold.

The bot's own `PollSchedule` plans from a history of finished jobs (the benchmark's workload: same
mix, durations and failures as `benchmarks/workload.py`), read through an in-memory stand-in for the
repository's `planning_history`; then fresh jobs are walked through `next_poll_at` exactly as the poller
asks it (job ids for the plan pairs, Kling's percentage as progress, exploratory polls drawn from the
schedule's own random source). A job is noticed `--notice` seconds after the poll that finds it done
(one vendor round trip). No database, no HTTP, no wall clock: the figures do not depend on the load of
the machine, unlike `benchmarks/run.py`'s, which add the bot's real processing time.

    python benchmarks/ablation.py [--jobs 20000] [--histories 3] [--variants full cold ...]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.sim import percentile
from benchmarks.workload import HISTORY_PER_KIND, REQUEST_MIX, SIGMA, draw_outcome
from bot.catalog import Family, ProviderName, get_model
from bot.clock import FakeClock
from bot.jobs.models import KindHistory
from bot.jobs.placement import LATE_SECONDS
from bot.jobs.schedule import PollSchedule
from bot.validation import GenerationRequest, validate_request

NOTICE = 0.25  # seconds from sending the poll that finds a job to handing its result over


@dataclass
class Row:
    """One finished job as the history queries see it."""

    model_key: str
    mode: str
    provider: ProviderName
    took: float
    succeeded: bool
    poll_count: int = 0
    progress: float | None = None


class MemoryHistory:
    """The repository's `planning_history` over an in-memory list (newest last)."""

    def __init__(self, rows: list[Row], submitted: list[Row]) -> None:
        self.rows = rows
        self.submitted = submitted  # the jobs being judged count in the mix once submitted, as in the bot

    async def planning_history(self, also: tuple[str, str], *, mix_rows: int, history_rows: int,
                               vendor_rows: int) -> list[KindHistory]:
        mix = Counter((row.model_key, row.mode) for row in (self.rows + self.submitted)[-mix_rows:])
        mix.setdefault(also, 1)
        kinds = []
        for (model_key, mode), jobs in sorted(mix.items()):
            provider = get_model(model_key).provider
            successes = [r for r in self.rows if r.succeeded and r.model_key == model_key and r.mode == mode]
            latest = successes[-history_rows:]
            vendor = [r for r in self.rows if r.provider is provider][-vendor_rows:]
            kinds.append(KindHistory(
                model_key, mode, jobs, [r.took for r in reversed(latest)], [r.took for r in vendor if not r.succeeded],
                len(vendor), len(latest), sum(r.poll_count for r in latest) / max(1, len(latest)),
                sum(r.progress is not None for r in latest) / max(1, len(latest))))
        return kinds


def _kinds() -> list[tuple[float, str, str, ProviderName]]:
    """(weight, model_key, mode, provider) of the workload's orders, as the bot validates them."""
    kinds = []
    for weight, fields in REQUEST_MIX:
        request = GenerationRequest(prompt="ablation", upsample=False if fields["family"] is Family.VEO else None,
                                    **fields)
        spec = validate_request(request, set(ProviderName), None)
        kinds.append((weight, spec.model_key, spec.mode.value, spec.provider))
    return kinds


def _draw_jobs(rng: random.Random, count: int, sigma: float, failures: str) -> list[Row]:
    kinds = _kinds()
    picks = rng.choices(kinds, weights=[k[0] for k in kinds], k=count)
    rows = []
    for _, model_key, mode, provider in picks:
        took, succeeded = draw_outcome(rng, get_model(model_key).vendor_model, sigma, failures)
        rows.append(Row(model_key, mode, provider, took, succeeded))
    return rows


def _history(rng: random.Random, sigma: float, failures: str, per_kind: int) -> list[Row]:
    """Jobs in the workload's mix until every kind has `per_kind` successes. Kling's gateway does not
    date its finish, so its history is recorded as observed, 0-5 s late (as in the benchmark)."""
    rows: list[Row] = []
    while True:
        batch = _draw_jobs(rng, 2000, sigma, failures)
        for row in batch:
            if row.provider is ProviderName.KLING:
                row.took += rng.uniform(0.0, 5.0)
        rows += batch
        counts: dict[tuple[str, str], int] = {}
        for row in rows:
            counts[(row.model_key, row.mode)] = counts.get((row.model_key, row.mode), 0) + row.succeeded
        if min(counts.values()) >= per_kind:
            return rows


async def walk(schedule: PollSchedule, row: Row) -> tuple[int, float, float | None]:
    """(status requests, lag, last progress figure) of one job through the schedule, as the poller asks."""
    reports_progress = row.provider is ProviderName.KLING
    kind: dict[str, Any] = {"model_key": row.model_key, "mode": row.mode, "submitted_at": 0.0}
    at = await schedule.next_poll_at(now=0.0, **kind)
    requests, previous = 0, None
    while True:
        requests += 1
        if at >= row.took:
            return requests, at + NOTICE - row.took, previous
        progress = math.floor(100 * at / row.took) / 100 if reports_progress else None
        at = await schedule.next_poll_at(now=at, progress=progress, previous_progress=previous, **kind)
        previous = progress


# Each variant: PollSchedule options, and whether the history is empty (a new server).
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "full": ({}, False),
    "no kernel smoothing": ({"smooth_history": False}, False),
    "no vendor failure mixing": ({"vendor_failures": False}, False),
    "no shared budget": ({"shared_budget": False}, False),
    "cold (no history)": ({}, True),
}


async def run_variant(options: dict[str, Any], cold: bool, *, seed: int, jobs: int, histories: int, sigma: float,
                      failures: str, per_kind: int,
                      make: Callable[..., PollSchedule] = PollSchedule) -> dict[str, float]:
    lags: list[float] = []
    failed_lags: list[float] = []
    requests = 0
    for h in range(histories):
        rng = random.Random(seed + h)
        rows = [] if cold else _history(rng, sigma, failures, per_kind)
        fresh = _draw_jobs(random.Random(seed + 1000 + h), jobs // histories, sigma, failures)
        source = MemoryHistory(rows, [])
        clock = FakeClock()
        schedule = make(source, clock, **options)  # type: ignore[arg-type]
        # The progress-paced kinds' history costs what the bot's schedule makes of it (first pass), then
        # the budget is shared with those costs known.
        for row in rows:
            if row.provider is ProviderName.KLING and row.succeeded:
                row.poll_count, _, row.progress = await walk(schedule, row)
        clock.advance(schedule.cache_seconds + 1)
        source.submitted = fresh
        for row in fresh:
            count, lag, _ = await walk(schedule, row)
            requests += count
            lags.append(lag)
            if not row.succeeded:
                failed_lags.append(lag)
    total = len(lags)
    return {"p50": percentile(lags, 0.5) or 0.0, "p95": percentile(lags, 0.95) or 0.0,
            "p99": percentile(lags, 0.99) or 0.0, "late": sum(lag > LATE_SECONDS for lag in lags) / total,
            "failed_p50": percentile(failed_lags, 0.5) or 0.0, "requests": requests / total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20_000, help="fresh jobs judged per variant (over all histories)")
    parser.add_argument("--histories", type=int, default=3, help="independent histories the plans are learned from")
    parser.add_argument("--seed", type=int, default=20240601)
    parser.add_argument("--sigma", type=float, default=SIGMA)
    parser.add_argument("--failures", default="realistic", choices=("realistic", "midway"))
    parser.add_argument("--history", type=int, default=HISTORY_PER_KIND, help="past successes per kind")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    print(f"{args.jobs} jobs per variant over {args.histories} histories of {args.history} successes per kind;"
          f" failures '{args.failures}', sigma {args.sigma}; each result handed over {NOTICE:g} s after its poll\n")
    print("| variant | p50 | p95 | p99 | late (> 10 s) | failed jobs p50 | status requests / job |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name in args.variants:
        options, cold = VARIANTS[name]
        result = asyncio.run(run_variant(options, cold, seed=args.seed, jobs=args.jobs, histories=args.histories,
                                         sigma=args.sigma, failures=args.failures, per_kind=args.history))
        print(f"| {name} | {result['p50']:.2f} s | {result['p95']:.2f} s | {result['p99']:.2f} s | {result['late']:.2%}"
              f" | {result['failed_p50']:.1f} s | {result['requests']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
