"""The one tree error handler: every failure becomes exactly one ephemeral message."""

from __future__ import annotations

import logging
import re
from typing import Any

import discord
import pytest
from discord import app_commands

from bot.errors import Refusal
from bot.providers.base import ErrorKind, ProviderError
from cogs.errors import describe, unwrap
from tests.cogs.conftest import Harness
from fakes.discord_api import FakeDiscord


def dm_payload(fake: FakeDiscord, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The same command arriving from a DM: no guild, a `user` instead of a `member`."""
    payload = fake.slash_command(name, options)
    member = payload.pop("member")
    payload.pop("guild_id")
    payload["data"].pop("guild_id")
    payload["user"] = member["user"]
    payload["channel"] = {"id": "1600000000000000001", "type": 1, "recipients": [member["user"]]}
    payload["channel_id"] = "1600000000000000001"
    payload["context"] = 1
    return payload


async def test_unexpected_exception_gets_an_error_id_and_is_logged(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(harness.bot.services.jobs, "precheck", broken)
    with caplog.at_level(logging.ERROR, logger="cogs.errors"):
        reply = await harness.command("sora", {"prompt": "x"})
    match = re.fullmatch(r"Something went wrong on our side \(error id ([0-9a-f]{8})\); nothing was charged\.",
                         reply.content)
    assert match is not None and reply.ephemeral
    [record] = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert record.exc_info is not None and "database on fire" in str(record.exc_info[1])
    assert await harness.count("jobs") == 0


async def test_error_after_the_job_exists_still_reports_the_job(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("lost the thread")

    monkeypatch.setattr(harness.bot.services.jobs, "attach_destination", broken)
    reply = await harness.command("sora", {"prompt": "x"})
    assert reply.content.startswith("Job #1 accepted") and "nothing was charged" not in reply.content


async def test_dm_invocation_is_refused(harness: Harness) -> None:
    reply = await harness.run(dm_payload(harness.fake, "sora", {"prompt": "x"}))
    assert reply.ephemeral and reply.content == "This command only works in a server, not in direct messages."
    assert await harness.count("jobs") == 0


async def test_provider_refusal_reaches_the_member(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    async def vendor_says_no(*args: Any, **kwargs: Any) -> Any:
        raise ProviderError(ErrorKind.FINAL, "The image was rejected by the content filter.")

    monkeypatch.setattr(harness.bot.services.jobs, "precheck", vendor_says_no)
    reply = await harness.command("sora", {"prompt": "x"})
    assert reply.content == ("The video service refused this request: The image was rejected by the content "
                             "filter. Nothing was charged.")


async def test_answer_before_any_defer_uses_the_first_response(harness: Harness) -> None:
    """A check failure happens before the command defers: the handler must answer with type 4."""
    await harness.command("sora", {"prompt": "one"})
    reply = await harness.command("sora", {"prompt": "two"})
    assert [c["type"] for c in reply.callbacks] == [4] and reply.callbacks[0]["data"]["flags"] == 64


def test_describe_covers_every_expected_error() -> None:
    cooldown = app_commands.CommandOnCooldown(app_commands.Cooldown(1, 5), 3.2)
    assert describe(cooldown) == "Slow down: try again in 4s."
    assert describe(app_commands.MissingPermissions(["manage_guild"])) == (
        "You need the Manage Server permission to do that.")
    assert describe(app_commands.CheckFailure("Only moderators can use /framecast.")) == (
        "Only moderators can use /framecast.")
    assert describe(app_commands.CheckFailure()) == "You can't use this command here."
    assert describe(Refusal("paused", "Video making is paused here.")) == "Video making is paused here."
    assert describe(ProviderError(ErrorKind.RETRYABLE, "busy")).startswith("The video service is busy")
    assert describe(RuntimeError("bug")) is None


def test_unwrap_reaches_the_original_error() -> None:
    refusal = Refusal("banned", "You can't make videos here.")
    command: Any = app_commands.Command(name="x", description="x", callback=_noop)
    wrapped = app_commands.CommandInvokeError(command, refusal)
    assert unwrap(wrapped) is refusal
    assert isinstance(unwrap(app_commands.CheckFailure()), app_commands.CheckFailure)


async def _noop(interaction: discord.Interaction) -> None:
    """A callback for building a Command in a test."""


async def test_error_after_a_full_response_goes_to_a_followup(harness: Harness) -> None:
    @app_commands.command(name="answer_then_fail", description="test only")
    async def answer_then_fail(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("working", ephemeral=True)
        raise Refusal("paused", "Video making is paused here.")

    harness.bot.tree.add_command(answer_then_fail)
    payload = harness.fake.slash_command("answer_then_fail")
    await harness.run(payload)
    followups = [m for m in harness.fake.messages.values() if m.via == "followup"]
    assert [(m.content, m.ephemeral) for m in followups] == [("Video making is paused here.", True)]
