"""/quota through the real command tree: what a member sees of their own credits, and nothing else."""

from __future__ import annotations

from tests.cogs.test_admin import GUILD, OTHER, USER, AdminHarness, admin, make_admin, no_pings  # noqa: F401
from fakes.discord_api import FakeDiscord


async def test_a_fresh_member_has_the_full_budget(admin: AdminHarness) -> None:
    reply = await admin.member("quota")
    assert reply.ephemeral and no_pings(reply)
    assert reply.content.splitlines() == [
        "**Your credits in this server**",
        "Credits left: **100** (daily budget 100, over a rolling 24 hours)",
        "On hold: nothing",
        "Credits come back: nothing is spent, you have your full budget",
        "Videos in progress: 0 / 10",
    ]


async def test_a_running_video_is_on_hold_and_counts_as_in_progress(admin: AdminHarness) -> None:
    await admin.member("kling", {"prompt": "a paper plane", "model": "pro"})  # kling-v3-pro-silent: 4 credits
    lines = (await admin.member("quota")).content.splitlines()
    assert lines[1].startswith("Credits left: **96**")
    assert lines[2] == "On hold: 4 credits for videos in progress (given back if they fail)"
    assert lines[3] == "Credits come back: 24 hours after each video is charged"
    assert lines[4] == "Videos in progress: 1 / 10"
    other = await admin.member("quota", user_id=OTHER)
    assert "Credits left: **100**" in other.content  # one member's hold is not another's


async def test_a_charged_video_says_when_its_credits_come_back(admin: AdminHarness) -> None:
    await admin.member("sora", {"prompt": "a windmill"})  # 3 credits
    services = admin.bot.services
    async with services.db.transaction() as conn:  # what the poller does when the video is ready
        await services.quota.settle_in(conn, job_id=1, charge=True, now=services.clock.now())
    charged_at = await services.db.fetchval("SELECT created_at FROM credit_ledger WHERE kind = 'charge'")

    lines = (await admin.member("quota")).content.splitlines()
    assert lines[1].startswith("Credits left: **97**")
    assert lines[2] == "On hold: nothing"
    assert lines[3] == f"Credits come back: <t:{int(charged_at + 24 * 3600)}:R> (24 hours after each charge)"
    assert lines[4] == "Videos in progress: 1 / 10"  # only the ledger was settled; the job row is active


async def test_quota_is_per_server(admin: AdminHarness) -> None:
    await admin.framecast("settings set", {"daily_credits": 5, "max_concurrent": 2})
    here = await admin.member("quota")
    elsewhere = await admin.member("quota", guild_id=GUILD + 1)
    assert "daily budget 5" in here.content and here.content.endswith("Videos in progress: 0 / 2")
    assert "daily budget 100" in elsewhere.content and elsewhere.content.endswith("0 / 10")


async def test_an_unlimited_role_shows_unlimited_without_a_comeback_line(admin: AdminHarness) -> None:
    await admin.bot.services.guild_settings.set_role_budget(GUILD, FakeDiscord.MEMBER_ROLE_ID, None)
    lines = (await admin.member("quota", role_ids=(FakeDiscord.MEMBER_ROLE_ID,))).content.splitlines()
    assert lines[1:] == ["Credits: **unlimited**", "On hold: nothing", "Videos in progress: 0 / 10"]
