"""SIGKILL the real bot process at precise points of a job's life, restart it, and check every promise.

Each test stops the bot where a crash hurts most - after the job row is written, while the submit is on
the wire, after the vendor finished, after the result is committed but not posted, after Discord made the
message but before the bot learned its id - by holding exactly that request in a fake (or by waiting for
a database state), then kills it with SIGKILL and starts a new process on the same database.

After each: one credit hold and one settlement per job, delivered exactly once, one vendor task per job,
one result message per job in the fake Discord (`crash_support.invariant_violations`).
Vendor tasks run "forever" (`vendor_duration`) until a test finishes them, so nothing races the kill.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from tests.e2e.harness import KIE_KEY, KIE_WEBHOOK_KEY, KKIAI_KEY, KLING_KEY, READY_LOG_LINE, BotHarness, free_port
from fakes.discord_api import FakeDiscord
from fakes.vendors import Fault, FakeVendor
from fakes.postgres import PostgresServer
from tests.reliability.crash_support import invariant_violations, log_problems, restart, rows, wait_for_row
from tests.reliability.fault_fakes import GatedDiscord, HoldingKie, HoldingUnified, result_messages

FOREVER = 3600.0
SUBMITTED_WITH_THREAD = "SELECT id FROM jobs WHERE status = ? AND thread_id IS NOT NULL"
DELIVERED = "SELECT id, status FROM jobs WHERE delivery_state = 'delivered'"
# `submitting`, or already `uncertain` if the process noticed its own lease lapse while the answer hung.
ON_THE_WIRE = "SELECT id FROM jobs WHERE status IN ('submitting', 'uncertain') AND thread_id IS NOT NULL"


@asynccontextmanager
async def crash_harness(tmp_path: Path, **extra_env: str) -> AsyncIterator[tuple[BotHarness, GatedDiscord]]:
    harness = BotHarness(tmp_path, vendor_duration=FOREVER, extra_env={"LEASE_SECONDS": "3", **extra_env})
    # The harness's own fakes, swapped for ones that can hold a request at a precise point.
    discord = GatedDiscord()
    harness.discord = discord
    harness.kie = HoldingKie(api_key=KIE_KEY, duration=FOREVER, hd_delay=None, callback_key=KIE_WEBHOOK_KEY)
    harness.unified = HoldingUnified(api_key=KKIAI_KEY, duration=FOREVER)
    try:
        async with harness:
            yield harness, discord
        # Every crash test is also a log test: what the killed and restarted processes wrote.
        secrets = [KIE_KEY, KKIAI_KEY, KLING_KEY, KIE_WEBHOOK_KEY, discord.token]
        assert log_problems(harness, secrets) == []
    finally:
        discord.open_gate()
        harness.kie.open_gate()
        harness.unified.open_gate()


async def command(harness: BotHarness, name: str, prompt: str, user_id: int = FakeDiscord.USER_ID) -> None:
    await harness.discord.dispatch_interaction(harness.discord.slash_command(name, {"prompt": prompt},
                                                                             user_id=user_id))


def finish_all(vendor: FakeVendor) -> None:
    for task_id in list(vendor.tasks):
        vendor.finish_now(task_id)


async def restart_and_finish(harness: BotHarness, vendor: FakeVendor) -> dict[str, object]:
    await restart(harness)
    await harness.wait_for(lambda: vendor.tasks, "a vendor task")
    finish_all(vendor)
    return await wait_for_row(harness, DELIVERED, "delivered after restart", timeout=25)


async def test_kill_after_the_job_row_is_written_before_any_submit(tmp_path: Path) -> None:
    async with crash_harness(tmp_path) as (harness, discord):
        await harness.start_bot()
        harness.kie.unavailable = True  # 503: the job stays queued, nothing reaches the vendor
        await command(harness, "veo", "crash point: queued")
        await wait_for_row(harness, "SELECT id FROM jobs WHERE status = 'queued' AND submit_attempts >= 1"
                                    " AND thread_id IS NOT NULL", "job written and waiting")
        assert await harness.kill() == -9
        assert await rows(harness, "SELECT kind FROM credit_ledger WHERE job_id = 1") == [{"kind": "hold"}]
        assert harness.kie.tasks == {}

        harness.kie.unavailable = False
        done = await restart_and_finish(harness, harness.kie)
        assert done["status"] == "succeeded"
        assert await harness.terminate() == 0
        assert len(harness.kie.tasks) == 1
        [result] = result_messages(discord, 1)
        assert result.channel_id in discord.threads
        assert await invariant_violations(harness) == []


async def test_kill_after_the_job_row_is_written_before_its_thread_exists(tmp_path: Path) -> None:
    """The member's command is half done (no summary, no thread): the result still arrives, in the channel."""
    async with crash_harness(tmp_path) as (harness, discord):
        await harness.start_bot()
        harness.kie.unavailable = True
        discord.hold, discord.hold_kind = "before_create", "summary"
        await command(harness, "veo", "crash point: before the thread")
        await harness.wait_for(discord.holding.is_set, "summary post held")
        await wait_for_row(harness, "SELECT id FROM jobs WHERE thread_id IS NULL", "job row written")
        assert await harness.kill() == -9
        discord.open_gate()
        harness.kie.unavailable = False

        done = await restart_and_finish(harness, harness.kie)
        assert done["status"] == "succeeded"
        assert await harness.terminate() == 0
        [result] = result_messages(discord, 1)
        assert result.channel_id == FakeDiscord.CHANNEL_ID
        assert await invariant_violations(harness) == []


