"""The poller with the real vendor clients against the loopback vendor fakes, and the poller's loop."""

from __future__ import annotations

import asyncio

import pytest

from bot.catalog import Family, FollowUp, Mode, ProviderName, get_model
from bot.clock import FakeClock
from bot.jobs.models import DeliveryState, JobStatus
from bot.jobs.poller import Poller
from bot.providers.registry import build_providers, close_providers
from bot.validation import GenerationRequest, build_follow_up, follow_ups_for
from storage.database import Database
from fakes.vendors import Fault, FakeKieVendor, FakeKlingVendor, FakeUnifiedVendor, Outcome
from fakes.publisher import RecordingPublisher
from fakes.settings import make_settings
from tests.jobs.support import REQUESTER, AllowAll, LedgerQuota
from bot.jobs.service import JobService


def _wire(db: Database, clock: FakeClock, settings, providers):  # type: ignore[no-untyped-def]
    quota, publisher = LedgerQuota(), RecordingPublisher()
    poller = Poller(settings=settings, db=db, clock=clock, providers=providers, quota=quota, publisher=publisher,
                    instance_id="poller-fakes")
    jobs = JobService(settings=settings, db=db, clock=clock, providers=providers, quota=quota, policy=AllowAll(),
                      wake_poller=poller.wake)
    return jobs, poller, publisher


async def _drive(poller: Poller, clock: FakeClock, jobs: JobService, job_id: int, step: float = 2.0,
                 limit: float = 3600) -> None:
    waited = 0.0
    while waited < limit:
        await poller.run_once()
        job = await jobs.repository.get(job_id)
        if job is not None and job.delivery_state is DeliveryState.DELIVERED:
            return
        clock.advance(step)
        waited += step
    raise AssertionError("job never delivered")


async def test_kie_job_end_to_end_with_the_fake_vendor(db: Database, fake_clock: FakeClock) -> None:
    async with FakeKieVendor(api_key="k", clock=fake_clock, duration=95) as kie:
        settings = make_settings(kie_api_key="k", kie_base_url=kie.base_url, kie_upload_base_url=kie.base_url)
        providers = build_providers(settings, fake_clock)
        try:
            jobs, poller, publisher = _wire(db, fake_clock, settings, providers)
            spec = jobs.validate(GenerationRequest(family=Family.VEO, prompt="a lighthouse at dawn"))
            job = await jobs.create_job(REQUESTER, spec)
            await _drive(poller, fake_clock, jobs, job.id)
            done = await jobs.repository.get(job.id)
            assert done is not None and done.status is JobStatus.SUCCEEDED and done.video_url
            assert kie.create_calls == 1
            task = next(iter(kie.tasks.values()))
            assert 1 <= task.status_calls <= 10
            assert len(publisher.delivered) == 1 and done.video_url in publisher.delivered[0][1].content
        finally:
            await close_providers(providers)


