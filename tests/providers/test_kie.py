"""The kie.ai client against its fake: bodies, successFlag, 1080p, body codes, upload, callbacks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web
from pydantic import SecretStr

from bot.catalog import Family, FollowUp, ImageRole, ProviderName
from bot.clock import FakeClock, SystemClock
from bot.providers.base import ErrorKind, ProviderError, TaskState
import bot.providers.kie as kie_module
from bot.providers.kie import (
    HD_GRACE_SECONDS, KieClient, callback_task_id, parse_kie_callback, result_urls, verify_kie_signature,
)
from bot.settings import Settings
from bot.validation import JobSpec, build_follow_up
from tests.fakes.loopback import serve
from tests.fakes.vendors import Fault, FakeKieVendor, Outcome
from tests.providers.conftest import API_KEY, spec

KIE = ProviderName.KIE


@pytest.fixture
async def vendor(fake_clock: FakeClock) -> AsyncIterator[FakeKieVendor]:
    async with FakeKieVendor(api_key=API_KEY, clock=fake_clock, duration=100, hd_delay=60) as fake:
        yield fake


@pytest.fixture
async def client(vendor: FakeKieVendor, settings: Settings, fake_clock: FakeClock) -> AsyncIterator[KieClient]:
    kie = KieClient(vendor.base_url, SecretStr(API_KEY), settings, fake_clock, upload_base_url=vendor.base_url)
    yield kie
    await kie.aclose()


async def submit_error(client: KieClient) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await client.submit(spec(Family.VEO, KIE))
    return caught.value


# --- bodies ------------------------------------------------------------------------------------------

async def test_text_body(client: KieClient, vendor: FakeKieVendor) -> None:
    job = spec(Family.VEO, KIE, model="veo-quality-kie", aspect_ratio="9:16", seed=12345, enhance_prompt=False)
    body = vendor.tasks[await client.submit(job)].body
    assert body == {"prompt": "a red fox in the snow", "model": "veo3", "generationType": "TEXT_2_VIDEO",
                    "aspect_ratio": "9:16", "seeds": 12345, "enableTranslation": False}


async def test_frames_body_with_callback(client: KieClient, vendor: FakeKieVendor) -> None:
    job = spec(Family.VEO, KIE, images=(ImageRole.FIRST_FRAME, ImageRole.LAST_FRAME))
    body = vendor.tasks[await client.submit(job, callback_url="https://bot.example/callbacks/kie/7")].body
    assert body["generationType"] == "FIRST_AND_LAST_FRAMES_2_VIDEO"
    assert body["imageUrls"] == ["https://cdn.example/first_frame-1.png", "https://cdn.example/last_frame-1.png"]
    assert body["callBackUrl"] == "https://bot.example/callbacks/kie/7"
    assert body["enableTranslation"] is True and "seeds" not in body


async def test_reference_body(client: KieClient, vendor: FakeKieVendor) -> None:
    roles = (ImageRole.REFERENCE_1, ImageRole.REFERENCE_2, ImageRole.REFERENCE_3)
    body = vendor.tasks[await client.submit(spec(Family.VEO, KIE, images=roles))].body
    assert body["generationType"] == "REFERENCE_2_VIDEO"
    assert body["model"] == "veo3_fast"
    assert body["imageUrls"] == [f"https://cdn.example/{r.value}-1.png" for r in roles]


# --- record-info -------------------------------------------------------------------------------------

async def test_running_then_success(client: KieClient, vendor: FakeKieVendor, fake_clock: FakeClock) -> None:
    job = spec(Family.VEO, KIE)
    task_id = await client.submit(job)
    assert (await client.poll(task_id, job)).state is TaskState.RUNNING
    fake_clock.advance(100)
    result = await client.poll(task_id, job)
    assert result.state is TaskState.SUCCEEDED
    assert result.video_url == vendor.video_url(vendor.tasks[task_id])
    assert vendor.tasks[task_id].hd_calls == 0  # no 1080p asked for


async def test_result_urls_as_json_string(settings: Settings, fake_clock: FakeClock) -> None:
    async with FakeKieVendor(api_key=API_KEY, clock=fake_clock, duration=1, result_urls_as_string=True) as fake:
        client = KieClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.VEO, KIE)
        task_id = await client.submit(job)
        fake_clock.advance(1)
        result = await client.poll(task_id, job)
        await client.aclose()
    assert result.state is TaskState.SUCCEEDED
    assert result.video_url == fake.video_url(fake.tasks[task_id])


@pytest.mark.parametrize("flag", [2, 3])
async def test_failed_flags(settings: Settings, fake_clock: FakeClock, flag: int) -> None:
    outcome = Outcome.fail("Your request was rejected by Flow: unsafe content", code=422)
    async with FakeKieVendor(api_key=API_KEY, clock=fake_clock, duration=1, outcome=outcome, failure_flag=flag) as fake:
        client = KieClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.VEO, KIE)
        task_id = await client.submit(job)
        fake_clock.advance(1)
        result = await client.poll(task_id, job)
        await client.aclose()
    assert result.state is TaskState.FAILED
    assert result.error_message == (
        "The vendor rejected the prompt or images under its content policy: "
        "Your request was rejected by Flow: unsafe content")


def test_result_urls_parsing() -> None:
    assert result_urls(["https://a", " https://b "]) == ["https://a", "https://b"]
    assert result_urls('["https://a","https://b"]') == ["https://a", "https://b"]
    assert result_urls("https://only") == ["https://only"]
    assert result_urls(None) == [] and result_urls("") == [] and result_urls([None, 3]) == []


# --- 1080p -------------------------------------------------------------------------------------------

async def test_1080p_not_ready_then_ready(client: KieClient, vendor: FakeKieVendor, fake_clock: FakeClock) -> None:
    job = spec(Family.VEO, KIE, upsample=True)
    task_id = await client.submit(job)
    fake_clock.advance(100)
    waiting = await client.poll(task_id, job)
    assert waiting.state is TaskState.RUNNING and waiting.raw_status == "upsampling_1080p"
    fake_clock.advance(60)
    done = await client.poll(task_id, job)
    assert done.state is TaskState.SUCCEEDED and done.raw_status == "success_1080p"
    assert done.video_url == vendor.video_url(vendor.tasks[task_id], "-1080p")
    assert vendor.tasks[task_id].hd_calls == 2


async def test_1080p_never_ready_delivers_720p_after_grace(settings: Settings, fake_clock: FakeClock) -> None:
    async with FakeKieVendor(api_key=API_KEY, clock=fake_clock, duration=100, hd_delay=None) as fake:
        client = KieClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.VEO, KIE, upsample=True)
        task_id = await client.submit(job)
        fake_clock.advance(100 + HD_GRACE_SECONDS - 1)
        assert (await client.poll(task_id, job)).state is TaskState.RUNNING
        fake_clock.advance(1)
        result = await client.poll(task_id, job)
        await client.aclose()
    assert result.state is TaskState.SUCCEEDED and result.raw_status == "success_720p_fallback"
    assert result.video_url == fake.video_url(fake.tasks[task_id])


async def test_1080p_endpoint_errors_count_as_not_ready(client: KieClient, vendor: FakeKieVendor,
                                                         fake_clock: FakeClock) -> None:
    job = spec(Family.VEO, KIE, upsample=True)
    task_id = await client.submit(job)
    fake_clock.advance(200)
    vendor.inject("1080p", Fault.http(500, "oops"), Fault.reset())
    assert (await client.poll(task_id, job)).state is TaskState.RUNNING
    assert (await client.poll(task_id, job)).state is TaskState.RUNNING
    assert (await client.poll(task_id, job)).raw_status == "success_1080p"


# --- body codes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "kind", "message_start"), [
    (401, ErrorKind.FINAL, "The bot's kie.ai API key was refused"),
    (402, ErrorKind.FINAL, "The bot's kie.ai account is out of credit"),
    (422, ErrorKind.FINAL, "The vendor rejected the prompt or images under its content policy"),
    (451, ErrorKind.FINAL, "The vendor could not download the attached images"),
    (501, ErrorKind.FINAL, "The vendor could not make this video"),
    (429, ErrorKind.RETRYABLE, "kie.ai is busy"),
    (455, ErrorKind.RETRYABLE, "kie.ai is busy or in maintenance"),
    (500, ErrorKind.UNCERTAIN, "kie.ai failed while handling the request"),
])
async def test_body_code_with_http_200(client: KieClient, vendor: FakeKieVendor, code: int,
                                       kind: ErrorKind, message_start: str) -> None:
    reason = "Your request was rejected by Flow" if code == 422 else f"reason {code}"
    vendor.inject("create", Fault.http(200, {"code": code, "msg": reason, "data": None}))
    error = await submit_error(client)
    assert error.kind is kind
    assert error.user_message.startswith(message_start)
    assert error.status_code == code


async def test_poll_body_code_is_retryable(client: KieClient, vendor: FakeKieVendor) -> None:
    job = spec(Family.VEO, KIE)
    task_id = await client.submit(job)
    vendor.inject("query", Fault.http(200, {"code": 500, "msg": "server busy", "data": None}))
    with pytest.raises(ProviderError) as caught:
        await client.poll(task_id, job)
    assert caught.value.kind is ErrorKind.RETRYABLE and caught.value.status_code == 500


# --- upload --------------------------------------------------------------------------------------------

async def test_upload_image(client: KieClient, vendor: FakeKieVendor) -> None:
    url = await client.upload_image(b"\x89PNG fake", "my photo.png", "image/png")
    other = await client.upload_image(b"\x89PNG other", "my photo.png", "image/png")
    assert url != other  # same name from two members must not collide
    [first, _] = vendor.uploads
    assert first.upload_path == "framecast" and first.content_type == "image/png"
    assert first.file_name.endswith("-my_photo.png")
    async with httpx.AsyncClient() as http:
        assert (await http.get(url)).content == b"\x89PNG fake"


async def test_upload_falls_back_to_file_url(client: KieClient, vendor: FakeKieVendor) -> None:
    vendor.inject("upload", Fault.http(200, {"success": True, "code": 200, "data": {"fileUrl": "https://f/x.png"}}))
    assert await client.upload_image(b"x", "x.png", "image/png") == "https://f/x.png"


async def test_upload_failures(client: KieClient, vendor: FakeKieVendor) -> None:
    vendor.inject("upload", Fault.http(500, "down"), Fault.lost_response(),
                  Fault.http(200, {"code": 401, "msg": "bad key"}))
    kinds = []
    for _ in range(3):
        with pytest.raises(ProviderError) as caught:
            await client.upload_image(b"x", "x.png", "image/png")
        kinds.append(caught.value.kind)
    # Uploading twice is harmless, so only a refusal is final.
    assert kinds == [ErrorKind.RETRYABLE, ErrorKind.RETRYABLE, ErrorKind.FINAL]


# --- callbacks -----------------------------------------------------------------------------------------

class CallbackReceiver:
    """A loopback endpoint standing in for the bot's callback server."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, Any], dict[str, str]]] = []
        self.arrived = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def _handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.json(), dict(request.headers)))
        self.arrived.set()
        return web.json_response({"ok": True})

    async def __aenter__(self) -> CallbackReceiver:
        app = web.Application()
        app.router.add_post("/callbacks/kie/{job_id}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        port = await serve(self._runner)
        self.url = f"http://127.0.0.1:{port}/callbacks/kie/1"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_signed_callback_round_trip(settings: Settings, fake_clock: FakeClock) -> None:
    async with CallbackReceiver() as receiver, FakeKieVendor(
        api_key=API_KEY, clock=fake_clock, duration=50, callback_key="hook-key"
    ) as fake:
        client = KieClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        task_id = await client.submit(spec(Family.VEO, KIE), callback_url=receiver.url)
        await client.aclose()
        assert await fake.fire_due_callbacks() == 0  # not finished yet
        fake_clock.advance(50)
        assert await fake.fire_due_callbacks() == 1
        assert await fake.fire_due_callbacks() == 0  # never twice
        assert fake.callbacks[0].status == 200
    [(payload, headers)] = receiver.received
    parsed_id, result = parse_kie_callback(payload)
    assert parsed_id == task_id
    assert result.state is TaskState.SUCCEEDED and result.video_url == fake.video_url(fake.tasks[task_id])
    timestamp, signature = headers["X-Webhook-Timestamp"], headers["X-Webhook-Signature"]
    assert verify_kie_signature(task_id, timestamp, signature, "hook-key")
    assert verify_kie_signature(task_id, timestamp, signature, SecretStr("hook-key"))
    assert not verify_kie_signature(task_id, timestamp, signature, "other-key")
    assert not verify_kie_signature(task_id, str(int(timestamp) + 1), signature, "hook-key")
    assert not verify_kie_signature("veo_task_other", timestamp, signature, "hook-key")
    assert not verify_kie_signature(task_id, timestamp, None, "hook-key")
    assert not verify_kie_signature(task_id, timestamp, "not base64 at all", "hook-key")


async def test_callback_fires_by_itself_on_the_wall_clock(settings: Settings) -> None:
    async with CallbackReceiver() as receiver, FakeKieVendor(api_key=API_KEY, duration=0.0) as fake:
        client = KieClient(fake.base_url, SecretStr(API_KEY), settings, SystemClock())
        await client.submit(spec(Family.VEO, KIE), callback_url=receiver.url)
        await client.aclose()
        await asyncio.wait_for(receiver.arrived.wait(), timeout=10)
    assert receiver.received[0][0]["code"] == 200


def test_parse_failure_callbacks() -> None:
    for code in (400, 422, 500, 501):
        task_id, result = parse_kie_callback({"code": code, "msg": f"failed with {code}", "data": {"taskId": "t1"}})
        assert task_id == "t1"
        assert result.state is TaskState.FAILED
        assert result.error_message == f"The vendor could not make this video: failed with {code}"


def test_parse_odd_callbacks() -> None:
    as_string = {"code": 200, "data": {"taskId": "t", "info": {"resultUrls": '["https://v/1.mp4"]'}}}
    assert parse_kie_callback(as_string)[1].video_url == "https://v/1.mp4"
    no_urls = parse_kie_callback({"code": 200, "data": {"taskId": "t", "info": None}})
    assert no_urls[1].state is TaskState.RUNNING  # ask record-info instead
    unreadable_id, unreadable = parse_kie_callback({"hello": 1})
    assert unreadable_id is None and unreadable.state is TaskState.RUNNING
    assert parse_kie_callback([1, 2])[0] is None


def test_signature_matches_the_documented_formula() -> None:
    expected = base64.b64encode(hmac.new(b"k", b"abc.1700000000", hashlib.sha256).digest()).decode()
    assert verify_kie_signature("abc", "1700000000", expected, "k")
    assert not verify_kie_signature("abc", "1700000000", expected, "")


async def test_1080p_grace_counts_from_first_sighting_when_complete_time_is_unusable(
    client: KieClient, vendor: FakeKieVendor, fake_clock: FakeClock
) -> None:
    job = spec(Family.VEO, KIE, upsample=True)
    task_id = await client.submit(job)
    future = int((fake_clock.now() + 10 * 3600) * 1000)  # e.g. a local date string read as UTC
    record = {"code": 200, "msg": "success", "data": {
        "taskId": task_id, "successFlag": 1, "completeTime": future,
        "response": {"resultUrls": ["https://cdn.example/720p.mp4"], "resolution": "720p"}}}
    vendor.hd_delay = None
    vendor.inject("query", *[Fault.http(200, record)] * 3)
    assert (await client.poll(task_id, job)).raw_status == "upsampling_1080p"
    fake_clock.advance(HD_GRACE_SECONDS - 1)
    assert (await client.poll(task_id, job)).state is TaskState.RUNNING
    fake_clock.advance(1)
    result = await client.poll(task_id, job)
    assert result.state is TaskState.SUCCEEDED and result.video_url == "https://cdn.example/720p.mp4"


async def test_terminal_results_carry_the_vendors_own_duration(client: KieClient, vendor: FakeKieVendor,
                                                             fake_clock: FakeClock) -> None:
    job = spec(Family.VEO, KIE)
    task_id = await client.submit(job)
    fake_clock.advance(100 + 42)  # done at 100 s (the fixture's duration); we look 42 s later
    result = await client.poll(task_id, job)
    assert result.state is TaskState.SUCCEEDED
    assert result.vendor_seconds == pytest.approx(vendor.tasks[task_id].duration, abs=0.002)


async def test_upsample_sightings_of_abandoned_jobs_are_forgotten(settings: Settings, fake_clock: FakeClock,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kie_module, "FIRST_SEEN_PRUNE_AT", 2)
    async with FakeKieVendor(api_key=API_KEY, clock=fake_clock, duration=10, hd_delay=None) as fake:
        client = KieClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.VEO, KIE, upsample=True)
        abandoned = [await client.submit(job) for _ in range(3)]  # polled once mid-upsample, then cancelled
        fake_clock.advance(10)
        for task_id in abandoned:
            assert (await client.poll(task_id, job)).state is TaskState.RUNNING
        fake_clock.advance(3 * HD_GRACE_SECONDS + 1)
        live = await client.submit(job)
        fake_clock.advance(10)
        assert (await client.poll(live, job)).state is TaskState.RUNNING
        remembered = set(client._first_success_seen)
        await client.aclose()
    assert remembered == {live}  # the live job's sighting kept, the abandoned ones gone


