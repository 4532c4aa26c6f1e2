"""Error classification shared by all three clients, each against its own fake over loopback HTTP.

The point is "never submit twice": only failures that provably created nothing are RETRYABLE;
anything that may have reached the vendor is UNCERTAIN; refusals are FINAL with a plain sentence.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

import pytest
from pydantic import SecretStr

from bot.catalog import Family, ProviderName
from bot.clock import FakeClock
from bot.providers.base import ErrorKind, ProviderClient, ProviderError
from bot.providers.kie import KieClient
from bot.providers.kling import KlingClient
from bot.providers.unified import UnifiedClient
from bot.settings import Settings
from bot.validation import JobSpec
from fakes.vendors import Fault, FakeKieVendor, FakeKlingVendor, FakeUnifiedVendor, FakeVendor
from tests.providers.conftest import API_KEY, requests_count, spec


@dataclass
class Pair:
    client: ProviderClient
    vendor: FakeVendor
    job: JobSpec
    label: str


FAKES = {
    ProviderName.KKIAI: (FakeUnifiedVendor, UnifiedClient, Family.VEO, "kkiai"),
    ProviderName.KIE: (FakeKieVendor, KieClient, Family.VEO, "kie.ai"),
    ProviderName.KLING: (FakeKlingVendor, KlingClient, Family.KLING, "Kling gateway"),
}


@pytest.fixture(params=list(FAKES), ids=lambda p: p.value)
async def pair(request: pytest.FixtureRequest, settings: Settings, fake_clock: FakeClock) -> AsyncIterator[Pair]:
    vendor_cls, client_cls, family, label = FAKES[request.param]
    vendor = vendor_cls(api_key=API_KEY, clock=fake_clock, duration=30)
    await vendor.start()
    client = client_cls(vendor.base_url, SecretStr(API_KEY), settings, fake_clock)
    try:
        yield Pair(client, vendor, spec(family, request.param), label)
    finally:
        await client.aclose()
        await vendor.stop()


async def submit_error(pair: Pair) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await pair.client.submit(pair.job)
    return caught.value


async def poll_error(pair: Pair, task_id: str) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await pair.client.poll(task_id, pair.job)
    return caught.value


def _error_body(provider: ProviderName, code: int, message: str) -> dict[str, Any]:
    if provider is ProviderName.KIE:
        return {"code": code, "msg": message, "data": None}
    return {"error": {"message": message, "type": "error", "code": str(code)}}


async def test_429_with_retry_after_seconds_is_retryable(pair: Pair) -> None:
    pair.vendor.inject("create", Fault.http(429, _error_body(pair.client.name, 429, "slow down"),
                                            {"Retry-After": "7"}))
    error = await submit_error(pair)
    assert error.kind is ErrorKind.RETRYABLE
    assert error.retry_after == 7.0
    assert error.status_code == 429
    assert pair.vendor.tasks == {}


async def test_429_with_retry_after_http_date(pair: Pair, fake_clock: FakeClock) -> None:
    when = formatdate(fake_clock.now() + 90, usegmt=True)
    pair.vendor.inject("create", Fault.http(429, None, {"Retry-After": when}))
    error = await submit_error(pair)
    assert error.kind is ErrorKind.RETRYABLE
    assert error.retry_after == pytest.approx(90, abs=1)


async def test_503_vendor_down_is_retryable(pair: Pair) -> None:
    pair.vendor.unavailable = True
    pair.vendor.unavailable_retry_after = 12
    error = await submit_error(pair)
    assert error.kind is ErrorKind.RETRYABLE and error.retry_after == 12


async def test_500_on_submit_is_uncertain(pair: Pair) -> None:
    pair.vendor.inject("create", Fault.http(500, {"error": {"message": "internal"}}))
    error = await submit_error(pair)
    assert error.kind is ErrorKind.UNCERTAIN
    assert error.status_code == 500


async def test_lost_response_is_uncertain_and_the_task_exists(pair: Pair) -> None:
    before = requests_count(pair.client.name, "submit", "uncertain")
    pair.vendor.inject("create", Fault.lost_response())
    error = await submit_error(pair)
    assert error.kind is ErrorKind.UNCERTAIN
    assert len(pair.vendor.tasks) == 1  # the vendor did create it: resending would make a second
    assert pair.vendor.create_calls == 1
    assert requests_count(pair.client.name, "submit", "uncertain") == before + 1


async def test_reset_after_sending_is_uncertain(pair: Pair) -> None:
    pair.vendor.inject("create", Fault.reset())
    assert (await submit_error(pair)).kind is ErrorKind.UNCERTAIN


async def test_read_timeout_on_submit_is_uncertain(pair: Pair) -> None:
    pair.vendor.inject("create", Fault.delay(3.0))  # settings: submit timeout 0.5 s
    error = await submit_error(pair)
    assert error.kind is ErrorKind.UNCERTAIN
    assert "ReadTimeout" in error.detail


async def test_connection_refused_is_retryable(pair: Pair) -> None:
    await pair.vendor.close_listener()
    error = await submit_error(pair)
    assert error.kind is ErrorKind.RETRYABLE
    assert pair.vendor.create_calls == 0
    await pair.vendor.reopen_listener()
    task_id = await pair.client.submit(pair.job)  # same port, same client: works again
    assert task_id in pair.vendor.tasks


async def test_non_json_2xx_on_submit_is_uncertain(pair: Pair) -> None:
    pair.vendor.inject("create", Fault.non_json(200))
    assert (await submit_error(pair)).kind is ErrorKind.UNCERTAIN


async def test_2xx_without_task_id_is_uncertain(pair: Pair) -> None:
    body = {"code": 200, "msg": "success", "data": {}} if pair.client.name is ProviderName.KIE else {"status": "queued"}
    pair.vendor.inject("create", Fault.http(200, body))
    assert (await submit_error(pair)).kind is ErrorKind.UNCERTAIN


async def test_wrong_key_is_final_with_plain_sentence(pair: Pair, settings: Settings, fake_clock: FakeClock) -> None:
    client = type(pair.client)(pair.vendor.base_url, SecretStr("sk-wrong"), settings, fake_clock)
    try:
        with pytest.raises(ProviderError) as caught:
            await client.submit(pair.job)
    finally:
        await client.aclose()
    error = caught.value
    assert error.kind is ErrorKind.FINAL and error.status_code == 401
    assert error.user_message == f"The bot's {pair.label} API key was refused; tell the server owner."


async def test_402_no_credit_is_final(pair: Pair) -> None:
    pair.vendor.inject("create", Fault.http(402, _error_body(pair.client.name, 402, "insufficient balance")))
    error = await submit_error(pair)
    assert error.kind is ErrorKind.FINAL
    assert error.user_message == f"The bot's {pair.label} account is out of credit; tell the server owner."


async def test_422_content_policy_is_final_with_reason(pair: Pair) -> None:
    reason = "Your prompt was flagged as violating content policies " + "x" * 600
    pair.vendor.inject("create", Fault.http(422, _error_body(pair.client.name, 422, reason)))
    error = await submit_error(pair)
    assert error.kind is ErrorKind.FINAL
    assert error.user_message.startswith("The vendor rejected the prompt or images under its content policy: ")
    assert "flagged as violating" in error.user_message
    assert len(error.user_message) < 400  # vendor text trimmed
    assert "{" not in error.user_message  # no raw JSON


async def test_400_validation_is_final_with_reason(pair: Pair) -> None:
    pair.vendor.inject("create", Fault.http(400, _error_body(pair.client.name, 400, "duration must be 5 or 10")))
    error = await submit_error(pair)
    assert error.kind is ErrorKind.FINAL
    assert error.user_message == "The vendor refused the request: duration must be 5 or 10"


async def test_every_poll_failure_is_retryable(pair: Pair) -> None:
    task_id = await pair.client.submit(pair.job)
    pair.vendor.inject(
        "query",
        Fault.http(500, {"error": {"message": "boom"}}),
        Fault.http(429, None, {"Retry-After": "5"}),
        Fault.non_json(200),
        Fault.reset(),
        Fault.http(401, {"error": {"message": "bad key"}}),
    )
    errors = [await poll_error(pair, task_id) for _ in range(5)]
    assert all(e.kind is ErrorKind.RETRYABLE for e in errors), errors
    assert [e.status_code for e in errors] == [500, 429, 200, None, 401]
    assert errors[1].retry_after == 5
    assert (await pair.client.poll(task_id, pair.job)).state.value == "running"


async def test_poll_connection_refused_is_retryable(pair: Pair) -> None:
    task_id = await pair.client.submit(pair.job)
    await pair.vendor.close_listener()
    assert (await poll_error(pair, task_id)).kind is ErrorKind.RETRYABLE


async def test_metrics_and_no_key_in_logs(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    ok_before = requests_count(pair.client.name, "submit", "ok")
    final_before = requests_count(pair.client.name, "submit", "final")
    task_id = await pair.client.submit(pair.job)
    pair.vendor.inject("create", Fault.http(401, _error_body(pair.client.name, 401, "nope")))
    await submit_error(pair)
    await pair.client.poll(task_id, pair.job)
    assert requests_count(pair.client.name, "submit", "ok") == ok_before + 1
    assert requests_count(pair.client.name, "submit", "final") == final_before + 1
    assert requests_count(pair.client.name, "poll", "ok") >= 1
    assert API_KEY not in caplog.text