async def test_follow_ups_run_as_jobs_of_their_own(db: Database, fake_clock: FakeClock) -> None:
    """A finished kie video, then its 4K pass and an extension: each one a job, submitted, polled on its
    own mode's schedule and delivered; the 4K job under its derived task id."""
    async with FakeKieVendor(api_key="k", clock=fake_clock, duration=95, uhd_delay=400) as kie:
        settings = make_settings(kie_api_key="k", kie_base_url=kie.base_url, kie_upload_base_url=kie.base_url)
        providers = build_providers(settings, fake_clock)
        try:
            jobs, poller, publisher = _wire(db, fake_clock, settings, providers)
            spec = jobs.validate(GenerationRequest(family=Family.VEO, prompt="a lighthouse at dawn"))
            source = await jobs.create_job(REQUESTER, spec)
            await _drive(poller, fake_clock, jobs, source.id)
            done = await jobs.repository.get(source.id)
            assert done is not None and done.provider_task_id is not None
            assert follow_ups_for(done.spec) == list(FollowUp)

            uhd = await jobs.create_job(REQUESTER, build_follow_up(done.spec, done.provider_task_id, FollowUp.UPSCALE_4K))
            await _drive(poller, fake_clock, jobs, uhd.id, step=10)
            uhd_done = await jobs.repository.get(uhd.id)
            assert uhd_done is not None and uhd_done.status is JobStatus.SUCCEEDED
            assert uhd_done.mode is Mode.UPSCALE_4K and uhd_done.provider_task_id == f"4k:{done.provider_task_id}"
            assert uhd_done.video_url == kie.video_url(kie.tasks[done.provider_task_id], "-4k")

            extend = await jobs.create_job(REQUESTER, build_follow_up(done.spec, done.provider_task_id,
                                                                      FollowUp.EXTEND, prompt="the tide comes in"))
            await _drive(poller, fake_clock, jobs, extend.id)
            extend_done = await jobs.repository.get(extend.id)
            assert extend_done is not None and extend_done.status is JobStatus.SUCCEEDED
            assert kie.tasks[extend_done.provider_task_id or ""].body["taskId"] == done.provider_task_id
            assert len(publisher.delivered) == 3
        finally:
            await close_providers(providers)


async def test_lost_create_response_is_never_resent(db: Database, fake_clock: FakeClock) -> None:
    async with FakeUnifiedVendor(api_key="k", clock=fake_clock, duration=60) as vendor:
        settings = make_settings(kkiai_api_key="k", kkiai_base_url=vendor.base_url,
                                 uncertain_submit_grace_seconds=300)
        providers = build_providers(settings, fake_clock)
        try:
            jobs, poller, publisher = _wire(db, fake_clock, settings, providers)
            assert set(providers) == {ProviderName.KKIAI}
            vendor.inject("create", Fault.lost_response())
            spec = jobs.validate(GenerationRequest(family=Family.SORA, prompt="waves"))
            job = await jobs.create_job(REQUESTER, spec)
            await poller.run_once()
            assert (await jobs.repository.get(job.id)).status is JobStatus.UNCERTAIN  # type: ignore[union-attr]
            await _drive(poller, fake_clock, jobs, job.id, step=30)
            done = await jobs.repository.get(job.id)
            assert done is not None and done.status is JobStatus.FAILED
            assert vendor.create_calls == 1  # the vendor did create a task; we did not send another
        finally:
            await close_providers(providers)


async def test_rate_limited_create_waits_for_retry_after(db: Database, fake_clock: FakeClock) -> None:
    async with FakeKieVendor(api_key="k", clock=fake_clock, duration=30, outcome=Outcome.fail("unsafe prompt")) as kie:
        settings = make_settings(kie_api_key="k", kie_base_url=kie.base_url, kie_upload_base_url=kie.base_url)
        providers = build_providers(settings, fake_clock)
        try:
            jobs, poller, publisher = _wire(db, fake_clock, settings, providers)
            kie.inject("create", Fault.http(429, headers={"Retry-After": "20"}))
            spec = jobs.validate(GenerationRequest(family=Family.VEO, prompt="a storm"))
            job = await jobs.create_job(REQUESTER, spec)
            await poller.run_once()
            queued = await jobs.repository.get(job.id)
            assert queued is not None and queued.status is JobStatus.QUEUED
            assert queued.next_due_at is not None and queued.next_due_at >= fake_clock.now() + 20
            await _drive(poller, fake_clock, jobs, job.id)
            done = await jobs.repository.get(job.id)
            assert done is not None and done.status is JobStatus.FAILED
            assert kie.create_calls == 2
            assert publisher.delivered and "unsafe prompt" in publisher.delivered[0][1].content.lower()
        finally:
            await close_providers(providers)