# --- follow-ups: extend, 1080p, 4K ---------------------------------------------------------------------

async def finished_video(client: KieClient, fake_clock: FakeClock, **options: Any) -> tuple[JobSpec, str]:
    """A generation that kie has finished (the fixture's tasks take 100 s)."""
    job = spec(Family.VEO, KIE, **options)
    task_id = await client.submit(job)
    fake_clock.advance(100)
    assert (await client.poll(task_id, job)).state is TaskState.SUCCEEDED
    return job, task_id


async def test_extend_is_a_new_task_polled_with_record_info(client: KieClient, vendor: FakeKieVendor,
                                                            fake_clock: FakeClock) -> None:
    source, source_id = await finished_video(client, fake_clock, model="veo-quality-kie")
    job = build_follow_up(source, source_id, FollowUp.EXTEND, prompt="the fox dives into the snow")
    task_id = await client.submit(job, callback_url="https://bot.example/callbacks/kie/8")
    assert task_id != source_id and task_id in vendor.tasks
    assert vendor.tasks[task_id].body == {
        "taskId": source_id, "prompt": "the fox dives into the snow", "model": "veo3",
        "callBackUrl": "https://bot.example/callbacks/kie/8"}
    assert (await client.poll(task_id, job)).state is TaskState.RUNNING
    fake_clock.advance(100)
    result = await client.poll(task_id, job)
    assert result.state is TaskState.SUCCEEDED and result.video_url == vendor.video_url(vendor.tasks[task_id])
    assert vendor.requests["extend"] == 1