async def test_kill_after_discord_made_the_thread_before_the_bot_heard(tmp_path: Path) -> None:
    """The thread exists but its answer never came back: the row named it beforehand (a public thread
    on a message has the message's id), so the result goes to the thread, not the channel."""
    async with crash_harness(tmp_path) as (harness, discord):
        await harness.start_bot()
        discord.hold, discord.hold_kind = "after_create", "thread"
        await command(harness, "veo", "crash point: thread made, answer lost")
        await harness.wait_for(discord.holding.is_set, "thread made, answer held")
        [thread_id] = discord.threads
        assert await harness.kill() == -9
        discord.open_gate()

        done = await restart_and_finish(harness, harness.kie)
        assert done["status"] == "succeeded"
        assert await harness.terminate() == 0
        [result] = result_messages(discord, 1)
        assert result.channel_id == thread_id
        assert await invariant_violations(harness) == []


async def test_kill_after_the_thread_is_recorded_before_discord_made_it(tmp_path: Path) -> None:
    """The row names the thread (the summary's id) but Discord never made it: delivery makes it on the
    summary, so the result still lands under the member's request, not in the channel."""
    async with crash_harness(tmp_path) as (harness, discord):
        await harness.start_bot()
        discord.hold, discord.hold_kind, discord.drop_held = "before_create", "thread", True
        await command(harness, "veo", "crash point: thread recorded, never made")
        await harness.wait_for(discord.holding.is_set, "thread request held")
        row = await wait_for_row(harness, "SELECT thread_id, summary_message_id FROM jobs WHERE thread_id IS NOT NULL",
                                 "thread recorded")
        assert await harness.kill() == -9
        discord.open_gate()
        assert discord.threads == {}

        done = await restart_and_finish(harness, harness.kie)
        assert done["status"] == "succeeded"
        assert await harness.terminate() == 0
        [result] = result_messages(discord, 1)
        assert result.channel_id == row["thread_id"] == row["summary_message_id"]
        assert list(discord.threads) == [row["thread_id"]]
        assert await invariant_violations(harness) == []


async def test_kill_while_the_kie_submit_is_on_the_wire_reconciles_by_callback(tmp_path: Path) -> None:
    async with crash_harness(tmp_path) as (harness, discord):
        await harness.start_bot()
        harness.kie.hold_creates = True  # kie makes the task and never answers
        await command(harness, "veo", "crash point: submit in flight (kie)")
        await harness.wait_for(harness.kie.create_is_held, "submit reached kie")
        await wait_for_row(harness, ON_THE_WIRE, "submitting committed")
        assert await harness.kill() == -9
        harness.kie.open_gate()
        assert len(harness.kie.tasks) == 1  # the task exists; the bot never heard of it

        done = await restart_and_finish(harness, harness.kie)  # kie's callback names the job
        assert done["status"] == "succeeded"
        assert await harness.terminate() == 0
        assert harness.kie.create_calls == 1  # never resent
        assert await invariant_violations(harness) == []


async def test_kill_while_a_submit_without_callback_is_on_the_wire_fails_plainly(tmp_path: Path) -> None:
    async with crash_harness(tmp_path, UNCERTAIN_SUBMIT_GRACE_SECONDS="1") as (harness, discord):
        await harness.start_bot()
        harness.unified.hold_creates = True
        await command(harness, "sora", "crash point: submit in flight (kkiai)")
        await harness.wait_for(harness.unified.create_is_held, "submit reached kkiai")
        await wait_for_row(harness, ON_THE_WIRE, "submitting committed")
        assert await harness.kill() == -9
        harness.unified.open_gate()
        assert len(harness.unified.tasks) == 1

        await restart(harness)
        done = await wait_for_row(harness, DELIVERED, "failed plainly after the grace", timeout=25)
        assert done["status"] == "failed"
        assert await harness.terminate() == 0
        assert harness.unified.create_calls == 1
        [result] = result_messages(discord, 1)
        assert "did not resend" in result.content
        assert await rows(harness, "SELECT kind FROM credit_ledger WHERE job_id = 1 ORDER BY id") == [
            {"kind": "hold"}, {"kind": "release"}]
        assert await invariant_violations(harness) == []


