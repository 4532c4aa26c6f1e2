"""A whole job lifecycle under faults, with real-looking secrets configured: no secret in any log line or
member message, and every failure the job machinery logs names its job.

Vendors here misbehave on purpose in ways that carry the key back (an error body echoing the Authorization
header, a publisher exception quoting the token), because that is how secrets reach logs in practice.
The subprocess side (the bot's own stderr across SIGKILLs) is checked by every crash test in test_crash.py.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from bot.catalog import Family
from bot.clock import FakeClock
from bot.jobs.models import JobRecord
from bot.logging_setup import SecretRedactingFilter, configure_logging
from bot.settings import Settings
from storage.database import Database
from fakes.vendors import Fault
from tests.reliability.support import RecordingPublisher, RigFactory

DISCORD_TOKEN = "MTQwMDAwMDAwMDAwMDAwMDAwMQ.GxYzAb.Qw3rTy-uIoP_aSdFgHjKlZxCvBnM1234567"
KIE_HMAC = "whsec_5f4e3d2c1b0a99887766554433221100"
JOB_ID_IN_TEXT = re.compile(r"\bjob #?\d+\b", re.IGNORECASE)


class RecordList(logging.Handler):
    """Keeps every record (after the redacting filter, which rewrites records in place)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def capture() -> Iterator[tuple[io.StringIO, RecordList, list[Settings]]]:
    """Installs the bot's logging (once the test has settings) and restores the root logger after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream, records = io.StringIO(), RecordList()
    configured: list[Settings] = []
    root.addHandler(records)
    try:
        yield stream, records, configured
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        for handler in saved_handlers:
            for old in [f for f in handler.filters if isinstance(f, SecretRedactingFilter)]:
                handler.removeFilter(old)
        root.setLevel(saved_level)


class LeakyPublisher(RecordingPublisher):
    """A publisher whose first failure quotes the bot token, as a careless library error might."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token
        self.leaked = False

    async def deliver(self, job: JobRecord, message: object) -> int:  # type: ignore[override]
        if not self.leaked:
            self.leaked = True
            raise RuntimeError(f"POST /channels/1/messages with headers {{'Authorization': 'Bot {self.token}'}}")
        return await super().deliver(job, message)  # type: ignore[arg-type]


async def test_a_faulty_lifecycle_logs_no_secret_and_names_the_job_on_every_failure(
        db: Database, fake_clock: FakeClock, capture: tuple[io.StringIO, RecordList, list[Settings]]) -> None:
    stream, records, _ = capture
    async with RigFactory(db, fake_clock) as factory:
        publisher = LeakyPublisher(DISCORD_TOKEN)
        rig = factory.build(publisher=publisher, discord_token=DISCORD_TOKEN, kie_webhook_hmac_key=KIE_HMAC,
                            log_level="DEBUG")
        configure_logging(rig.settings, stream=stream)
        secrets = rig.settings.secret_values()
        assert len(secrets) == 5

        def echo(key: str) -> dict[str, object]:
            return {"error": {"message": f"upstream rejected Authorization: Bearer {key} (key={key})"}}

        rig.kie.inject("create", Fault.http(500, echo(rig.kie.api_key)))       # uncertain, never resent
        rig.unified.inject("query", Fault.http(502, echo(rig.unified.api_key)), Fault.reset(), Fault.non_json())
        rig.kling.inject("create", Fault.http(400, echo(rig.kling.api_key)))   # refused: the member is told why
        publisher.faults = ["503"]
        jobs = [await rig.create(Family.VEO, model="veo-fast-kie"), await rig.create(Family.SORA),
                await rig.create(Family.KLING)]
        await rig.run_until(rig.all_delivered, step=20, limit=3 * 3600)
        assert await rig.violations() == []

    output = stream.getvalue()
    assert "submit failed" in output and "poll failed" in output and "delivery failed" in output
    for secret in secrets:
        assert secret not in output, "a secret reached the log"
        for record in records.records:
            assert secret not in record.getMessage() and secret not in (record.exc_text or "")
        for _, message in publisher.messages.values():
            assert secret not in message.content, f"a secret reached a member: {message.content}"

    # Every warning or error from the job machinery says which job it is about.
    job_ids = {job.id for job in jobs}
    failures = [r for r in records.records if r.levelno >= logging.WARNING and r.name.startswith("bot.jobs")]
    assert failures, "the faults above must have logged failures"
    for record in failures:
        text = record.getMessage()
        named = {int(n) for n in re.findall(r"\bjob #?(\d+)", text, re.IGNORECASE)}
        assert named & job_ids, f"failure logged without its job id: {text!r}"
