"""/jobs and /job through the real command tree: the caller's own jobs only, unless Manage Server."""

from __future__ import annotations

from tests.cogs.conftest import Harness
from fakes.discord_api import DEFAULT_MEMBER_PERMISSIONS, MANAGE_GUILD, FakeDiscord

USER = FakeDiscord.USER_ID
OTHER = 1400000000000000009


async def test_jobs_lists_only_the_callers_jobs(harness: Harness) -> None:
    assert (await harness.command("sora", {"prompt": "mine, sora"})).content.startswith("Job #1")
    assert (await harness.command("kling", {"prompt": "mine, kling"})).content.startswith("Job #2")
    assert (await harness.command("veo", {"prompt": "theirs"}, user_id=OTHER)).content.startswith("Job #3")

    reply = await harness.command("jobs")
    assert reply.ephemeral
    lines = reply.content.splitlines()
    assert lines[0] == "**Your recent jobs**"
    assert [line.split()[0] for line in lines[1:]] == ["**#2**", "**#1**"]
    assert "Kling v3 Std (no audio)" in lines[1] and "<t:" in lines[1] and ":R>" in lines[1]
    assert "⏳ queued" in lines[1]
    job2 = await harness.job_row(2)
    assert f"<#{job2.thread_id}>" in lines[1]


async def test_jobs_when_there_are_none(harness: Harness) -> None:
    reply = await harness.command("jobs")
    assert reply.ephemeral and reply.content.startswith("You have no jobs in this server yet")


async def test_job_shows_the_callers_job_in_full(harness: Harness) -> None:
    await harness.command("kling", {"prompt": "a red kite", "duration": 7, "model": "pro"})
    reply = await harness.command("job", {"id": 1})
    assert reply.ephemeral
    assert reply.content.startswith("**Job #1** · ⏳ queued · /kling · Kling v3 Pro (no audio)")
    assert "> a red kite" in reply.content and "7s" in reply.content and "created <t:" in reply.content


async def test_someone_elses_job_is_not_found_but_a_moderator_sees_it(harness: Harness) -> None:
    await harness.command("veo", {"prompt": "private idea"}, user_id=OTHER)

    stranger = await harness.command("job", {"id": 1})
    missing = await harness.command("job", {"id": 99}, user_id=FakeDiscord.MODERATOR_ID,
                                    permissions=DEFAULT_MEMBER_PERMISSIONS | MANAGE_GUILD)
    assert stranger.ephemeral and stranger.content == "Job #1 not found in this server."
    assert "private idea" not in stranger.content
    assert missing.content == "Job #99 not found in this server."

    moderator = await harness.command("job", {"id": 1}, user_id=FakeDiscord.MODERATOR_ID,
                                      permissions=DEFAULT_MEMBER_PERMISSIONS | MANAGE_GUILD)
    assert moderator.ephemeral and "> private idea" in moderator.content


async def test_jobs_in_another_server_are_not_visible(harness: Harness) -> None:
    await harness.command("sora", {"prompt": "here"})
    elsewhere = await harness.command("job", {"id": 1}, guild_id=FakeDiscord.GUILD_ID + 1)
    assert elsewhere.content == "Job #1 not found in this server."
    listing = await harness.command("jobs", guild_id=FakeDiscord.GUILD_ID + 1)
    assert listing.content.startswith("You have no jobs in this server yet")


async def test_the_servers_moderator_role_also_sees_any_job(harness: Harness) -> None:
    await harness.command("sora", {"prompt": "someone's idea"}, user_id=OTHER)
    store = harness.bot.services.guild_settings
    await store.update(FakeDiscord.GUILD_ID, {"moderator_role_id": FakeDiscord.MODERATOR_ROLE_ID}, now=0.0)
    with_role = await harness.command("job", {"id": 1}, role_ids=(FakeDiscord.MODERATOR_ROLE_ID,))
    without = await harness.command("job", {"id": 1}, role_ids=(FakeDiscord.MEMBER_ROLE_ID,))
    assert "> someone's idea" in with_role.content
    assert without.content == "Job #1 not found in this server."
