"""The vendor fakes themselves: everyone's tests rely on their knobs, so pin them down with raw HTTP."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from bot.clock import FakeClock
from fakes.vendors import FAKE_MP4, Fault, FakeKieVendor, FakeKlingVendor, FakeUnifiedVendor, Outcome

KEY = "fake-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
UNIFIED_BODY = {"model": "veo3.1-fast", "prompt": "p"}


async def create_unified(http: httpx.AsyncClient, base: str) -> httpx.Response:
    return await http.post(f"{base}/v1/video/create", json=UNIFIED_BODY, headers=AUTH)


async def test_wrong_or_missing_key_is_401_on_every_vendor(fake_clock: FakeClock) -> None:
    async with FakeUnifiedVendor(api_key=KEY, clock=fake_clock) as unified, \
            FakeKieVendor(api_key=KEY, clock=fake_clock) as kie, \
            FakeKlingVendor(api_key=KEY, clock=fake_clock) as kling, httpx.AsyncClient() as http:
        calls = [
            (unified, "POST", "/v1/video/create"), (kie, "POST", "/api/v1/veo/generate"),
            (kling, "POST", "/v1/video/generations"), (kie, "GET", "/api/v1/veo/record-info?taskId=x"),
        ]
        for vendor, method, path in calls:
            wrong = await http.request(method, vendor.base_url + path, json={}, headers={"Authorization": "Bearer no"})
            missing = await http.request(method, vendor.base_url + path, json={})
            assert (wrong.status_code, missing.status_code) == (401, 401)
        assert unified.tasks == {} and kie.tasks == {} and kling.tasks == {}


async def test_tasks_finish_on_the_injected_clock(fake_clock: FakeClock) -> None:
    async with FakeUnifiedVendor(api_key=KEY, clock=fake_clock, duration=30) as vendor, httpx.AsyncClient() as http:
        task_id = (await create_unified(http, vendor.base_url)).json()["id"]
        task = vendor.tasks[task_id]
        assert task.body == UNIFIED_BODY
        assert task.finishes_at == fake_clock.now() + 30
        query = f"{vendor.base_url}/v1/video/query"
        assert (await http.get(query, params={"id": task_id}, headers=AUTH)).json()["status"] == "pending"
        fake_clock.advance(30)
        done = (await http.get(query, params={"id": task_id}, headers=AUTH)).json()
        assert done["status"] == "completed"
        assert vendor.status_calls(task_id) == 2
        # The prefix-less id the query echoes is not accepted back.
        assert (await http.get(query, params={"id": done["id"]}, headers=AUTH)).status_code == 404
        video = await http.get(done["detail"]["video_url"])
        assert video.content == FAKE_MP4 and video.headers["content-type"] == "video/mp4"


async def test_plan_decides_duration_and_outcome_per_request(fake_clock: FakeClock) -> None:
    def plan(body: dict[str, Any]) -> tuple[float, Outcome]:
        if "fail" in body["prompt"]:
            return 5.0, Outcome.fail("planned failure")
        return 50.0, Outcome.ok("https://cdn.example/planned.mp4")

    async with FakeKlingVendor(api_key=KEY, clock=fake_clock, plan=plan, shape="simple") as vendor, \
            httpx.AsyncClient() as http:
        ids = []
        for prompt in ("please fail", "please work"):
            reply = await http.post(f"{vendor.base_url}/v1/video/generations",
                                    json={"model": "kling-v3-std-silent", "prompt": prompt}, headers=AUTH)
            ids.append(reply.json()["task_id"])
        fake_clock.advance(50)
        failed, worked = [(await http.get(f"{vendor.base_url}/v1/videos/{i}", headers=AUTH)).json() for i in ids]
    assert failed["status"] == "failed" and failed["error"]["message"] == "planned failure"
    assert worked["status"] == "succeeded" and worked["url"] == "https://cdn.example/planned.mp4"
    assert [vendor.tasks[i].duration for i in ids] == [5.0, 50.0]


async def test_faults_are_consumed_in_order(fake_clock: FakeClock) -> None:
    async with FakeUnifiedVendor(api_key=KEY, clock=fake_clock) as vendor, httpx.AsyncClient() as http:
        vendor.inject("create", Fault.http(500, {"error": {"message": "x"}}),
                      Fault.http(429, "slow", {"Retry-After": "3"}), Fault.non_json())
        first, second, third, fourth = [await create_unified(http, vendor.base_url) for _ in range(4)]
        assert first.status_code == 500 and first.json() == {"error": {"message": "x"}}
        assert second.status_code == 429 and second.headers["Retry-After"] == "3" and second.text == "slow"
        assert third.status_code == 200 and third.headers["content-type"].startswith("text/html")
        assert fourth.status_code == 200 and fourth.json()["id"] in vendor.tasks
        assert vendor.create_calls == 4 and len(vendor.tasks) == 1


async def test_reset_and_lost_response(fake_clock: FakeClock) -> None:
    async with FakeUnifiedVendor(api_key=KEY, clock=fake_clock) as vendor, httpx.AsyncClient() as http:
        vendor.inject("create", Fault.reset(), Fault.lost_response())
        with pytest.raises(httpx.TransportError):
            await create_unified(http, vendor.base_url)
        assert vendor.tasks == {}  # reset: nothing done
        with pytest.raises(httpx.TransportError):
            await create_unified(http, vendor.base_url)
        assert len(vendor.tasks) == 1  # lost response: created, never answered


async def test_unavailable_switch(fake_clock: FakeClock) -> None:
    async with FakeKieVendor(api_key=KEY, clock=fake_clock) as vendor, httpx.AsyncClient() as http:
        vendor.unavailable, vendor.unavailable_retry_after = True, 9
        reply = await http.post(f"{vendor.base_url}/api/v1/veo/generate", json={"prompt": "p"}, headers=AUTH)
        assert reply.status_code == 503 and reply.headers["Retry-After"] == "9"
        vendor.unavailable = False
        reply = await http.post(f"{vendor.base_url}/api/v1/veo/generate", json={"prompt": "p"}, headers=AUTH)
        assert reply.json()["code"] == 200


async def test_listener_closes_and_reopens_on_the_same_port(fake_clock: FakeClock) -> None:
    vendor = FakeUnifiedVendor(api_key=KEY, clock=fake_clock)
    base = await vendor.start()
    async with httpx.AsyncClient() as http:
        task_id = (await create_unified(http, base)).json()["id"]
        await vendor.close_listener()
        with pytest.raises(httpx.ConnectError):
            await create_unified(http, base)
        await vendor.reopen_listener()
        assert vendor.base_url == base
        reply = await http.get(f"{base}/v1/video/query", params={"id": task_id}, headers=AUTH)
        assert reply.status_code == 200  # the task store survived
    await vendor.stop()


async def test_start_on_a_given_port(fake_clock: FakeClock) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with FakeKlingVendor(api_key=KEY, clock=fake_clock, port=port) as vendor:
        assert vendor.base_url == f"http://127.0.0.1:{port}"


async def test_kie_1080p_and_record_shapes(fake_clock: FakeClock) -> None:
    async with FakeKieVendor(api_key=KEY, clock=fake_clock, duration=10, hd_delay=30,
                             result_urls_as_string=True) as vendor, httpx.AsyncClient() as http:
        base = vendor.base_url
        task_id = (await http.post(f"{base}/api/v1/veo/generate", json={"prompt": "p"}, headers=AUTH)).json()["data"]["taskId"]
        hd = f"{base}/api/v1/veo/get-1080p-video"
        record = f"{base}/api/v1/veo/record-info"
        running = (await http.get(record, params={"taskId": task_id}, headers=AUTH)).json()["data"]
        assert running["successFlag"] == 0 and running["completeTime"] is None
        fake_clock.advance(10)
        done = (await http.get(record, params={"taskId": task_id}, headers=AUTH)).json()["data"]
        assert done["successFlag"] == 1 and isinstance(done["response"]["resultUrls"], str)
        assert done["completeTime"] == int(vendor.tasks[task_id].finishes_at * 1000)
        assert (await http.get(hd, params={"taskId": task_id, "index": 0}, headers=AUTH)).json()["code"] == 400
        fake_clock.advance(30)
        ready = (await http.get(hd, params={"taskId": task_id, "index": 0}, headers=AUTH)).json()
        assert ready["code"] == 200 and ready["data"]["resultUrl"].endswith("-1080p.mp4")
        assert vendor.tasks[task_id].hd_calls == 2


async def test_kie_failure_callback_payload(fake_clock: FakeClock) -> None:
    async with FakeKieVendor(api_key=KEY, clock=fake_clock, duration=1,
                             outcome=Outcome.fail("rejected", code=422)) as vendor, httpx.AsyncClient() as http:
        body = {"prompt": "p", "callBackUrl": "http://127.0.0.1:9/unreachable"}
        await http.post(f"{vendor.base_url}/api/v1/veo/generate", json=body, headers=AUTH)
        fake_clock.advance(1)
        assert await vendor.fire_due_callbacks() == 1
    [record] = vendor.callbacks
    assert record.payload["code"] == 422 and record.payload["msg"] == "rejected"
    assert record.status is None and record.error  # the receiver was unreachable, and that is recorded
    assert "X-Webhook-Signature" not in record.headers  # unsigned without a key
