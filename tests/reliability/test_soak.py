"""Soak: 300 jobs across the three vendors, seeded random vendor and delivery faults, two pollers on one file;
and 120 jobs delivered through the real DiscordPublisher to the Discord fake under delivery faults.

Zero lost (every job finished and delivered), zero duplicated (vendor tasks, settlements, result messages).
The fake clock makes an hour of vendor time take seconds; the seed makes a failure reproducible
(FRAMECAST_SOAK_SEED overrides it to explore).
"""

from __future__ import annotations

import os
import random
from collections import Counter

import discord
import pytest

from bot.catalog import Family
from bot.clock import FakeClock
from bot.publishing.discord_publisher import DiscordPublisher
from bot.jobs.models import JobStatus
from storage.database import open_database
from fakes.discord_api import FakeDiscord
from fakes.vendors import Fault, Outcome
from tests.reliability.fault_fakes import GatedDiscord, result_messages
from tests.reliability.support import RigFactory

JOBS = 300
SEED = int(os.environ.get("FRAMECAST_SOAK_SEED", "20240611"))
KINDS = [(Family.VEO, "veo-fast-kie"), (Family.VEO, "veo-quality-kie"), (Family.VEO, "veo-fast-kkiai"),
         (Family.SORA, None), (Family.KLING, None)]


def random_fault(rng: random.Random, endpoint: str) -> Fault:
    """A fault of any kind the vendors show; `create` faults include the ones that lose a submit's answer."""
    common = [Fault.http(500), Fault.http(502, "<html>bad gateway</html>"), Fault.reset(), Fault.non_json(200),
              Fault.http(429, {"error": {"message": "slow down"}}, headers={"Retry-After": str(rng.randint(1, 60))}),
              Fault.http(503, "maintenance")]
    if endpoint == "create":
        common += [Fault.lost_response(), Fault.delay(0.6)]
    return rng.choice(common)


@pytest.mark.soak
async def test_soak_hundreds_of_jobs_with_random_faults_lose_and_duplicate_nothing(
        database_url: str, fake_clock: FakeClock) -> None:
    rng = random.Random(SEED)
    first, second = await open_database(database_url), await open_database(database_url)  # two processes
    try:
        async with RigFactory(first, fake_clock) as factory:
            def plan(body: dict[str, object]) -> tuple[float, Outcome]:
                roll = rng.random()
                if roll < 0.03:
                    return 10 * 3600, Outcome.ok()  # never finishes in time: times out
                if roll < 0.13:
                    return rng.uniform(20, 200), Outcome.fail("the model could not render this")
                return rng.uniform(20, 300), Outcome.ok()

            for vendor in (factory.kie, factory.unified, factory.kling):
                vendor.plan = plan
            rig = factory.build(submit_timeout_seconds=0.4, http_timeout_seconds=0.4, provider_max_in_flight=100,
                                uncertain_submit_grace_seconds=240, lease_seconds=60)
            rig.add_poller(second, "poller-b")
            handled: Counter[str] = Counter()
            for poller in rig.pollers:
                def counting(original=poller.process, owner=poller.owner):  # type: ignore[no-untyped-def]
                    async def process(job):  # type: ignore[no-untyped-def]
                        handled[owner] += 1
                        await original(job)
                    return process
                poller.process = counting()  # type: ignore[method-assign]

            for n in range(JOBS):
                family, model = rng.choice(KINDS)
                job = await rig.create(family, model=model, user_id=1000 + n % 37)
                rig.publisher.fault_for[job.id] = rng.choice(
                    [[], [], [], ["429"], ["503", "503"], ["lost"], ["lost", "503"], ["429", "lost"]])

            async def inject_faults() -> None:
                for vendor in rig.vendors:
                    for endpoint in ("create", "query"):
                        if rng.random() < 0.08:
                            vendor.inject(endpoint, random_fault(rng, endpoint))
                if rng.random() < 0.004:  # now and then a vendor is down for a while
                    victim = rng.choice(rig.vendors)
                    victim.unavailable = not victim.unavailable
                elif rng.random() < 0.05:
                    for vendor in rig.vendors:
                        vendor.unavailable = False

            took = await rig.run_until(rig.all_delivered, step=5, limit=6 * 3600, between=inject_faults)
            print(f"soak: {took:.0f} fake seconds, handled {dict(handled)}")

            statuses = Counter([(await rig.job(job_id)).status for job_id in range(1, JOBS + 1)])
            assert sum(statuses.values()) == JOBS
            assert statuses[JobStatus.SUCCEEDED] > JOBS // 2, statuses  # faults slowed jobs, did not sink them
            assert await rig.violations() == []
            assert min(handled.values()) > JOBS // 10, handled  # both pollers really worked the shared queue
            creates = sum(v.create_calls for v in rig.vendors)
            tasks = sum(len(v.tasks) for v in rig.vendors)
            assert tasks <= JOBS <= creates
    finally:
        await first.close()
        await second.close()


