"""The Kling gateway client against its fake: bodies, every response shape, the poll path fallback."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from bot.catalog import Family, ImageRole, ProviderName
from bot.clock import FakeClock
from bot.providers.base import ErrorKind, ProviderError, TaskState
from bot.providers.kling import KlingClient, parse_kling_task, parse_progress
from bot.settings import Settings
from tests.fakes.vendors import Fault, FakeKlingVendor, KlingShape, Outcome
from tests.providers.conftest import API_KEY, spec

KLING = ProviderName.KLING
SHAPES: list[KlingShape] = ["openai", "envelope", "envelope_legacy", "simple", "native"]


@pytest.fixture
async def vendor(fake_clock: FakeClock) -> AsyncIterator[FakeKlingVendor]:
    async with FakeKlingVendor(api_key=API_KEY, clock=fake_clock, duration=100) as fake:
        yield fake


@pytest.fixture
async def client(vendor: FakeKlingVendor, settings: Settings, fake_clock: FakeClock) -> AsyncIterator[KlingClient]:
    kling = KlingClient(vendor.base_url, SecretStr(API_KEY), settings, fake_clock)
    yield kling
    await kling.aclose()


async def test_text_body(client: KlingClient, vendor: FakeKlingVendor) -> None:
    job = spec(Family.KLING, KLING, model="pro", audio=True, aspect_ratio="1:1", duration=8,
               negative_prompt="blur", cfg_scale=0.6, shot_type="intelligent")
    body = vendor.tasks[await client.submit(job)].body
    assert body == {
        "model": "kling-v3-pro-audio", "prompt": "a red fox in the snow", "aspect_ratio": "1:1", "duration": 8,
        "extra_body": {"cfg_scale": 0.6, "shot_type": "intelligent", "negative_prompt": "blur"},
    }


async def test_frames_body_has_no_aspect_ratio(client: KlingClient, vendor: FakeKlingVendor) -> None:
    job = spec(Family.KLING, KLING, images=(ImageRole.FIRST_FRAME, ImageRole.LAST_FRAME))
    body = vendor.tasks[await client.submit(job)].body
    assert body["image"] == "https://cdn.example/first_frame-1.png"
    assert body["last_image"] == "https://cdn.example/last_frame-1.png"
    assert "aspect_ratio" not in body
    assert body["duration"] == 5 and isinstance(body["duration"], int)


async def test_multi_prompt_body(client: KlingClient, vendor: FakeKlingVendor) -> None:
    job = spec(Family.KLING, KLING, images=(ImageRole.FIRST_FRAME,), multi_prompt="pan left | zoom in |close up")
    body = vendor.tasks[await client.submit(job)].body
    assert "prompt" not in body
    assert body["extra_body"] == {
        "shot_type": "customize",
        "multi_prompt": [{"prompt": "pan left"}, {"prompt": "zoom in"}, {"prompt": "close up"}],
    }


@pytest.mark.parametrize("shape", SHAPES)
async def test_every_shape_runs_then_succeeds(settings: Settings, fake_clock: FakeClock, shape: KlingShape) -> None:
    async with FakeKlingVendor(api_key=API_KEY, clock=fake_clock, duration=100, shape=shape) as fake:
        client = KlingClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.KLING, KLING)
        task_id = await client.submit(job)
        assert task_id in fake.tasks  # id found in id / task_id / data.task_id
        fake_clock.advance(60)
        running = await client.poll(task_id, job)
        fake_clock.advance(40)
        done = await client.poll(task_id, job)
        await client.aclose()
    assert running.state is TaskState.RUNNING
    if shape in ("openai", "envelope", "envelope_legacy"):
        assert running.progress == pytest.approx(0.6)
    assert done.state is TaskState.SUCCEEDED
    assert done.video_url == fake.video_url(fake.tasks[task_id])


@pytest.mark.parametrize("shape", SHAPES)
async def test_every_shape_reports_failure(settings: Settings, fake_clock: FakeClock, shape: KlingShape) -> None:
    outcome = Outcome.fail("image resolution too low", code=1201)
    async with FakeKlingVendor(api_key=API_KEY, clock=fake_clock, duration=10, shape=shape, outcome=outcome) as fake:
        client = KlingClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.KLING, KLING)
        task_id = await client.submit(job)
        fake_clock.advance(10)
        result = await client.poll(task_id, job)
        await client.aclose()
    assert result.state is TaskState.FAILED
    assert result.error_message == "The vendor could not make this video: image resolution too low"


async def test_poll_falls_back_to_generations_path_and_remembers(settings: Settings, fake_clock: FakeClock) -> None:
    async with FakeKlingVendor(api_key=API_KEY, clock=fake_clock, serve_paths=frozenset({"generations"})) as fake:
        client = KlingClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.KLING, KLING)
        task_id = await client.submit(job)
        await client.poll(task_id, job)
        assert fake.requests["query"] == 2  # /v1/videos 404, then /v1/video/generations
        await client.poll(task_id, job)
        assert fake.requests["query"] == 3  # straight to the path that works
        assert fake.status_calls(task_id) == 2
        await client.aclose()


async def test_unknown_task_on_both_paths_is_retryable_404(client: KlingClient) -> None:
    with pytest.raises(ProviderError) as caught:
        await client.poll("task_missing", spec(Family.KLING, KLING))
    assert caught.value.kind is ErrorKind.RETRYABLE and caught.value.status_code == 404


@pytest.mark.parametrize("code", [1300, 1301])
async def test_content_policy_codes_are_final(client: KlingClient, vendor: FakeKlingVendor, code: int) -> None:
    vendor.inject("create", Fault.http(400, {"code": code, "message": "prompt contains sensitive words"}))
    with pytest.raises(ProviderError) as caught:
        await client.submit(spec(Family.KLING, KLING))
    assert caught.value.kind is ErrorKind.FINAL
    assert caught.value.user_message == (
        "The vendor rejected the prompt or images under its content policy: prompt contains sensitive words")


async def test_concurrency_limit_code_is_retryable(client: KlingClient, vendor: FakeKlingVendor) -> None:
    vendor.inject("create", Fault.http(429, {"code": 1303, "message": "parallel task over resource pack limit"},
                                       {"Retry-After": "20"}))
    with pytest.raises(ProviderError) as caught:
        await client.submit(spec(Family.KLING, KLING))
    assert caught.value.kind is ErrorKind.RETRYABLE and caught.value.retry_after == 20


async def test_policy_failure_on_poll(client: KlingClient, vendor: FakeKlingVendor) -> None:
    job = spec(Family.KLING, KLING)
    task_id = await client.submit(job)
    vendor.finish_now(task_id, Outcome.fail("Failure to pass the risk control system", code=1301))
    result = await client.poll(task_id, job)
    assert result.state is TaskState.FAILED
    assert str(result.error_message).startswith("The vendor rejected the prompt or images under its content policy")


def test_other_url_locations() -> None:
    assert parse_kling_task({"id": "t", "status": "completed", "video_url": "https://v/a.mp4"}).video_url == "https://v/a.mp4"
    assert parse_kling_task({"id": "t", "status": "completed", "result": {"video_url": "https://v/b.mp4"}}).video_url == "https://v/b.mp4"
    legacy = {"code": "success", "data": {"task_id": "t", "status": "SUCCESS", "fail_reason": "https://v/c.mp4"}}
    assert parse_kling_task(legacy).video_url == "https://v/c.mp4"
    no_url = parse_kling_task({"code": "success", "data": {"task_id": "t", "status": "SUCCESS", "fail_reason": ""}})
    assert no_url.state is TaskState.FAILED
    with pytest.raises(ValueError):
        parse_kling_task({"code": "error", "message": "task not exist", "data": None})


def test_progress() -> None:
    assert parse_progress("30%") == pytest.approx(0.3)
    assert parse_progress(" 100% ") == 1.0
    assert parse_progress(45) == pytest.approx(0.45)
    assert parse_progress(0.25) == pytest.approx(0.25)
    assert parse_progress("soon") is None
    assert parse_progress(None) is None


def test_the_openai_video_object_dates_its_own_finish() -> None:
    done = {"id": "task_1", "status": "completed", "created_at": 1770350000, "completed_at": 1770350151,
            "metadata": {"url": "https://cdn.example/k.mp4"}}
    assert parse_kling_task(done).vendor_seconds == 151
    envelope = {"code": "success", "data": {"task_id": "t", "status": "SUCCESS", "progress": "100%",
                                            "result_url": "https://cdn.example/k.mp4"}}
    assert parse_kling_task(envelope).vendor_seconds is None  # the gateway envelope does not say


# --- new-api's own answers ------------------------------------------------------------------------------

async def test_unknown_task_is_final_on_new_api(settings: Settings, fake_clock: FakeClock) -> None:
    """new-api answers an unknown task with HTTP 400 `task_not_exist`: the job ends at once."""
    async with FakeKlingVendor(api_key=API_KEY, clock=fake_clock, new_api=True) as fake:
        client = KlingClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        with pytest.raises(ProviderError) as caught:
            await client.poll("task_gone", spec(Family.KLING, KLING))
        await client.aclose()
    assert caught.value.kind is ErrorKind.FINAL and caught.value.status_code == 400
    assert caught.value.user_message == "Kling gateway no longer knows this video's task, so it cannot finish."
    assert fake.requests["query"] == 1  # final: no second route, no retry


async def test_bare_failure_reads_the_reason_from_the_other_route_once(settings: Settings,
                                                                       fake_clock: FakeClock) -> None:
    outcome = Outcome.fail("image aspect ratio out of range")
    async with FakeKlingVendor(api_key=API_KEY, clock=fake_clock, duration=10, outcome=outcome, new_api=True,
                               bare_video_failures=True) as fake:
        client = KlingClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.KLING, KLING)
        healthy, failing = await client.submit(job), await client.submit(job)
        fake.finish_now(healthy, Outcome.ok())
        assert (await client.poll(healthy, job)).state is TaskState.SUCCEEDED
        assert fake.requests["query"] == 1  # a healthy job costs no extra request
        fake_clock.advance(10)
        result = await client.poll(failing, job)
        await client.aclose()
    assert result.state is TaskState.FAILED
    assert result.error_message == "The vendor could not make this video: image aspect ratio out of range"
    assert fake.requests["query"] == 3  # the failing job: its poll and one reading of fail_reason


async def test_upstream_error_wrapped_as_a_json_string_is_unwrapped(client: KlingClient,
                                                                    vendor: FakeKlingVendor) -> None:
    kling_body = '{"code":1301,"message":"Your prompt contains sensitive content","request_id":"req-9"}'
    vendor.inject("create", Fault.http(400, {"code": "fail_to_submit", "message": kling_body, "data": None}))
    with pytest.raises(ProviderError) as caught:
        await client.submit(spec(Family.KLING, KLING))
    assert caught.value.kind is ErrorKind.FINAL
    assert caught.value.user_message == (
        "The vendor rejected the prompt or images under its content policy: Your prompt contains sensitive content")
    assert "{" not in caught.value.user_message


async def test_wrapped_policy_code_in_a_failed_task(client: KlingClient, vendor: FakeKlingVendor) -> None:
    job = spec(Family.KLING, KLING)
    task_id = await client.submit(job)
    vendor.finish_now(task_id, Outcome.fail('{"code":1301,"message":"risk control"}'))
    result = await client.poll(task_id, job)
    assert result.error_message == "The vendor rejected the prompt or images under its content policy: risk control"


async def test_gateway_out_of_credit_is_the_operators_to_fix(client: KlingClient, vendor: FakeKlingVendor,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    vendor.inject("create", Fault.http(403, {"error": {
        "message": "用户额度不足, 剩余额度: ＄0.000000", "type": "new_api_error", "code": "insufficient_user_quota"}}))
    with pytest.raises(ProviderError) as caught:
        await client.submit(spec(Family.KLING, KLING))
    assert caught.value.kind is ErrorKind.FINAL
    assert caught.value.user_message == "The bot's Kling gateway account is out of credit; tell the server owner."
    assert "refused" not in caught.value.user_message
    operator = [r for r in caplog.records if r.levelname == "ERROR" and "out of credit" in r.getMessage()]
    assert operator and "insufficient_user_quota" in operator[0].getMessage()
