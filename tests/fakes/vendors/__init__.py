"""Loopback fakes of the three vendor APIs, speaking each one's wire format over real HTTP.

Used by the provider tests, the job tests, the end-to-end and crash tests and the benchmark.
(One package: `base.py` holds the task store, fault injection and lifecycle the three share;
`unified.py`, `kie.py`, `kling.py` one vendor each. Import from here.)

Quick start::

    async with FakeKieVendor(api_key="k", clock=fake_clock, duration=120) as kie:
        settings = Settings(discord_token="t", kie_api_key="k", kie_base_url=kie.base_url,
                            kie_upload_base_url=kie.base_url)
        ...
        kie.inject("create", Fault.http(429, headers={"Retry-After": "7"}))  # next create only
        kie.unavailable = True          # every request answers 503
        await kie.close_listener()      # connections refused ... until
        await kie.reopen_listener()     # listening again on the same port

Tasks: each create makes a `FakeTask` that finishes `duration` seconds after creation, measured on the
injected clock (anything with `.now()`; default `time.time`), with a planned `Outcome`. Defaults come
from `duration=` / `outcome=`, or per request from `plan(request_body) -> (duration, Outcome)`.
Successful tasks get a video URL served by the fake itself (`GET /videos/<name>.mp4`, a few bytes of
MP4 header) unless the outcome names one.

Records for assertions: `tasks` (id -> FakeTask with `body`, `status_calls`, `finishes_at`), `requests`
(endpoint -> count of requests received, faulted ones included), `create_calls`.

Faults, per endpoint name (`create`, `query`, and for kie `1080p`, `4k`, `extend`, `upload`), consumed in order, one per
request: `Fault.http(status, body, headers)`, `Fault.delay(seconds)` (then answers normally),
`Fault.reset()` (connection reset, nothing done), `Fault.non_json()`, `Fault.lost_response()`
(the request is fully handled - the task is created - then the connection is reset unanswered).
Delays are real seconds (they exist to trip client timeouts), whatever clock the fake uses.
Faults come before the key check; `unavailable` comes before faults.

Per vendor: `FakeUnifiedVendor` (status-string knobs, stale error text on success, full-id-only
queries), `FakeKieVendor` (body codes in the envelope, resultUrls as JSON string, 1080p and 4K readiness, extend,
file upload + download, signed callbacks: `callback_key`, `callbacks`, `fire_due_callbacks()`),
`FakeKlingVendor` (`shape`: openai | envelope | envelope_legacy | simple | native; `serve_paths`).
Helpers: `finish_now(task_id, outcome)`, `video_url(task)`, `status_calls(task_id)`.
"""

from tests.fakes.vendors.base import (
    FAKE_MP4, Fault, FaultKind, FakeTask, FakeVendor, Handler, NowClock, Outcome, Plan,
)
from tests.fakes.vendors.kie import CallbackRecord, FakeKieVendor, UploadRecord
from tests.fakes.vendors.kling import FakeKlingVendor, KlingShape
from tests.fakes.vendors.unified import FakeUnifiedVendor

__all__ = [
    "FAKE_MP4", "CallbackRecord", "Fault", "FaultKind", "FakeKieVendor", "FakeKlingVendor", "FakeTask",
    "FakeUnifiedVendor", "FakeVendor", "Handler", "KlingShape", "NowClock", "Outcome", "Plan", "UploadRecord",
]
