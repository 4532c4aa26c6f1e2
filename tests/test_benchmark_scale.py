"""The benchmark's PostgreSQL mode still runs end to end: a few dozen jobs, one real worker, short vendor
tasks. Nothing here is timed (speed is the benchmark's business, not a test's): it checks that every
job was delivered exactly once and that each figure the tables print was measured."""

from __future__ import annotations

import pytest

from benchmarks.scale import Options, run_one
from fakes.postgres import postgres_bindir

JOBS = 24


@pytest.mark.skipif(postgres_bindir() is None, reason="no PostgreSQL binaries (the CI installs them)")
async def test_postgres_mode_delivers_every_job_once_and_measures_it() -> None:
    options = Options(jobs=JOBS, cold=True, latency=0.0, channels=5, duration_scale=0.02, poll_interval=0.5,
                      arrival_window=2.0, timeout=120.0)
    result = await run_one(1, options)
    correct = result["correct"]
    assert (correct["created"], correct["rows"], correct["delivered"], correct["posted_once"]) == (JOBS,) * 4
    assert (correct["posted_twice"], correct["not_posted"], correct["submitted_twice"]) == (0, 0, 0)
    assert correct["vendor_tasks"] == JOBS and correct["worker_exits"] == [0]
    assert result["latency"]["jobs"] == JOBS and result["latency"]["p99"] is not None
    assert result["status_checks"]["total"] >= JOBS  # at least the check that saw each task end
    assert result["delivered_per_second"]["peak"] is not None
    memory, cpu = result["memory_mb"], result["cpu"]["seconds"]
    assert memory["worker 1"] and memory["postgres"]["processes"] >= 2
    assert cpu["worker 1"] > 0 and cpu["postgres"] > 0
    assert result["samples"], "the per-second sampler ran"
