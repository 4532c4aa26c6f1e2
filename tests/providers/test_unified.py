"""The unified (kkiai) client against its fake: request bodies, status mapping, result URLs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from bot.catalog import Family, ImageRole, ProviderName
from bot.clock import FakeClock
from bot.providers.base import ErrorKind, ProviderError, TaskState
from bot.providers.unified import UnifiedClient, map_unified_status, parse_unified_query
from bot.settings import Settings
from tests.fakes.vendors import Fault, FakeUnifiedVendor, Outcome
from tests.providers.conftest import API_KEY, spec

KKIAI = ProviderName.KKIAI


@pytest.fixture
async def vendor(fake_clock: FakeClock) -> AsyncIterator[FakeUnifiedVendor]:
    async with FakeUnifiedVendor(api_key=API_KEY, clock=fake_clock, duration=100) as fake:
        yield fake


@pytest.fixture
async def client(vendor: FakeUnifiedVendor, settings: Settings, fake_clock: FakeClock) -> AsyncIterator[UnifiedClient]:
    unified = UnifiedClient(vendor.base_url, SecretStr(API_KEY), settings, fake_clock)
    yield unified
    await unified.aclose()


async def test_veo_text_body(client: UnifiedClient, vendor: FakeUnifiedVendor) -> None:
    job = spec(Family.VEO, KKIAI, aspect_ratio="9:16", enhance_prompt=False)
    task_id = await client.submit(job)
    assert vendor.tasks[task_id].body == {
        "model": "veo3.1-fast", "prompt": "a red fox in the snow", "aspect_ratio": "9:16",
        "enhance_prompt": False, "enable_upsample": False,
    }


async def test_veo_frames_body_orders_first_then_last(client: UnifiedClient, vendor: FakeUnifiedVendor) -> None:
    job = spec(Family.VEO, KKIAI, images=(ImageRole.LAST_FRAME, ImageRole.FIRST_FRAME), upsample=True)
    body = vendor.tasks[await client.submit(job)].body
    assert body["images"] == ["https://cdn.example/first_frame-1.png", "https://cdn.example/last_frame-1.png"]
    assert body["enable_upsample"] is True and body["enhance_prompt"] is True


@pytest.mark.parametrize("with_image", [False, True])
async def test_sora_body(client: UnifiedClient, vendor: FakeUnifiedVendor, with_image: bool) -> None:
    images = (ImageRole.FIRST_FRAME,) if with_image else ()
    job = spec(Family.SORA, KKIAI, images=images, orientation="portrait", size="large", duration=15, watermark=False)
    body = vendor.tasks[await client.submit(job)].body
    assert body == {
        "model": "sora-2", "prompt": "a red fox in the snow",
        "images": ["https://cdn.example/first_frame-1.png"] if with_image else [],
        "orientation": "portrait", "size": "large", "duration": 15, "watermark": False,
    }


async def test_polls_with_the_full_prefixed_id(client: UnifiedClient, vendor: FakeUnifiedVendor, fake_clock: FakeClock) -> None:
    job = spec(Family.VEO, KKIAI)
    task_id = await client.submit(job)
    assert task_id.startswith("veo3.1-fast:")  # the fake only answers to the full id
    result = await client.poll(task_id, job)
    assert result.state is TaskState.RUNNING and result.raw_status == "pending"
    assert vendor.status_calls(task_id) == 1


@pytest.mark.parametrize("status", [
    "pending", "queued", "processing", "image_downloading", "video_generating",
    "video_generation_completed", "video_upsampling", "video_upsampling_completed", "something_new",
])
async def test_running_statuses(settings: Settings, fake_clock: FakeClock, status: str) -> None:
    async with FakeUnifiedVendor(api_key=API_KEY, clock=fake_clock, duration=100, running_statuses=(status,)) as fake:
        client = UnifiedClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.VEO, KKIAI)
        result = await client.poll(await client.submit(job), job)
        await client.aclose()
    assert result.state is TaskState.RUNNING
    assert result.raw_status == status


@pytest.mark.parametrize("status", ["completed", "success", "succeeded", "SUCCESS"])
async def test_success_despite_stale_error_text(settings: Settings, fake_clock: FakeClock, status: str) -> None:
    async with FakeUnifiedVendor(api_key=API_KEY, clock=fake_clock, duration=10, success_status=status,
                                 stale_error_text=True) as fake:
        client = UnifiedClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.VEO, KKIAI, upsample=True)
        task_id = await client.submit(job)
        fake_clock.advance(10)
        result = await client.poll(task_id, job)
        await client.aclose()
    assert result.state is TaskState.SUCCEEDED
    assert result.error_message is None
    assert result.video_url is not None and result.video_url.endswith("-1080p.mp4")  # the upsampled one


@pytest.mark.parametrize("status", ["failed", "error", "cancelled", "video_generation_failed", "video_upsampling_failed"])
async def test_failure_statuses_carry_the_reason(settings: Settings, fake_clock: FakeClock, status: str) -> None:
    outcome = Outcome.fail("quota of the upstream account exhausted")
    async with FakeUnifiedVendor(api_key=API_KEY, clock=fake_clock, duration=5, outcome=outcome,
                                 failure_status=status) as fake:
        client = UnifiedClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.SORA, KKIAI)
        task_id = await client.submit(job)
        fake_clock.advance(6)
        result = await client.poll(task_id, job)
        await client.aclose()
    assert result.state is TaskState.FAILED
    assert result.error_message == "The vendor could not make this video: quota of the upstream account exhausted"


async def test_content_policy_failure_is_worded_as_such(client: UnifiedClient, vendor: FakeUnifiedVendor,
                                                        fake_clock: FakeClock) -> None:
    job = spec(Family.VEO, KKIAI)
    task_id = await client.submit(job)
    vendor.finish_now(task_id, Outcome.fail("your request contains unsafe prompt or images, rejected by google"))
    result = await client.poll(task_id, job)
    assert result.state is TaskState.FAILED
    assert result.error_message is not None
    assert result.error_message.startswith("The vendor rejected the prompt or images under its content policy")


def test_url_precedence() -> None:
    detail = {"status": "completed", "video_url": "https://v/plain.mp4", "upsample_video_url": "https://v/up.mp4"}
    top = parse_unified_query({"status": "completed", "video_url": "https://v/top.mp4", "detail": detail})
    assert top.video_url == "https://v/top.mp4"
    upsampled = parse_unified_query({"status": "completed", "video_url": None, "detail": detail})
    assert upsampled.video_url == "https://v/up.mp4"
    plain = parse_unified_query({"status": "completed", "detail": {"video_url": "https://v/plain.mp4"}})
    assert plain.video_url == "https://v/plain.mp4"
    missing = parse_unified_query({"status": "completed", "detail": {}})
    assert missing.state is TaskState.FAILED


def test_failure_text_sources() -> None:
    assert "boom one" in str(parse_unified_query({"status": "failed", "error": "boom one"}).error_message)
    assert "boom two" in str(parse_unified_query({"status": "failed", "error": {"message": "boom two"}}).error_message)
    assert "boom three" in str(parse_unified_query({"status": "error", "message": "boom three"}).error_message)
    first = parse_unified_query({"status": "failed", "detail": {"error_message": "second", "video_generation_error": "first"}})
    assert "first" in str(first.error_message)
    assert parse_unified_query({"status": "failed"}).error_message == "The vendor could not make this video and gave no reason."


def test_status_rule() -> None:
    assert map_unified_status("Completed") is TaskState.SUCCEEDED
    assert map_unified_status("canceled") is TaskState.FAILED
    assert map_unified_status("video_upsampling_completed") is TaskState.RUNNING
    with pytest.raises(ValueError):
        parse_unified_query({"id": "x"})


async def test_terminal_results_carry_the_vendors_own_duration(client: UnifiedClient, vendor: FakeUnifiedVendor,
                                                             fake_clock: FakeClock) -> None:
    job = spec(Family.VEO, KKIAI)
    task_id = await client.submit(job)
    assert (await client.poll(task_id, job)).vendor_seconds is None  # running: nothing to say yet
    fake_clock.advance(137)  # done at 100 s; we look 37 s later
    result = await client.poll(task_id, job)
    assert result.state is TaskState.SUCCEEDED and result.vendor_seconds == pytest.approx(100, abs=0.002)


def test_vendor_duration_from_completed_at_else_status_update_time() -> None:
    example = {"id": "x", "status": "completed", "video_url": "https://v/x.mp4", "status_update_time": 1770350329098,
               "detail": {"created_at": 1770350082099, "completed_at": 1770350328994}}
    assert parse_unified_query(example).vendor_seconds == pytest.approx(246.895)
    failed = {"id": "x", "status": "failed", "status_update_time": 1770350102099,
              "detail": {"created_at": 1770350082099, "video_generation_error": "rejected by google"}}
    assert parse_unified_query(failed).vendor_seconds == pytest.approx(20.0)
    backwards = {"id": "x", "status": "failed", "status_update_time": 1, "detail": {"created_at": 1770350082099}}
    assert parse_unified_query(backwards).vendor_seconds is None


async def test_failed_upsampling_delivers_the_720p_video(settings: Settings, fake_clock: FakeClock) -> None:
    async with FakeUnifiedVendor(api_key=API_KEY, clock=fake_clock, duration=100, upsampling_fails=True) as fake:
        client = UnifiedClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.VEO, KKIAI, upsample=True)
        task_id = await client.submit(job)
        fake_clock.advance(100)
        result = await client.poll(task_id, job)
        await client.aclose()
    assert result.state is TaskState.SUCCEEDED and result.raw_status == "video_upsampling_failed"
    assert result.video_url == fake.video_url(fake.tasks[task_id])  # the 720p file
    assert result.note is not None and "1080p pass failed" in result.note
    assert result.uncharged == ("1080p",)


def test_failed_upsampling_without_a_video_is_a_failure() -> None:
    result = parse_unified_query({"id": "t", "status": "video_upsampling_failed",
                                  "detail": {"error_message": "upsample failed"}})
    assert result.state is TaskState.FAILED and result.error_message == "The vendor could not make this video: upsample failed"


async def test_unknown_task_on_a_new_api_gateway_is_final(client: UnifiedClient, vendor: FakeUnifiedVendor) -> None:
    vendor.inject("query", Fault.http(400, {"code": "task_not_exist", "message": "task_not_exist", "data": None}))
    with pytest.raises(ProviderError) as caught:
        await client.poll("veo3.1-fast:1-x", spec(Family.VEO, KKIAI))
    assert caught.value.kind is ErrorKind.FINAL
