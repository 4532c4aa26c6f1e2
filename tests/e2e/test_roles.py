"""Process roles as operators run them: `python -m bot gateway` and `python -m bot worker` as separate
processes on one database, against the loopback Discord and the vendor fakes."""

from __future__ import annotations

import asyncio
import io
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.app import EXIT_CONFIG, main
from tests.e2e.harness import BotHarness, clean_environment, free_port
from tests.fakes.discord_api import FakeDiscord

CONNECTED = "gateway connected as"
WORKER_UP = "working through Discord's REST API"


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[BotHarness]:
    async with BotHarness(tmp_path, vendors=("kie",)) as running:
        yield running


async def healthz(port: int) -> tuple[int, dict[str, object]]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"http://127.0.0.1:{port}/healthz")
    return response.status_code, response.json()


def commands_synced(discord: FakeDiscord) -> int:
    return len(discord.requests_to("PUT", r"/applications/\d+/guilds/\d+/commands"))


async def test_a_job_made_through_the_gateway_is_delivered_by_a_separate_worker(harness: BotHarness) -> None:
    discord = harness.discord
    gateway_port, worker_port = free_port(), free_port()
    gateway = await harness.spawn("gateway", name="gateway", env={
        "HTTP_LISTEN": f"127.0.0.1:{gateway_port}", "PUBLIC_BASE_URL": f"http://127.0.0.1:{worker_port}"})
    await gateway.wait_for_log(CONNECTED)
    assert "veo" in {c["name"] for c in discord.commands[discord.GUILD_ID]}
    status, report = await healthz(gateway_port)
    assert status == 200 and report["role"] == "gateway" and report["gateway_connected"] is True
    assert "poller_alive" not in report  # a gateway runs no poller: its health does not depend on one

    payload = discord.slash_command("veo", {"prompt": "a lighthouse in a storm"})
    await discord.dispatch_interaction(payload)
    await harness.wait_for(lambda: discord.interaction_callbacks.get(int(payload["id"])), "deferral", timeout=10)
    await gateway.wait_for_log("job 1 created")  # the job row exists, queued
    assert harness.kie.create_calls == 0  # nobody submitted it: the gateway has no poller

    sessions, syncs = len(discord.identify_payloads), commands_synced(discord)
    worker = await harness.spawn("worker", name="worker", env={
        "HTTP_LISTEN": f"127.0.0.1:{worker_port}", "PUBLIC_BASE_URL": f"http://127.0.0.1:{worker_port}"})
    await worker.wait_for_log(WORKER_UP)

    def result_posted() -> object:
        return [m for m in discord.messages.values() if m.via == "channel" and "job #1" in m.content
                and m.id != m.channel_id and m.channel_id in discord.threads]
    await harness.wait_for(result_posted, "the worker's result post", timeout=30)
    assert harness.kie.create_calls == 1
    status, report = await healthz(worker_port)
    assert status == 200 and report["role"] == "worker"
    assert report["discord_rest"] is True and report["poller_alive"] is True and report["database_writable"] is True
    assert "gateway_connected" not in report
    # The worker opened no gateway session and registered no commands: REST with the bot token only.
    assert len(discord.identify_payloads) == sessions and commands_synced(discord) == syncs

    assert await worker.stop() == 0
    assert await gateway.stop() == 0
    assert "Traceback" not in worker.log_text() + gateway.log_text()
    assert discord.token not in worker.log_text() + gateway.log_text()


async def test_shard_settings_start_those_shards(harness: BotHarness) -> None:
    discord = harness.discord
    gateway = await harness.spawn("gateway", name="sharded", env={
        "SHARD_COUNT": "2", "SHARD_IDS": "0,1", "HTTP_LISTEN": f"127.0.0.1:{harness.http_port}"})
    await gateway.wait_for_log(CONNECTED)
    assert sorted(tuple(p["shard"]) for p in discord.identify_payloads) == [(0, 2), (1, 2)]
    status, report = await healthz(harness.http_port)
    assert status == 200 and report["gateway_connected"] is True
    assert await gateway.stop() == 0


async def test_unset_shard_settings_ask_discord_how_many_shards(harness: BotHarness) -> None:
    discord = harness.discord
    gateway = await harness.spawn("gateway", name="autoshard")
    await gateway.wait_for_log(CONNECTED)
    assert [p["shard"] for p in discord.identify_payloads] == [[0, 1]]  # GET /gateway/bot said 1
    assert await gateway.stop() == 0


async def test_a_rejected_token_is_one_line_for_a_worker(harness: BotHarness) -> None:
    harness.discord.fail("GET", "/users/@me", 401)
    worker = await harness.spawn("worker", name="refused")
    assert await asyncio.wait_for(worker.process.wait(), 30) == 1  # type: ignore[union-attr]
    text = worker.log_text()
    assert "Discord rejected DISCORD_TOKEN (401)" in text and "Traceback" not in text


async def test_an_unreachable_discord_is_one_line_not_a_traceback(harness: BotHarness) -> None:
    harness.discord.fail("GET", "/users/@me", 403)
    bot = await harness.spawn(name="forbidden")
    assert await asyncio.wait_for(bot.process.wait(), 30) == 1  # type: ignore[union-attr]
    text = bot.log_text()
    assert "login (REST API) failed: Forbidden" in text and "Traceback" not in text


def test_unknown_command_and_bad_shards_are_config_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in clean_environment().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_TOKEN", "tok")
    err = io.StringIO()
    assert main(["workers"], stderr=err) == EXIT_CONFIG and "unknown command 'workers'" in err.getvalue()
    monkeypatch.setenv("SHARD_IDS", "0,1")
    err = io.StringIO()
    assert main(["gateway"], stderr=err) == EXIT_CONFIG
    assert err.getvalue() == "framecast: SHARD_IDS needs SHARD_COUNT (the total number of shards over all gateway processes)\n"
    monkeypatch.setenv("SHARD_COUNT", "1")
    err = io.StringIO()
    assert main(["gateway"], stderr=err) == EXIT_CONFIG and "outside 0..0" in err.getvalue()


async def test_sigkilled_worker_is_replaced_and_the_job_still_finishes_once(harness: BotHarness) -> None:
    """Any number of workers on one database: kill one mid-job (its vendor callback is lost with it),
    start another behind the same address, and the job is finished and posted once."""
    discord = harness.discord
    gateway = await harness.spawn("gateway", name="gw", env={"HTTP_LISTEN": ""})
    await gateway.wait_for_log(CONNECTED)
    first = await harness.spawn("worker", name="w1")
    await first.wait_for_log(WORKER_UP)
    payload = discord.slash_command("veo", {"prompt": "two workers, one result"})
    await discord.dispatch_interaction(payload)
    await first.wait_for_log("job 1: vendor task")  # submitted and recorded: the job is running
    assert await first.stop(signal.SIGKILL) == -signal.SIGKILL
    await harness.wait_for(lambda: harness.kie.callbacks, "kie's callback to the dead worker", timeout=20)
    second = await harness.spawn("worker", name="w2")
    await harness.wait_for(lambda: [m for m in discord.messages.values() if m.via == "channel"
                                    and "job #1" in m.content and m.channel_id in discord.threads],
                           "the result, posted by the second worker", timeout=40)
    assert harness.kie.create_calls == 1
    assert await second.stop() == 0 and await gateway.stop() == 0
    assert len([m for m in discord.messages.values() if m.via == "channel" and "job #1" in m.content
                and m.channel_id in discord.threads]) == 1
