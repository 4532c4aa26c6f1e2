"""One gateway and three workers as separate processes on PostgreSQL: 200 jobs with vendor faults while
workers are SIGKILLed at random and restarted. Nothing lost, nothing submitted, posted or charged twice.

The processes are the real `python -m bot gateway` / `python -m bot worker` against the loopback Discord
and the vendor fakes (wall clock), on the session's throwaway PostgreSQL server. Vendor callbacks are off
(PUBLIC_BASE_URL unset): a callback addressed to a killed worker would only slow the run down, and the
poller is the safety net the guarantees rest on. The seed makes a run reproducible.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter
from pathlib import Path

import pytest

from storage.database import Database, open_database
from tests.e2e.harness import BotHarness, RoleProcess, free_port
from tests.fakes.vendors import Fault
from tests.reliability.fault_fakes import result_messages

JOBS = 200
WORKERS = 3
KILLS = 8
SEED = int(os.environ.get("FRAMECAST_CRASH_SEED", "20261205"))
UNFINISHED = ("SELECT status, COUNT(*) AS n, MIN(next_due_at) AS due, MAX(error_streak) AS streak FROM jobs"
              " WHERE next_due_at IS NOT NULL GROUP BY status")
TERMINAL = ("succeeded", "failed", "timed_out", "cancelled")


@pytest.fixture
def engine() -> str:
    """`database_url` (tests/conftest.py) is a fresh database on the session's PostgreSQL server."""
    return "postgres"


def vendor_fault(rng: random.Random, endpoint: str) -> Fault:
    faults = [Fault.http(500), Fault.http(502, "<html>bad gateway</html>"), Fault.reset(), Fault.non_json(200),
              Fault.http(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "1"})]
    if endpoint == "create":
        faults.append(Fault.lost_response())
    return rng.choice(faults)


class Workers:
    """WORKERS slots, each one `python -m bot worker` at a time, each with its own HTTP port."""

    def __init__(self, harness: BotHarness) -> None:
        self.harness = harness
        self.ports = [free_port() for _ in range(WORKERS)]
        self.running: list[RoleProcess | None] = [None] * WORKERS
        self.starts = 0

    async def start(self, slot: int) -> None:
        self.starts += 1
        self.running[slot] = await self.harness.spawn(
            "worker", name=f"worker-{slot}-{self.starts}", env={"HTTP_LISTEN": f"127.0.0.1:{self.ports[slot]}"})

    async def kill_and_restart(self, slot: int) -> None:
        process = self.running[slot]
        assert process is not None
        assert await process.stop(signal.SIGKILL) == -signal.SIGKILL
        await self.start(slot)

    async def stop_all(self) -> list[int]:
        return [await p.stop() for p in self.running if p is not None]


async def _finished(db: Database) -> int:
    return int(await db.fetchval(
        "SELECT COUNT(*) FROM jobs WHERE next_due_at IS NULL AND status IN ('succeeded','failed','timed_out','cancelled')"))


async def test_workers_killed_at_random_on_postgres_lose_and_duplicate_nothing(
        tmp_path: Path, database_url: str) -> None:
    rng = random.Random(SEED)
    env = {"DATABASE_URL": database_url, "PUBLIC_BASE_URL": "", "HTTP_LISTEN": "",
           "QUOTA_DAILY_CREDITS": "100000", "QUOTA_MAX_CONCURRENT_JOBS": "100", "PROVIDER_MAX_IN_FLIGHT": "100",
           "KIE_SUBMITS_PER_10S": "10000", "UNCERTAIN_SUBMIT_GRACE_SECONDS": "4", "LEASE_SECONDS": "5",
           "POLL_INTERVAL_SECONDS": "0.5", "POLL_MIN_INTERVAL_SECONDS": "0.3", "POLL_MAX_INTERVAL_SECONDS": "1", "LOG_LEVEL": "WARNING"}
    async with BotHarness(tmp_path, vendor_duration=1.5, vendors=("kie", "kkiai"), extra_env=env) as harness:
        discord = harness.discord
        db = await open_database(database_url)
        try:
            gateway = await harness.spawn("gateway", name="gateway", env={"LOG_LEVEL": "INFO"})
            await gateway.wait_for_log("gateway connected as", timeout=60)
            workers = Workers(harness)
            for slot in range(WORKERS):
                await workers.start(slot)

            async def send_commands() -> None:
                for n in range(JOBS):
                    family = "veo" if n % 2 else "sora"
                    payload = discord.slash_command(family, {"prompt": f"crash run job {n}"},
                                                    user_id=1_500_000_000_000_000_000 + n)
                    await discord.dispatch_interaction(payload)
                    if n % 20 == 0:
                        for vendor in (harness.kie, harness.unified):
                            endpoint = rng.choice(["create", "query"])
                            vendor.inject(endpoint, vendor_fault(rng, endpoint))
                    await asyncio.sleep(0.02)

            async def kill_at_random() -> None:
                for _ in range(KILLS):
                    await asyncio.sleep(rng.uniform(1.0, 3.0))
                    await workers.kill_and_restart(rng.randrange(WORKERS))

            await asyncio.gather(send_commands(), kill_at_random())
            await harness.wait_for(lambda: len(discord.interaction_callbacks) >= JOBS, "every command answered",
                                   timeout=30)
            deadline = asyncio.get_running_loop().time() + 120
            while await _finished(db) < JOBS:
                assert asyncio.get_running_loop().time() < deadline, (
                    f"{JOBS - await _finished(db)} job(s) not finished: "
                    f"{[dict(r) for r in await db.fetchall(UNFINISHED)]}")
                await asyncio.sleep(0.2)

            assert await workers.stop_all() == [0] * WORKERS and await gateway.stop() == 0
            jobs = [dict(r) for r in await db.fetchall("SELECT id, status, prompt, delivery_state FROM jobs")]
            ledger = await db.fetchall("SELECT job_id, kind FROM credit_ledger WHERE kind IN ('charge','release')")
        finally:
            await db.close()

        # 0 lost: every command made a job, every job ended and its result (or its failure) was posted.
        assert len(jobs) == JOBS and all(j["status"] in TERMINAL for j in jobs)
        assert [j["id"] for j in jobs if j["delivery_state"] != "delivered"] == []
        # 0 posted twice.
        assert {j["id"]: len(result_messages(discord, j["id"])) for j in jobs} == {j["id"]: 1 for j in jobs}
        # 0 charged twice: one settlement per job, a charge only for a success.
        settled = Counter(r["job_id"] for r in ledger)
        assert set(settled.values()) == {1} and len(settled) == JOBS
        charged = {r["job_id"] for r in ledger if r["kind"] == "charge"}
        assert charged == {j["id"] for j in jobs if j["status"] == "succeeded"}
        # 0 submitted twice: at most one vendor task per job's prompt.
        prompts = Counter(str(task.body.get("prompt")) for vendor in (harness.kie, harness.unified)
                          for task in vendor.tasks.values())
        assert [p for p, n in prompts.items() if n > 1] == []
        assert workers.starts == WORKERS + KILLS
        assert sum(j["status"] == "succeeded" for j in jobs) > JOBS // 2  # the faults did not fail everything