async def test_a_restarted_bot_takes_over_a_killed_submit_by_heartbeat_not_by_lease(tmp_path: Path) -> None:
    """LEASE_SECONDS at its 180 s default: only the dead process's stale heartbeat can move the job this soon."""
    async with crash_harness(tmp_path, LEASE_SECONDS="180", UNCERTAIN_SUBMIT_GRACE_SECONDS="3") as (harness, discord):
        await harness.start_bot()
        harness.unified.hold_creates = True
        await command(harness, "sora", "crash point: submit in flight, restart at once")
        await harness.wait_for(harness.unified.create_is_held, "submit reached kkiai")
        await wait_for_row(harness, ON_THE_WIRE, "submitting committed")
        assert await harness.kill() == -9
        await restart(harness)  # at once
        await wait_for_row(harness, "SELECT id FROM jobs WHERE status = 'uncertain'", "taken over", timeout=10)
        await harness.wait_for(lambda: [m for m in discord.messages.values() if "lost its answer" in m.content],
                               "the member told at once", timeout=10)
        harness.unified.open_gate()
        done = await wait_for_row(harness, DELIVERED, "failed plainly after the grace", timeout=25)
        assert done["status"] == "failed"  # and said so: the second word the member gets
        assert await harness.terminate() == 0
        assert harness.unified.create_calls == 1  # never resent
        assert await invariant_violations(harness) == []


async def test_on_postgresql_a_restarted_bot_takes_over_a_killed_submit_by_heartbeat(
        tmp_path: Path, postgres_server: PostgresServer, postgres_template: str) -> None:
    """The same crash with DATABASE_URL on a PostgreSQL server: the real bot process on asyncpg."""
    name = await postgres_server.create_database(postgres_template)
    try:
        async with crash_harness(tmp_path, LEASE_SECONDS="180", UNCERTAIN_SUBMIT_GRACE_SECONDS="3",
                                 DATABASE_URL=postgres_server.url(name)) as (harness, discord):
            await harness.start_bot()
            harness.unified.hold_creates = True
            await command(harness, "sora", "crash point: submit in flight, on PostgreSQL")
            await harness.wait_for(harness.unified.create_is_held, "submit reached kkiai")
            await wait_for_row(harness, ON_THE_WIRE, "submitting committed")
            assert await harness.kill() == -9
            await restart(harness)
            await wait_for_row(harness, "SELECT id FROM jobs WHERE status = 'uncertain'", "taken over", timeout=10)
            harness.unified.open_gate()
            done = await wait_for_row(harness, DELIVERED, "failed plainly after the grace", timeout=25)
            assert done["status"] == "failed"
            assert await harness.terminate() == 0
            assert harness.unified.create_calls == 1
            assert await invariant_violations(harness) == []
    finally:
        await postgres_server.drop_database(name)


async def test_kill_after_the_vendor_finished_before_the_bot_heard(tmp_path: Path) -> None:
    async with crash_harness(tmp_path) as (harness, discord):
        await harness.start_bot()
        await command(harness, "veo", "crash point: vendor done")
        await wait_for_row(harness, SUBMITTED_WITH_THREAD, "running", ("running",))
        harness.kie.inject("query", Fault.delay(5))  # the poll that would learn "done" hangs
        finish_all(harness.kie)  # kie calls the bot back; the bot asks for the result
        await harness.wait_for(lambda: harness.kie.requests["query"] >= 1, "the confirming poll in flight")
        assert await harness.kill() == -9
        assert (await rows(harness, "SELECT status FROM jobs WHERE id = 1"))[0]["status"] == "running"

        await restart(harness)
        done = await wait_for_row(harness, DELIVERED, "delivered after restart", timeout=25)
        assert done["status"] == "succeeded"
        assert await harness.terminate() == 0
        assert harness.kie.create_calls == 1
        assert await invariant_violations(harness) == []


async def _kill_during_the_result_post(tmp_path: Path, hold: str,
                                       check_while_held: Callable[[BotHarness, GatedDiscord], None]) -> None:
    async with crash_harness(tmp_path) as (harness, discord):
        await harness.start_bot()
        discord.hold = hold  # type: ignore[assignment]
        await command(harness, "veo", f"crash point: result post ({hold})")
        await wait_for_row(harness, SUBMITTED_WITH_THREAD, "running", ("running",))
        finish_all(harness.kie)
        await harness.wait_for(discord.holding.is_set, "result post held")
        [job] = await rows(harness, "SELECT status, delivery_state FROM jobs WHERE id = 1")
        assert job == {"status": "succeeded", "delivery_state": "pending"}  # settled, not yet delivered
        assert await rows(harness, "SELECT kind FROM credit_ledger WHERE job_id = 1 ORDER BY id") == [
            {"kind": "hold"}, {"kind": "charge"}]
        check_while_held(harness, discord)
        assert await harness.kill() == -9
        discord.open_gate()

        await restart(harness)
        await wait_for_row(harness, DELIVERED, "delivered after restart", timeout=25)
        assert await harness.terminate() == 0
        assert harness.kie.create_calls == 1
        assert await invariant_violations(harness) == []


