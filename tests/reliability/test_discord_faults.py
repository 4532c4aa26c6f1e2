"""Discord-side faults with the real Poller + the real DiscordPublisher (discord.py over HTTP) + the Discord fake.

The promise: the result reaches the member (the job's thread, else its channel, else a DM), exactly one
message exists, and the job is marked delivered only once Discord really has that message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import discord
import pytest

from bot.catalog import Family
from bot.clock import FakeClock
from bot.publishing.discord_publisher import DiscordPublisher
from bot.jobs.models import DeliveryState, JobRecord, JobStatus
from storage.database import Database
from tests.fakes.discord_api import FakeDiscord
from tests.reliability.fault_fakes import GatedDiscord, result_messages
from tests.reliability.support import Rig, RigFactory

GUILD = FakeDiscord.GUILD_ID
CHANNEL = FakeDiscord.CHANNEL_ID
USER = FakeDiscord.USER_ID


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[GatedDiscord]:
    server = GatedDiscord()
    await server.start()
    monkeypatch.setattr(discord.http.Route, "BASE", server.api_base)
    try:
        yield server
    finally:
        server.open_gate()
        await server.close()


@pytest.fixture
async def rig(db: Database, fake_clock: FakeClock, fake: GatedDiscord) -> AsyncIterator[Rig]:
    client = discord.Client(intents=discord.Intents.default(), allowed_mentions=discord.AllowedMentions.none())
    await client.login(fake.token)  # REST only: all delivery needs
    publisher = DiscordPublisher(client, clock=fake_clock)
    try:
        async with RigFactory(db, fake_clock) as factory:
            yield factory.build(publisher=publisher)
    finally:
        await publisher.aclose()
        await client.close()


async def job_with_thread(rig: Rig, fake: GatedDiscord) -> tuple[JobRecord, int]:
    """A kie job whose summary has a thread, as /veo makes it."""
    job = await rig.create(Family.VEO, model="veo-fast-kie", user_id=USER, guild_id=GUILD, channel_id=CHANNEL)
    summary = await rig.publisher.bot.get_partial_messageable(CHANNEL, guild_id=GUILD).send(f"Job #{job.id}")
    thread = await rig.publisher.bot.http.start_thread_with_message(CHANNEL, summary.id, name="job",
                                                                    auto_archive_duration=1440)
    await rig.jobs.attach_destination(job.id, channel_id=CHANNEL, thread_id=int(thread["id"]),
                                      summary_message_id=summary.id)
    return job, int(thread["id"])


async def finish_and_deliver(rig: Rig, job: JobRecord) -> JobRecord:
    await rig.run_until(rig.all_delivered, step=5, limit=3600)
    done = await rig.job(job.id)
    assert done.status is JobStatus.SUCCEEDED
    return done


def dm_channels(fake: FakeDiscord) -> set[int]:
    return {cid for cid, channel in fake.channels.items() if channel.get("type") == 1}


@pytest.mark.parametrize("fault", ["thread-deleted", "thread-archived-and-locked", "thread-forbidden"])
async def test_a_lost_thread_sends_the_result_to_the_channel(rig: Rig, fake: GatedDiscord, fault: str) -> None:
    job, thread_id = await job_with_thread(rig, fake)
    if fault == "thread-deleted":
        fake.delete_channel(thread_id)
    elif fault == "thread-archived-and-locked":
        fake.archived_threads.add(thread_id)
    else:
        fake.forbid_sending(thread_id)
    done = await finish_and_deliver(rig, job)
    [result] = result_messages(fake, job.id)
    assert result.channel_id == CHANNEL and done.result_message_id == result.id
    assert f"<@{USER}>" in result.content and result.allowed_mentions == {"parse": [], "users": [USER]}
    assert await rig.violations() == []


async def test_no_permission_in_thread_or_channel_sends_a_dm(rig: Rig, fake: GatedDiscord) -> None:
    job, thread_id = await job_with_thread(rig, fake)
    fake.forbid_sending(thread_id)
    fake.forbid_sending(CHANNEL)
    done = await finish_and_deliver(rig, job)
    [result] = result_messages(fake, job.id)
    assert result.channel_id in dm_channels(fake) and done.result_message_id == result.id
    assert await rig.violations() == []


async def test_nowhere_to_post_leaves_the_job_pending_not_delivered(rig: Rig, fake: GatedDiscord,
                                                                   fake_clock: FakeClock) -> None:
    job, thread_id = await job_with_thread(rig, fake)
    fake.delete_channel(thread_id)
    fake.forbid_sending(CHANNEL)
    fake.refuse_dms = True
    for _ in range(200):
        await rig.poller.run_once()
        fake_clock.advance(10)
    stuck = await rig.job(job.id)
    assert stuck.status is JobStatus.SUCCEEDED
    assert stuck.delivery_state is DeliveryState.PENDING and stuck.result_message_id is None
    assert stuck.delivery_attempts >= 1 and result_messages(fake, job.id) == []
    # Giving up is bounded: the poller stops retrying a destination-less result (no busy loop).
    posts = len(fake.requests_to("POST", r"/channels/\d+/messages"))
    for _ in range(50):
        await rig.poller.run_once()
        fake_clock.advance(60)
    assert len(fake.requests_to("POST", r"/channels/\d+/messages")) == posts


@pytest.mark.parametrize("status", [429, 503])
async def test_a_busy_discord_is_retried_into_exactly_one_message(rig: Rig, fake: GatedDiscord,
                                                                  fake_clock: FakeClock, status: int) -> None:
    job, thread_id = await job_with_thread(rig, fake)
    rule = fake.fail("POST", rf"/channels/{thread_id}/messages", status, times=2, retry_after=0.05)
    done = await finish_and_deliver(rig, job)
    assert rule.times == 0  # both faults were met
    [result] = result_messages(fake, job.id)
    assert result.channel_id == thread_id and done.result_message_id == result.id  # not pushed to the channel
    assert await rig.violations() == []


async def test_not_delivered_until_a_message_exists(rig: Rig, fake: GatedDiscord, fake_clock: FakeClock) -> None:
    job, thread_id = await job_with_thread(rig, fake)
    fake.fail("POST", rf"/channels/{thread_id}/messages", 503, times=1)
    while (await rig.job(job.id)).status is not JobStatus.SUCCEEDED:
        fake_clock.advance(5)
        await rig.poller.run_once()
    pending = await rig.job(job.id)
    assert pending.delivery_state is DeliveryState.PENDING and pending.result_message_id is None
    assert result_messages(fake, job.id) == []
    await finish_and_deliver(rig, job)
    assert len(result_messages(fake, job.id)) == 1


@pytest.mark.parametrize("nonce_remembered", [True, False], ids=["within-nonce-window", "after-nonce-window"])
async def test_a_post_whose_answer_was_lost_is_not_posted_twice(rig: Rig, fake: GatedDiscord,
                                                                fake_clock: FakeClock, nonce_remembered: bool) -> None:
    job, thread_id = await job_with_thread(rig, fake)
    fake.lose_answers = 1  # Discord makes the message, the bot gets a 503
    while (await rig.job(job.id)).delivery_attempts == 0:
        fake_clock.advance(5)
        await rig.poller.run_once()
    assert len(result_messages(fake, job.id)) == 1
    assert (await rig.job(job.id)).delivery_state is DeliveryState.PENDING
    if not nonce_remembered:
        fake.forget_nonces()  # the retry comes too late for Discord's dedupe: history must find it
    done = await finish_and_deliver(rig, job)
    [result] = result_messages(fake, job.id)
    assert done.result_message_id == result.id and result.channel_id == thread_id
    assert await rig.violations() == []