async def test_extend_of_an_unknown_task_is_refused_for_good(client: KieClient, fake_clock: FakeClock) -> None:
    source, _ = await finished_video(client, fake_clock)
    with pytest.raises(ProviderError) as refused:
        await client.submit(build_follow_up(source, "veo_task_gone", FollowUp.EXTEND))
    assert refused.value.kind is ErrorKind.FINAL and "no record of this video" in refused.value.user_message


async def test_1080p_follow_up_polls_until_the_file_is_ready(client: KieClient, vendor: FakeKieVendor,
                                                             fake_clock: FakeClock) -> None:
    source, source_id = await finished_video(client, fake_clock)
    job = build_follow_up(source, source_id, FollowUp.UPSCALE_1080P)
    task_id = await client.submit(job, callback_url="https://bot.example/callbacks/kie/9")
    assert task_id == f"1080p:{source_id}"  # its own id: (provider, provider_task_id) is unique
    assert vendor.tasks[source_id].hd_calls == 1  # asked at once: kie starts on the first request
    waiting = await client.poll(task_id, job)
    assert waiting.state is TaskState.RUNNING and waiting.raw_status == "upscaling_1080p"
    fake_clock.advance(60)
    done = await client.poll(task_id, job)
    assert done.state is TaskState.SUCCEEDED and done.video_url == vendor.video_url(vendor.tasks[source_id], "-1080p")
    assert vendor.requests["query"] == 1  # record-info only for the source generation