@pytest.mark.soak
async def test_soak_through_the_real_discord_publisher_posts_each_result_once(
        database_url: str, fake_clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    """120 jobs delivered by the real DiscordPublisher (discord.py over HTTP) to the Discord fake, with 503s,
    answers lost after the message was made, Discord forgetting nonces, and threads deleted or locked."""
    rng = random.Random(SEED + 1)
    fake = GatedDiscord()
    await fake.start()
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    client = discord.Client(intents=discord.Intents.default(), allowed_mentions=discord.AllowedMentions.none())
    await client.login(fake.token)
    publisher = DiscordPublisher(client, clock=fake_clock)
    database = await open_database(database_url)
    try:
        async with RigFactory(database, fake_clock) as factory:
            rig = factory.build(publisher=publisher, provider_max_in_flight=100)
            threads: dict[int, int] = {}
            for n in range(120):
                family, model = rng.choice(KINDS)
                job = await rig.create(family, model=model, user_id=FakeDiscord.USER_ID + n % 7,
                                       guild_id=FakeDiscord.GUILD_ID, channel_id=FakeDiscord.CHANNEL_ID)
                summary = await client.get_partial_messageable(FakeDiscord.CHANNEL_ID).send(f"summary {job.id}")
                thread = await client.http.start_thread_with_message(FakeDiscord.CHANNEL_ID, summary.id,
                                                                     name="job", auto_archive_duration=1440)
                threads[job.id] = int(thread["id"])
                await rig.jobs.attach_destination(job.id, channel_id=FakeDiscord.CHANNEL_ID,
                                                  thread_id=int(thread["id"]), summary_message_id=summary.id)
                roll = rng.random()
                if roll < 0.1:
                    fake.delete_channel(int(thread["id"]))
                elif roll < 0.2:
                    fake.archived_threads.add(int(thread["id"]))

            async def discord_faults() -> None:
                # A bad moment passes: 503s nobody met within a step lapse, so that they do not pile up
                # on the last result still being delivered (one poster, retrying every ~25 s).
                fake.faults.clear()
                if rng.random() < 0.25:
                    fake.fail("POST", r"/channels/\d+/messages", 503, times=rng.randint(1, 3))
                if rng.random() < 0.1:
                    fake.lose_answers += 1
                if rng.random() < 0.05:
                    fake.forget_nonces()

            await rig.run_until(rig.all_delivered, step=5, limit=6 * 3600, between=discord_faults)
            assert await rig.violations() == []
            retried = await database.fetchval("SELECT COUNT(*) FROM jobs WHERE delivery_attempts > 0")
            assert retried >= 8, retried  # the faults really got in the way (9-19 jobs over seeds 1-6)
            for job_id, thread_id in threads.items():
                posted = result_messages(fake, job_id)
                assert len(posted) == 1, (job_id, len(posted))
                expected = FakeDiscord.CHANNEL_ID if (thread_id in fake.deleted_channels
                                                      or thread_id in fake.archived_threads) else thread_id
                assert posted[0].channel_id == expected
                assert (await rig.job(job_id)).result_message_id == posted[0].id
    finally:
        await database.close()
        await publisher.aclose()
        await client.close()
        await fake.close()