async def test_the_loop_runs_jobs_and_stops_cleanly(db: Database, fake_clock: FakeClock) -> None:
    async with FakeKieVendor(api_key="k", clock=fake_clock, duration=40) as kie:
        settings = make_settings(kie_api_key="k", kie_base_url=kie.base_url, kie_upload_base_url=kie.base_url)
        providers = build_providers(settings, fake_clock)
        jobs, poller, publisher = _wire(db, fake_clock, settings, providers)
        poller.start()
        try:
            spec = jobs.validate(GenerationRequest(family=Family.VEO, prompt="a fox in snow"))
            job = await jobs.create_job(REQUESTER, spec)  # wakes the loop: submitted without advancing time
            for _ in range(1000):
                current = await jobs.repository.get(job.id)
                if current is not None and current.status is JobStatus.RUNNING:
                    break
                await asyncio.sleep(0.01)
            assert kie.create_calls == 1
            for _ in range(3000):
                if publisher.delivered:
                    break
                fake_clock.advance(1.0)
                await asyncio.sleep(0.005)
            assert publisher.delivered and publisher.delivered[0][0] == job.id
        finally:
            await asyncio.wait_for(poller.stop(), timeout=10)
            await close_providers(providers)


@pytest.mark.parametrize("progress", ["linear", "stages"])
async def test_kling_results_are_noticed_soon_whatever_the_gateways_progress_means(
    progress: str, db: Database, fake_clock: FakeClock
) -> None:
    # "linear": the share done, extrapolated to the finish. "stages": new-api's 10% / 20% / 30%, which
    # says nothing about the time left; read as a rate, a job at "30%" was asked every minute.
    duration = get_model("kling-v3-std-silent").timing.p50
    async with FakeKlingVendor(api_key="g", clock=fake_clock, duration=duration, progress=progress) as kling:
        settings = make_settings(kling_api_key="g", kling_base_url=kling.base_url)
        providers = build_providers(settings, fake_clock)
        try:
            jobs, poller, publisher = _wire(db, fake_clock, settings, providers)
            spec = jobs.validate(GenerationRequest(family=Family.KLING, prompt="waves on a cliff", model="std"))
            job = await jobs.create_job(REQUESTER, spec)
            give_up = fake_clock.now() + 3600
            while not publisher.delivered and fake_clock.now() < give_up:
                await poller.run_once()
                fake_clock.advance(0.5)
            task = next(iter(kling.tasks.values()))
            lag = fake_clock.now() - task.finishes_at
            assert publisher.delivered and publisher.delivered[0][0] == job.id
            assert lag <= (5.0 if progress == "linear" else 10.0)
            assert task.status_calls <= 10
        finally:
            await close_providers(providers)


async def test_poll_interval_seconds_polls_every_running_job_at_that_gap(db: Database, fake_clock: FakeClock) -> None:
    """POLL_INTERVAL_SECONDS=20 and a 95 s task: polled at 20, 40, 60, 80 and 100 s, never by the plan."""
    async with FakeKieVendor(api_key="k", clock=fake_clock, duration=95) as kie:
        settings = make_settings(kie_api_key="k", kie_base_url=kie.base_url, kie_upload_base_url=kie.base_url,
                                 poll_interval_seconds=20)
        providers = build_providers(settings, fake_clock)
        try:
            jobs, poller, _ = _wire(db, fake_clock, settings, providers)
            spec = jobs.validate(GenerationRequest(family=Family.VEO, prompt="a lighthouse at dawn"))
            job = await jobs.create_job(REQUESTER, spec)
            await poller.run_once()
            running = await jobs.repository.get(job.id)
            assert running is not None and running.status is JobStatus.RUNNING and running.submitted_at is not None
            assert running.next_due_at == pytest.approx(running.submitted_at + 20)
            await _drive(poller, fake_clock, jobs, job.id, step=1.0)
            done = await jobs.repository.get(job.id)
            assert done is not None and done.status is JobStatus.SUCCEEDED
            assert next(iter(kie.tasks.values())).status_calls == 5
            assert done.finished_at == pytest.approx(running.submitted_at + 100)
        finally:
            await close_providers(providers)


def test_an_empty_poll_interval_means_the_learned_schedule(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "")
    assert make_settings().poll_interval_seconds is None
    monkeypatch.setenv("POLL_INTERVAL_SECONDS", "15")
    assert make_settings().poll_interval_seconds == 15