async def test_4k_follow_up_is_requested_once_then_polled(client: KieClient, vendor: FakeKieVendor,
                                                          fake_clock: FakeClock) -> None:
    source, source_id = await finished_video(client, fake_clock)
    job = build_follow_up(source, source_id, FollowUp.UPSCALE_4K)
    task_id = await client.submit(job, callback_url="https://bot.example/callbacks/kie/10")
    assert task_id == f"4k:{source_id}"
    assert vendor.uhd[source_id].callback_url == "https://bot.example/callbacks/kie/10"
    fake_clock.advance(300)
    waiting = await client.poll(task_id, job)  # kie: 422 "4k is processing ..." is not a refusal
    assert waiting.state is TaskState.RUNNING and waiting.raw_status == "upscaling_4k"
    fake_clock.advance(120)
    done = await client.poll(task_id, job)
    assert done.state is TaskState.SUCCEEDED and done.video_url == vendor.video_url(vendor.tasks[source_id], "-4k")
    assert vendor.uhd[source_id].requests == 3


async def test_4k_callback_names_the_source_task(settings: Settings, fake_clock: FakeClock) -> None:
    async with CallbackReceiver() as receiver, FakeKieVendor(
        api_key=API_KEY, clock=fake_clock, duration=10, uhd_delay=400, callback_key="hook-key"
    ) as fake:
        client = KieClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        source, source_id = await finished_video(client, fake_clock)
        job = build_follow_up(source, source_id, FollowUp.UPSCALE_4K)
        task_id = await client.submit(job, callback_url=receiver.url)
        await client.aclose()
        fake_clock.advance(400)
        assert await fake.fire_due_callbacks() == 1
    [(payload, headers)] = receiver.received
    named, result = parse_kie_callback(payload)
    assert named == source_id and result.state is TaskState.SUCCEEDED
    assert verify_kie_signature(named, headers["X-Webhook-Timestamp"], headers["X-Webhook-Signature"], "hook-key")
    assert callback_task_id(job.mode, named) == task_id  # the job knows the pass by its derived id
    assert callback_task_id(source.mode, named) == named