async def test_kill_after_the_result_is_committed_before_it_is_posted(tmp_path: Path) -> None:
    def nothing_posted(harness: BotHarness, discord: GatedDiscord) -> None:
        assert result_messages(discord, 1) == []
    await _kill_during_the_result_post(tmp_path, "before_create", nothing_posted)


async def test_kill_after_discord_made_the_message_before_the_bot_recorded_it(tmp_path: Path) -> None:
    def posted_once(harness: BotHarness, discord: GatedDiscord) -> None:
        assert len(result_messages(discord, 1)) == 1
    await _kill_during_the_result_post(tmp_path, "after_create", posted_once)


async def test_two_bot_processes_on_one_database_never_double_submit_or_post(tmp_path: Path) -> None:
    """Both processes get every interaction (same token); one answers it, and the poller work is shared."""
    async with crash_harness(tmp_path) as (harness, discord):
        await harness.start_bot()
        env = harness.env()
        env["HTTP_LISTEN"] = f"127.0.0.1:{free_port()}"
        second_log = tmp_path / "bot-second.log"
        with second_log.open("wb") as log_file:
            second = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot", cwd=str(tmp_path), env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file, stderr=asyncio.subprocess.STDOUT)
            try:
                await harness.wait_for(lambda: READY_LOG_LINE in second_log.read_text(errors="replace")
                                       and discord.connected_sessions == 2, "second process ready")
                # kie jobs: its callbacks end them promptly (the others' first poll is ~30 s out).
                prompts = [("veo", f"twin {n}") for n in range(6)]
                for n, (name, prompt) in enumerate(prompts):  # six members: no cooldown or budget in the way
                    await command(harness, name, prompt, user_id=FakeDiscord.USER_ID + 100 + n)
                await harness.wait_for(lambda: sum(len(v.tasks) for v in (harness.kie, harness.unified,
                                                                        harness.kling)) == len(prompts),
                                       "every job submitted", timeout=25)
                for vendor in (harness.kie, harness.unified, harness.kling):
                    finish_all(vendor)
                await wait_for_row(harness, f"SELECT 1 WHERE (SELECT COUNT(*) FROM jobs WHERE delivery_state ="
                                            f" 'delivered') = {len(prompts)}", "every job delivered", timeout=30)
            finally:
                if second.returncode is None:
                    second.terminate()
                await asyncio.wait_for(second.wait(), 20)
        assert await harness.terminate() == 0
        assert len(await rows(harness, "SELECT id FROM jobs")) == len(prompts)  # one job per interaction
        assert await invariant_violations(harness) == []


async def test_kill_at_random_moments_then_every_accepted_job_ends_once(tmp_path: Path) -> None:
    """Not a chosen point: five members' jobs, four SIGKILLs at seeded random moments, then recovery."""
    rng = random.Random(int(os.environ.get("FRAMECAST_CRASH_SEED", "7")))
    async with crash_harness(tmp_path, UNCERTAIN_SUBMIT_GRACE_SECONDS="6") as (harness, discord):
        await harness.start_bot()
        for n in range(5):
            await command(harness, "veo", f"random crash {n}", user_id=FakeDiscord.USER_ID + 200 + n)
        for _ in range(4):
            await asyncio.sleep(rng.uniform(0.05, 1.2))
            assert await harness.kill() == -9
            if rng.random() < 0.5:
                finish_all(harness.kie)  # the vendor finishes while the bot is down (its callback is lost)
            await restart(harness)

        deadline = asyncio.get_running_loop().time() + 40
        while True:  # finish whatever kie has; accepted jobs must all end, delivered once
            finish_all(harness.kie)
            jobs = await rows(harness, "SELECT id, status, delivery_state FROM jobs")
            if jobs and all(job["delivery_state"] == "delivered" for job in jobs):
                break
            assert asyncio.get_running_loop().time() < deadline, (jobs, harness.log_text())
            await asyncio.sleep(0.2)
        assert await harness.terminate() == 0
        assert harness.kie.create_calls == len(harness.kie.tasks) <= len(jobs)  # nothing sent twice
        assert await invariant_violations(harness) == []