async def test_a_failed_1080p_pass_delivers_720p_and_charges_without_the_surcharge(
        db: Database, fake_clock: FakeClock) -> None:
    async with FakeUnifiedVendor(api_key="k", clock=fake_clock, duration=120, upsampling_fails=True) as vendor:
        settings = make_settings(kkiai_api_key="k", kkiai_base_url=vendor.base_url)
        providers = build_providers(settings, fake_clock)
        try:
            jobs, poller, publisher = _wire(db, fake_clock, settings, providers)
            spec = jobs.validate(GenerationRequest(family=Family.VEO, prompt="a harbour", model="veo-fast-kkiai",
                                                   upsample=True))
            job = await jobs.create_job(REQUESTER, spec)  # LedgerQuota: 2 credits held
            await _drive(poller, fake_clock, jobs, job.id)
            done = await jobs.repository.get(job.id)
            assert done is not None and done.status is JobStatus.SUCCEEDED and done.cost == 1
            assert done.video_url == vendor.video_url(vendor.tasks[done.provider_task_id or ""])  # the 720p file
            rows = await db.fetchall("SELECT kind, amount FROM credit_ledger WHERE job_id = ? ORDER BY id", (job.id,))
            assert [(r["kind"], r["amount"]) for r in rows] == [("hold", 2), ("charge", 1)]
            assert "1080p pass failed" in publisher.delivered[0][1].content
        finally:
            await close_providers(providers)


async def test_a_final_status_answer_ends_the_job_at_once_without_tripping_the_breaker(
        db: Database, fake_clock: FakeClock) -> None:
    async with FakeKieVendor(api_key="k", clock=fake_clock, duration=95) as kie:
        settings = make_settings(kie_api_key="k", kie_base_url=kie.base_url, kie_upload_base_url=kie.base_url)
        providers = build_providers(settings, fake_clock)
        try:
            jobs, poller, publisher = _wire(db, fake_clock, settings, providers)
            spec = jobs.validate(GenerationRequest(family=Family.VEO, prompt="a lighthouse at dawn"))
            job = await jobs.create_job(REQUESTER, spec)
            kie.inject("query", *[Fault.http(500, {"code": 422, "msg": "record is null", "data": None})] * 20)
            await _drive(poller, fake_clock, jobs, job.id)
            done = await jobs.repository.get(job.id)
            assert done is not None and done.status is JobStatus.FAILED
            assert done.error_message == "The vendor has no record of this video's task."
            assert kie.requests["query"] == 1  # one answer was enough
            assert poller.limits.for_provider(ProviderName.KIE).breaker.failures == 0  # an answer, not an outage
        finally:
            await close_providers(providers)


async def test_past_the_deadline_mid_upsample_the_720p_video_is_delivered_without_the_surcharge(
        db: Database, fake_clock: FakeClock) -> None:
    async with FakeKieVendor(api_key="k", clock=fake_clock, duration=95, hd_delay=None) as kie:
        settings = make_settings(kie_api_key="k", kie_base_url=kie.base_url, kie_upload_base_url=kie.base_url,
                                 job_timeout_seconds=200)
        providers = build_providers(settings, fake_clock)
        try:
            jobs, poller, publisher = _wire(db, fake_clock, settings, providers)
            spec = jobs.validate(GenerationRequest(family=Family.VEO, prompt="dunes", upsample=True))
            job = await jobs.create_job(REQUESTER, spec)  # LedgerQuota: 2 credits held, 1 of them for 1080p
            await _drive(poller, fake_clock, jobs, job.id)
            done = await jobs.repository.get(job.id)
            assert done is not None and done.status is JobStatus.SUCCEEDED and done.raw_status == "deadline_fallback"
            assert done.video_url == kie.video_url(kie.tasks[done.provider_task_id or ""]) and done.cost == 1
            assert "720p video" in publisher.delivered[0][1].content
        finally:
            await close_providers(providers)