# --- final answers end the job at once ------------------------------------------------------------------

@pytest.mark.parametrize(("http_status", "code", "msg", "words"), [
    (200, 400, "Your prompt was flagged by Website as violating content policies", "under its content policy"),
    (200, 400, "Failed to fetch the image. Kindly verify any access limits", "could not download the attached images"),
    (500, 400, "public error unsafe image upload", "under its content policy"),
    (200, 422, "record is null", "no record of this video"),
    (422, 422, "Temporarily supports records within 14 days", "14 days only"),
])
async def test_final_record_info_answers(client: KieClient, vendor: FakeKieVendor, http_status: int, code: int,
                                         msg: str, words: str) -> None:
    job = spec(Family.VEO, KIE)
    task_id = await client.submit(job)
    vendor.inject("query", Fault.http(http_status, {"code": code, "msg": msg, "data": None}))
    with pytest.raises(ProviderError) as caught:
        await client.poll(task_id, job)
    assert caught.value.kind is ErrorKind.FINAL and caught.value.status_code == code
    assert words in caught.value.user_message


@pytest.mark.parametrize(("code", "sentence"), [
    (400, "The vendor refused the prompt or images: flagged under its content policy, or an image it could not fetch."),
    (500, "The vendor had an internal error while making this video."),
    (501, "The vendor's video generation failed."),
])
async def test_error_code_only_failures_get_the_documented_sentence(settings: Settings, fake_clock: FakeClock,
                                                                    code: int, sentence: str) -> None:
    async with FakeKieVendor(api_key=API_KEY, clock=fake_clock, duration=1, outcome=Outcome.fail("", code=code)) as fake:
        client = KieClient(fake.base_url, SecretStr(API_KEY), settings, fake_clock)
        job = spec(Family.VEO, KIE)
        task_id = await client.submit(job)
        fake_clock.advance(1)
        result = await client.poll(task_id, job)
        await client.aclose()
    assert result.state is TaskState.FAILED and result.error_message == sentence
    assert parse_kie_callback({"code": code, "msg": "", "data": {"taskId": "t"}})[1].error_message == sentence


