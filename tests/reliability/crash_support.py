"""Helpers for the crash tests: a Discord fake that can hold a result post, and DB reads from outside.

`GatedDiscord` lets a test stop the bot at an exact point of delivery: hold the result post before the
message exists, or create the message and withhold the answer (the bot never learns its id). Kill the
bot while the request hangs, then `open_gate()` so the hung handler ends.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Literal

from aiohttp import web

from bot.delivery.base import job_nonce
from storage.database import Database
from tests.e2e.harness import BotHarness
from tests.fakes.discord_api import FakeDiscord, RecordedMessage
from tests.fakes.vendors import FakeKieVendor, FakeUnifiedVendor, Handler
from tests.reliability.support import delivery_violations, ledger_violations, vendor_violations

HoldPoint = Literal["before_create", "after_create"]


class GatedDiscord(FakeDiscord):
    """FakeDiscord with the delivery faults the base fake lacks.

    - `hold`: hang job-result posts (nonce `fc-job-*`; or, with `hold_kind = "summary"`, the command's
      summary post) before or after the message is made;
    - `archived_threads`: posting there answers 400 / 50083 (archived and locked);
    - `refuse_dms`: DMs answer 403 / 50007 (the member closed them);
    - `lose_answers`: the next N result posts make the message, then answer 503 (the bot never sees it);
    - `forget_nonces()`: Discord's nonce memory lapsed (minutes passed).
    """

    def __init__(self) -> None:
        super().__init__()
        self.hold: HoldPoint | None = None
        self.hold_kind: Literal["result", "summary"] = "result"  # a job's result, or the /veo summary
        self.holding = asyncio.Event()
        self._gate = asyncio.Event()
        self.archived_threads: set[int] = set()
        self.refuse_dms = False
        self.lose_answers = 0

    def open_gate(self) -> None:
        self.hold = None
        self._gate.set()

    def forget_nonces(self) -> None:
        self._nonces.clear()

    async def post_message(self, request: web.Request, body: Any, files: list[dict[str, Any]],
                           channel_id: str) -> web.Response:
        cid = int(channel_id)
        if cid in self.archived_threads:
            return _discord_error(400, 50083, "Thread is archived")
        if self.refuse_dms and self.channels.get(cid, {}).get("type") == 1:
            return _discord_error(403, 50007, "Cannot send messages to this user")
        nonce = str((body or {}).get("nonce") or "")
        is_result = nonce.startswith("fc-job-")
        point = self.hold if is_result == (self.hold_kind == "result") else None
        if point == "before_create":
            self.holding.set()
            await self._gate.wait()
        response = await super().post_message(request, body, files, channel_id)
        if point == "after_create":
            self.holding.set()
            await self._gate.wait()
        if is_result and self.lose_answers > 0 and response.status == 200:
            self.lose_answers -= 1
            return _discord_error(503, 0, "upstream connect error")
        return response


def _discord_error(status: int, code: int, message: str) -> web.Response:
    # Content-Type exactly `application/json`: discord.py only parses the error code out of that.
    return web.Response(body=json.dumps({"message": message, "code": code}).encode(), status=status,
                        headers={"Content-Type": "application/json"})


class HoldCreatesMixin:
    """For a vendor fake: `hold_creates = True` makes the next creates make their task, then hang unanswered.

    That is a submit whose request reached the vendor and did its work while the bot waits for the
    answer - the moment a crash makes a submit "uncertain". `open_gate()` lets hung handlers end.
    """

    hold_creates = False

    def _gate_state(self) -> tuple[asyncio.Event, asyncio.Event]:
        if not hasattr(self, "_create_gate"):
            self._create_gate, self.create_held = asyncio.Event(), asyncio.Event()
        return self._create_gate, self.create_held

    def open_gate(self) -> None:
        self.hold_creates = False
        self._gate_state()[0].set()

    def create_is_held(self) -> bool:
        return self._gate_state()[1].is_set()

    def routes(self) -> list[tuple[str, str, Handler, str]]:
        wrapped = []
        for method, path, handler, name in super().routes():  # type: ignore[misc]
            wrapped.append((method, path, self._held(handler) if name == "create" else handler, name))
        return wrapped

    def _held(self, handler: Handler) -> Handler:
        async def create_then_hang(request: web.Request) -> web.StreamResponse:
            response = await handler(request)
            if self.hold_creates:
                gate, held = self._gate_state()
                held.set()
                await gate.wait()
            return response
        return create_then_hang


class HoldingKie(HoldCreatesMixin, FakeKieVendor):
    pass


class HoldingUnified(HoldCreatesMixin, FakeUnifiedVendor):
    pass


def result_messages(discord: FakeDiscord, job_id: int) -> list[RecordedMessage]:
    """Every result message of a job in the fake (thread, channel or DM)."""
    return [m for m in discord.messages.values() if m.nonce == job_nonce(job_id) and m.via == "channel"]


def read_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """A read from another connection, like an operator's sqlite3 shell (the bot may be running)."""
    connection = sqlite3.connect(path, timeout=10)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute(sql, params).fetchall()]
    finally:
        connection.close()


