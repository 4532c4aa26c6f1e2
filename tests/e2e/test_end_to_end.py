"""The real bot process, end to end: Discord (fake) -> command -> job -> vendor (fake) -> result in the thread."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import BotHarness, clean_environment
from tests.fakes.discord_api import FakeDiscord

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00\x00\x00\x10\x00\x00\x00\x10\x08\x02\x00\x00\x00" + b"\x00" * 64


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[BotHarness]:
    async with BotHarness(tmp_path) as running:
        yield running


async def test_veo_with_first_frame_goes_from_command_to_video_in_thread(harness: BotHarness) -> None:
    discord = harness.discord
    await harness.start_bot()
    assert "veo" in {c["name"] for c in discord.commands[discord.GUILD_ID]}
    assert discord.identify_payloads[0]["intents"] & ((1 << 1) | (1 << 8) | (1 << 15)) == 0
    async with httpx.AsyncClient(timeout=10) as http:
        health = (await http.get(f"{harness.http_base_url}/healthz")).json()
    assert health["gateway_connected"] is True and health["database_writable"] is True

    image = discord.add_attachment(PNG, "first.png", "image/png")
    payload = discord.slash_command("veo", {"prompt": "a red fox running through snow"},
                                    attachments={"first_frame": image})
    interaction_id = int(payload["id"])
    await discord.dispatch_interaction(payload)

    # Deferred (ephemeral, thinking) well within Discord's 3 s.
    await harness.wait_for(lambda: discord.interaction_callbacks.get(interaction_id), "deferral", timeout=10)
    assert discord.interaction_callbacks[interaction_id][0]["type"] == 5
    delay = discord.callback_delay(interaction_id)
    assert delay is not None and delay < 3.0

    # A public summary in the channel, with a public thread on it.
    def summary_and_thread() -> tuple[int, int] | None:
        for message in discord.messages_in(discord.CHANNEL_ID):
            if message.via == "channel" and message.id in discord.threads:
                return message.id, message.id
        return None
    summary_id, thread_id = await harness.wait_for(summary_and_thread, "summary and thread", timeout=15)
    assert not discord.messages[summary_id].ephemeral
    assert discord.threads[thread_id]["type"] == 11 and int(discord.threads[thread_id]["parent_id"]) == discord.CHANNEL_ID

    # Exactly one message in the thread: the video link, mentioning only the requester.
    await harness.wait_for(lambda: discord.messages_in(thread_id), "result in the thread", timeout=20)
    assert harness.kie.create_calls == 1
    [task] = harness.kie.tasks.values()
    image_urls = task.body.get("imageUrls") or []
    assert len(image_urls) == 1 and image_urls[0].startswith("http")
    video_url = harness.kie.video_url(task)

    # A clean stop (SIGTERM) afterwards, then nothing was posted twice.
    assert await harness.terminate() == 0
    [result] = discord.messages_in(thread_id)
    assert video_url in result.content
    assert f"<@{discord.USER_ID}>" in result.content
    assert result.allowed_mentions == {"parse": [], "users": [discord.USER_ID]}
    # The ephemeral "accepted" reply was edited from "thinking" into a real answer.
    original = [m for m in discord.messages.values() if m.via == "interaction"]
    assert len(original) == 1 and original[0].ephemeral and original[0].content
    assert discord.token not in harness.log_text()


async def test_missing_discord_token_exits_2_with_one_line(tmp_path: Path) -> None:
    env = clean_environment()
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'bot.db'}"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=str(tmp_path), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 2
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and "DISCORD_TOKEN" in lines[0] and "Traceback" not in stderr.decode()
    assert stdout == b""
    assert not (tmp_path / "bot.db").exists()


async def test_rejected_token_exits_nonzero_with_a_clear_cause(harness: BotHarness) -> None:
    env = harness.env()
    env["DISCORD_TOKEN"] = "not.the-right.token"
    await harness.start_bot(wait_ready=False, env=env)
    code = await harness.wait_exit(timeout=30)
    assert code == 1
    assert "rejected DISCORD_TOKEN" in harness.log_text()
    assert "not.the-right.token" not in harness.log_text()
    assert FakeDiscord.TOKEN not in harness.log_text()


@pytest.mark.parametrize("kill_when", ["mid_job", "as_the_thread_appears"])
async def test_sigkill_then_restart_delivers_exactly_once_in_the_thread(tmp_path: Path, kill_when: str) -> None:
    # The vendor finishes only once the new process is up, so kie's callback reaches the restarted bot.
    # "as_the_thread_appears": killed the moment Discord has made the thread, before the bot may have
    # heard back; the job row names the thread before it is asked for, so the result still goes there.
    async with BotHarness(tmp_path, vendor_duration=600.0) as harness:
        discord = harness.discord
        await harness.start_bot()
        payload = discord.slash_command("veo", {"prompt": "a lighthouse in a storm"})
        await discord.dispatch_interaction(payload)
        thread_id = await harness.wait_for(
            lambda: next((m.id for m in discord.messages_in(discord.CHANNEL_ID) if m.id in discord.threads), None),
            "thread", timeout=15)
        if kill_when == "mid_job":  # once the member was told "accepted" and the vendor has the task
            await harness.wait_for(lambda: harness.kie.tasks, "vendor task created", timeout=15)
            await harness.wait_for(lambda: any(m.via == "interaction" and m.content for m in discord.messages.values()),
                                   "the accepted reply", timeout=15)
        assert await harness.kill() == -9

        await harness.start_bot()  # same database: the job is picked up where it was
        [task_id] = await harness.wait_for(lambda: list(harness.kie.tasks) or None, "vendor task", timeout=15)
        harness.kie.finish_now(task_id)
        await harness.wait_for(lambda: discord.messages_in(thread_id), "result after restart", timeout=25)
        assert await harness.terminate() == 0
        assert harness.kie.create_calls == 1
        [result] = discord.messages_in(thread_id)
        [task] = harness.kie.tasks.values()
        assert harness.kie.video_url(task) in result.content


async def test_again_on_a_result_works_after_a_restart(harness: BotHarness) -> None:
    """A click on a result's **Again**, sent after the bot was restarted, makes a new job with its own card:
    the button's custom id is all the new process needs (a DynamicItem registered at start-up)."""
    discord = harness.discord
    await harness.start_bot()
    await discord.dispatch_interaction(discord.slash_command("veo", {"prompt": "a paper boat on a river"}))
    thread_id = await harness.wait_for(
        lambda: next((m.id for m in discord.messages_in(discord.CHANNEL_ID) if m.id in discord.threads), None),
        "card and thread", timeout=15)
    result = await harness.wait_for(
        lambda: next((m for m in discord.messages_in(thread_id) if m.custom_ids), None), "result with buttons",
        timeout=25)
    assert result.custom_ids[:2] == ["fc:again:1", "fc:remix:1"]
    card = discord.messages[thread_id]
    await harness.wait_for(lambda: "Done" in card.embed_text, "the card's final edit", timeout=15)
    assert card.custom_ids == [] and card.embeds[0]["color"] == 0x2ECC71
    assert await harness.terminate() == 0

    await harness.start_bot()  # a new process: nothing about the result message is in memory
    click = discord.button_click(result.id, "fc:again:1")
    await discord.dispatch_interaction(click)
    await harness.wait_for(lambda: discord.interaction_callbacks.get(int(click["id"])), "the click's deferral",
                           timeout=10)
    delay = discord.callback_delay(int(click["id"]))
    assert delay is not None and delay < 3.0
    new_card = await harness.wait_for(
        lambda: next((m for m in discord.messages_in(discord.CHANNEL_ID)
                      if "Job #2" in m.embed_text and m.id in discord.threads), None),
        "the new job's card and thread", timeout=15)
    await harness.wait_for(lambda: discord.messages_in(new_card.id), "the new job's result", timeout=25)
    await harness.wait_for(lambda: harness.kie.create_calls == 2, "one vendor request per job", timeout=5)
    assert await harness.terminate() == 0
    assert harness.kie.create_calls == 2