async def test_4k_unavailable_is_final(client: KieClient, vendor: FakeKieVendor, fake_clock: FakeClock) -> None:
    source, source_id = await finished_video(client, fake_clock)
    job = build_follow_up(source, source_id, FollowUp.UPSCALE_4K)
    task_id = await client.submit(job)
    vendor.uhd_unavailable = True
    with pytest.raises(ProviderError) as caught:
        await client.poll(task_id, job)
    assert caught.value.kind is ErrorKind.FINAL
    assert caught.value.user_message == "The vendor cannot make a 4K version of this video."


async def test_1080p_refused_for_good_delivers_the_720p_video_now(client: KieClient, vendor: FakeKieVendor,
                                                                  fake_clock: FakeClock) -> None:
    job = spec(Family.VEO, KIE, upsample=True)
    task_id = await client.submit(job)
    fake_clock.advance(100)
    vendor.inject("1080p", Fault.http(200, {"code": 422, "msg": "record is null", "data": None}))
    result = await client.poll(task_id, job)
    assert result.state is TaskState.SUCCEEDED and result.raw_status == "success_720p_fallback"
    assert result.video_url == vendor.video_url(vendor.tasks[task_id])
    assert result.uncharged == ("1080p",) and result.note and "1080p" in result.note


async def test_4k_ordered_with_the_video_is_delivered_after_the_4k_pass(client: KieClient, vendor: FakeKieVendor,
                                                                        fake_clock: FakeClock) -> None:
    job = spec(Family.VEO, KIE, model="veo-lite-kie", upsample="4k", aspect_ratio="9:16")
    task_id = await client.submit(job)
    assert vendor.tasks[task_id].body["model"] == "veo3_lite"
    fake_clock.advance(100)
    waiting = await client.poll(task_id, job)  # the 720p video exists: the 4K pass is asked for
    assert waiting.state is TaskState.RUNNING and waiting.raw_status == "upsampling_4k" and waiting.finishing
    assert waiting.video_url == vendor.video_url(vendor.tasks[task_id]) and task_id in vendor.uhd
    fake_clock.advance(420)
    done = await client.poll(task_id, job)
    assert done.state is TaskState.SUCCEEDED and done.raw_status == "success_4k"
    assert done.video_url == vendor.video_url(vendor.tasks[task_id], "-4k")


async def test_4k_refused_delivers_720p_without_the_4k_surcharge(client: KieClient, vendor: FakeKieVendor,
                                                                  fake_clock: FakeClock) -> None:
    job = spec(Family.VEO, KIE, upsample="4k")
    task_id = await client.submit(job)
    fake_clock.advance(100)
    vendor.uhd_unavailable = True
    result = await client.poll(task_id, job)
    assert result.state is TaskState.SUCCEEDED and result.raw_status == "success_720p_fallback"
    assert result.uncharged == ("4k",) and result.note and "4K pass failed" in result.note