async def rows(harness: BotHarness, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    if not harness.database_path.exists():
        return []
    return await asyncio.to_thread(read_rows, harness.database_path, sql, params)


async def wait_for_row(harness: BotHarness, sql: str, what: str, params: tuple[Any, ...] = (),
                       timeout: float = 20.0) -> dict[str, Any]:
    """Poll the database (not the logs) until `sql` returns a row; fails with the bot's log."""
    found: list[dict[str, Any]] = []

    async def probe() -> None:
        while not found:
            try:
                found.extend(await rows(harness, sql, params))
            except sqlite3.OperationalError:  # the bot has not created the schema yet
                pass
            if not found:
                await asyncio.sleep(0.05)

    prober = asyncio.create_task(probe())
    try:
        await harness.wait_for(lambda: found or prober.done(), what, timeout=timeout)
    finally:
        prober.cancel()
    if not found:
        prober.result()  # re-raise what stopped the prober
    return found[0]


async def restart(harness: BotHarness) -> None:
    """Start the bot again without waiting for the gateway: the poller and the callback server come up
    before it (setup_hook), and they are all a crashed job needs."""
    await harness.start_bot(wait_ready=False)

    async def listening() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", harness.http_port)
        except OSError:
            return False
        writer.close()
        return True

    deadline = time.monotonic() + 30
    while not await listening():
        if harness.process is not None and harness.process.returncode is not None:
            raise AssertionError(f"bot exited during restart:\n{harness.log_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"bot's HTTP server not up after restart:\n{harness.log_text()}")
        await asyncio.sleep(0.05)


_LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL)\s+(bot\.jobs\S*|bot\.delivery\S*): (.*)$")


def log_problems(harness: BotHarness, secrets: list[str]) -> list[str]:
    """Every bot process's stderr (SIGKILLed ones too): no secret, and job failures name their job."""
    problems: list[str] = []
    for path in sorted(harness.tmp_path.glob("bot-*.log")):
        text = path.read_text(errors="replace")
        problems += [f"{path.name}: a secret ({secret[:4]}...) is in the log" for secret in secrets if secret in text]
        for line in text.splitlines():
            match = _LOG_LINE.match(line)
            if match and not re.search(r"\bjob #?\d+", match.group(3), re.IGNORECASE):
                problems.append(f"{path.name}: failure without a job id: {line}")
    return problems


async def invariant_violations(harness: BotHarness) -> list[str]:
    """The credit, delivery and vendor promises, checked on the database and on the fakes."""
    database = await Database.open(harness.database_path)
    try:
        problems = [*await ledger_violations(database), *await delivery_violations(database),
                    *await vendor_violations(database, (harness.kie, harness.unified, harness.kling))]
        for job in await database.fetchall("SELECT id, result_message_id FROM jobs"):
            posted = result_messages(harness.discord, int(job["id"]))
            if len(posted) != 1:
                problems.append(f"job {job['id']}: {len(posted)} result messages in Discord")
            elif posted[0].id != job["result_message_id"]:
                problems.append(f"job {job['id']}: row names {job['result_message_id']}, Discord has {posted[0].id}")
        return problems
    finally:
        await database.close()
