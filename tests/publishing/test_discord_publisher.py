"""DiscordPublisher through the real discord.py HTTP client against the loopback Discord stand-in."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest

from bot.catalog import Family, Mode, ProviderName
from bot.clock import FakeClock
from bot.publishing.base import DeliveryError, ResultMessage, job_nonce
from bot.publishing.discord_publisher import DiscordPublisher, carries_job_marker
from bot.jobs.models import DeliveryState, JobRecord, JobStatus
from tests.fakes.discord_api import FakeDiscord

GUILD = FakeDiscord.GUILD_ID
CHANNEL = FakeDiscord.CHANNEL_ID
USER = FakeDiscord.USER_ID
FINISHED_AT = 1_700_000_000.0


@pytest.fixture
async def client(fake: FakeDiscord) -> AsyncIterator[discord.Client]:
    """A logged-in client (REST only: login fetches /users/@me, so `client.user` is the bot)."""
    bot = discord.Client(intents=discord.Intents.default(), allowed_mentions=discord.AllowedMentions.none())
    await bot.login(fake.token)
    try:
        yield bot
    finally:
        await bot.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=FINISHED_AT + 5)


@pytest.fixture
async def publisher(client: discord.Client, clock: FakeClock) -> AsyncIterator[DiscordPublisher]:
    pub = DiscordPublisher(client, clock=clock)
    try:
        yield pub
    finally:
        await pub.aclose()


def make_job(job_id: int = 7, **changes: Any) -> JobRecord:
    base = JobRecord(
        id=job_id, guild_id=GUILD, channel_id=CHANNEL, thread_id=None, summary_message_id=None, user_id=USER,
        family=Family.VEO, model_key="veo-fast-kie", provider=ProviderName.KIE, mode=Mode.TEXT,
        prompt="a cat surfing", request_json="{}", attachment_ids="[]", cost=2, status=JobStatus.SUCCEEDED,
        provider_task_id="t1", raw_status="1", video_url=None, error_message=None, created_at=FINISHED_AT - 100,
        submitted_at=FINISHED_AT - 90, vendor_done_at=FINISHED_AT, finished_at=FINISHED_AT, deadline_at=None,
        next_due_at=FINISHED_AT, poll_count=3, submit_attempts=1, error_streak=0, lease_owner=None,
        lease_until=None, delivery_state=DeliveryState.PENDING, delivery_attempts=0, result_message_id=None,
        delivered_at=None,
    )
    return dataclasses.replace(base, **changes)


def result_for(job: JobRecord, video_url: str | None = None) -> ResultMessage:
    return ResultMessage(
        job_id=job.id, outcome=JobStatus.SUCCEEDED, mention_user_id=job.user_id, nonce=job_nonce(job.id),
        content=f"<@{job.user_id}> your video is ready (job #{job.id}):\n{video_url or 'https://v.example/x.mp4'}\n"
                "> hi @everyone",
        video_url=video_url,
    )


async def open_thread(client: discord.Client, fake: FakeDiscord) -> int:
    summary = await client.get_partial_messageable(CHANNEL, guild_id=GUILD).send("summary")
    thread = await client.http.start_thread_with_message(CHANNEL, summary.id, name="job", auto_archive_duration=1440)
    return int(thread["id"])


async def test_result_goes_to_the_thread_mentioning_only_the_requester(
    publisher: DiscordPublisher, client: discord.Client, fake: FakeDiscord
) -> None:
    thread_id = await open_thread(client, fake)
    job = make_job(thread_id=thread_id)
    message_id = await publisher.deliver(job, result_for(job))

    [posted] = fake.messages_in(thread_id)
    assert posted.id == message_id
    assert posted.allowed_mentions == {"parse": [], "users": [USER]}
    assert posted.nonce == job_nonce(job.id)
    [request] = [r for r in fake.requests_to("POST", rf"/channels/{thread_id}/messages")]
    assert request.json["enforce_nonce"] is True


async def test_small_video_is_attached_and_link_kept(
    publisher: DiscordPublisher, fake: FakeDiscord
) -> None:
    video = fake.add_attachment(b"\x00\x00\x00\x18ftypmp42" + b"v" * 2048, "out.mp4", "video/mp4")
    job = make_job(video_url=video["url"])
    await publisher.deliver(job, result_for(job, video["url"]))
    [posted] = fake.messages_in(CHANNEL)
    assert posted.files[0]["filename"] == f"framecast-{job.id}.mp4"
    assert posted.files[0]["data"].startswith(b"\x00\x00\x00\x18ftyp")
    assert video["url"] in posted.content


async def test_video_over_the_upload_limit_is_linked_not_attached(
    publisher: DiscordPublisher, fake: FakeDiscord
) -> None:
    big = fake.add_attachment(b"v" * (discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES + 1), "big.mp4", "video/mp4")
    job = make_job(video_url=big["url"])
    await publisher.deliver(job, result_for(job, big["url"]))
    [posted] = fake.messages_in(CHANNEL)
    assert posted.files == [] and big["url"] in posted.content


async def test_deleted_thread_falls_back_to_the_channel(
    publisher: DiscordPublisher, client: discord.Client, fake: FakeDiscord
) -> None:
    thread_id = await open_thread(client, fake)
    fake.delete_channel(thread_id)
    job = make_job(thread_id=thread_id)
    message_id = await publisher.deliver(job, result_for(job))
    assert [m.id for m in fake.messages_in(CHANNEL) if m.content.startswith("<@")] == [message_id]


async def _summary_without_thread(client: discord.Client) -> int:
    """A summary whose thread the row names (its id) but Discord never made: the bot stopped between."""
    return (await client.get_partial_messageable(CHANNEL, guild_id=GUILD).send("summary")).id


async def test_a_thread_recorded_but_never_made_is_made_on_the_summary(
    publisher: DiscordPublisher, client: discord.Client, fake: FakeDiscord
) -> None:
    summary_id = await _summary_without_thread(client)
    job = make_job(thread_id=summary_id, summary_message_id=summary_id, prompt="a  cat\nsurfing <@1>")
    message_id = await publisher.deliver(job, result_for(job))
    assert fake.threads[summary_id]["name"] == "#7 veo: a cat surfing <@1>"
    assert [m.id for m in fake.messages_in(summary_id)] == [message_id]
    assert [m for m in fake.messages_in(CHANNEL) if m.content.startswith("<@")] == []


async def test_a_retry_into_a_made_thread_looks_for_the_earlier_post_first(
    publisher: DiscordPublisher, client: discord.Client, fake: FakeDiscord
) -> None:
    summary_id = await _summary_without_thread(client)
    job = make_job(thread_id=summary_id, summary_message_id=summary_id)
    first = await publisher.deliver(job, result_for(job))
    again = await publisher.deliver(dataclasses.replace(job, delivery_attempts=1), result_for(job))
    assert again == first and len(fake.messages_in(summary_id)) == 1
    assert len(fake.requests_to("POST", rf"/channels/{CHANNEL}/messages/{summary_id}/threads")) == 1


@pytest.mark.parametrize("case", ["summary deleted", "threads forbidden", "thread deleted by a moderator"])
async def test_a_missing_thread_that_cannot_be_made_falls_back_to_the_channel(
    case: str, publisher: DiscordPublisher, client: discord.Client, fake: FakeDiscord
) -> None:
    if case == "thread deleted by a moderator":  # Discord keeps the message's thread: 160004
        summary_id = await open_thread(client, fake)
        fake.delete_channel(summary_id)
    else:
        summary_id = await _summary_without_thread(client)
        if case == "summary deleted":
            summary_id += 1000
        else:
            fake.forbid_thread_creation(CHANNEL)
    job = make_job(thread_id=summary_id, summary_message_id=summary_id)
    message_id = await publisher.deliver(job, result_for(job))
    assert [m.id for m in fake.messages_in(CHANNEL) if m.content.startswith("<@")] == [message_id]


async def test_a_busy_discord_while_making_the_thread_is_retried_not_sent_elsewhere(
    publisher: DiscordPublisher, client: discord.Client, fake: FakeDiscord
) -> None:
    summary_id = await _summary_without_thread(client)
    fake.fail("POST", rf"/channels/{CHANNEL}/messages/{summary_id}/threads", 503)
    job = make_job(thread_id=summary_id, summary_message_id=summary_id)
    with pytest.raises(DeliveryError) as caught:
        await publisher.deliver(job, result_for(job))
    assert caught.value.retryable is True
    assert [m for m in fake.messages_in(CHANNEL) if m.content.startswith("<@")] == []


async def test_forbidden_channel_falls_back_to_a_dm(publisher: DiscordPublisher, fake: FakeDiscord) -> None:
    fake.forbid_sending(CHANNEL)
    job = make_job()
    message_id = await publisher.deliver(job, result_for(job))
    posted = fake.messages[message_id]
    assert fake.channels[posted.channel_id]["type"] == 1  # a DM channel
    assert fake.channels[posted.channel_id]["recipients"][0]["id"] == str(USER)


async def test_nowhere_to_post_is_a_final_error(publisher: DiscordPublisher, fake: FakeDiscord) -> None:
    fake.forbid_sending(CHANNEL)
    fake.fail("POST", r"/users/@me/channels", 403)
    with pytest.raises(DeliveryError) as caught:
        await publisher.deliver(make_job(), result_for(make_job()))
    assert caught.value.retryable is False


async def test_rate_limit_is_retryable_and_does_not_fall_through(
    publisher: DiscordPublisher, fake: FakeDiscord
) -> None:
    # discord.py itself retries a 429 a few times; past that it is ours to reschedule.
    fake.fail("POST", rf"/channels/{CHANNEL}/messages", 429, times=10, retry_after=0.01)
    with pytest.raises(DeliveryError) as caught:
        await publisher.deliver(make_job(), result_for(make_job()))
    assert caught.value.retryable is True
    assert caught.value.retry_after is not None
    assert fake.requests_to("POST", r"/users/@me/channels") == []  # no DM fallback for a busy Discord


async def test_server_error_is_retryable(publisher: DiscordPublisher, fake: FakeDiscord) -> None:
    fake.fail("POST", rf"/channels/{CHANNEL}/messages", 503)
    with pytest.raises(DeliveryError) as caught:
        await publisher.deliver(make_job(), result_for(make_job()))
    assert caught.value.retryable is True
    assert fake.messages_in(CHANNEL) == []


async def test_repeat_with_the_same_nonce_returns_the_same_message(
    publisher: DiscordPublisher, fake: FakeDiscord
) -> None:
    job = make_job()
    first = await publisher.deliver(job, result_for(job))
    second = await publisher.deliver(job, result_for(job))
    assert first == second and len(fake.messages_in(CHANNEL)) == 1


async def test_retry_after_the_nonce_window_finds_the_earlier_post(
    publisher: DiscordPublisher, fake: FakeDiscord
) -> None:
    job = make_job()
    first = await publisher.deliver(job, result_for(job))
    fake._nonces.clear()  # Discord's nonce memory lapsed (minutes later)
    posts_before = len(fake.requests_to("POST", rf"/channels/{CHANNEL}/messages"))
    again = await publisher.deliver(dataclasses.replace(job, delivery_attempts=1), result_for(job))
    assert again == first
    assert len(fake.requests_to("POST", rf"/channels/{CHANNEL}/messages")) == posts_before
    assert len(fake.messages_in(CHANNEL)) == 1


async def test_retry_for_another_job_is_not_confused_by_a_similar_id(
    publisher: DiscordPublisher, fake: FakeDiscord
) -> None:
    other = make_job(job_id=70)
    await publisher.deliver(other, result_for(other))
    job = make_job(job_id=7, delivery_attempts=2)
    message_id = await publisher.deliver(job, result_for(job))
    assert len(fake.messages_in(CHANNEL)) == 2 and fake.messages[message_id].content.count("job #7)") == 1


def test_marker_matching() -> None:
    assert carries_job_marker("ready (job #7):", 7)
    assert not carries_job_marker("ready (job #70):", 7)
    assert not carries_job_marker("ready (job #17):", 7)


async def test_audit_post_mentions_nobody(publisher: DiscordPublisher, fake: FakeDiscord) -> None:
    message_id = await publisher.post_audit(GUILD, FakeDiscord.AUDIT_CHANNEL_ID, "<@1> did a thing", "fc-audit-1")
    posted = fake.messages[message_id]
    assert posted.channel_id == FakeDiscord.AUDIT_CHANNEL_ID
    assert posted.allowed_mentions == {"parse": []} and posted.nonce == "fc-audit-1"


async def test_audit_to_a_deleted_channel_is_final(publisher: DiscordPublisher, fake: FakeDiscord) -> None:
    fake.delete_channel(FakeDiscord.AUDIT_CHANNEL_ID)
    with pytest.raises(DeliveryError) as caught:
        await publisher.post_audit(GUILD, FakeDiscord.AUDIT_CHANNEL_ID, "x", "fc-audit-2")
    assert caught.value.retryable is False
