"""Fakes that can fail or stop at an exact point, built on the shared loopback fakes (tests/fakes/).

`GatedDiscord` holds a result post before the message exists, or makes it and withholds the answer (the
bot never learns its id), and adds the delivery faults the base fake lacks. `HoldingKie`/`HoldingUnified`
make a vendor task and never answer the submit. Kill the bot while a request hangs, then `open_gate()`
so the hung handler ends.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Literal

from aiohttp import web

from bot.publishing.base import job_nonce
from tests.fakes.discord_api import FakeDiscord, RecordedMessage
from tests.fakes.vendors import FakeKieVendor, FakeUnifiedVendor, Handler

HoldPoint = Literal["before_create", "after_create"]


class GatedDiscord(FakeDiscord):
    """FakeDiscord with the delivery faults the base fake lacks.

    - `hold`: hang job-result posts (nonce `fc-job-*`; or, with `hold_kind = "summary"`, the command's
      summary post; with `hold_kind = "thread"`, the thread made on it) before or after it is made;
    - `archived_threads`: posting there answers 400 / 50083 (archived and locked);
    - `refuse_dms`: DMs answer 403 / 50007 (the member closed them);
    - `lose_answers`: the next N result posts make the message, then answer 503 (the bot never sees it);
    - `forget_nonces()`: Discord's nonce memory lapsed (minutes passed);
    - `drop_held`: a request held before it is made never reached Discord: when the gate opens it
      answers 503 and makes nothing (the bot that sent it is dead by then).
    """

    def __init__(self) -> None:
        super().__init__()
        self.hold: HoldPoint | None = None
        self.hold_kind: Literal["result", "summary", "thread"] = "result"  # a result, the summary, its thread
        self.holding = asyncio.Event()
        self._gate = asyncio.Event()
        self.archived_threads: set[int] = set()
        self.refuse_dms = False
        self.lose_answers = 0
        self.drop_held = False

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
        point = self.hold if self.hold_kind == ("result" if is_result else "summary") else None
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


    async def post_thread_on_message(self, request: web.Request, body: Any, files: Any, channel_id: str,
                                     message_id: str) -> web.Response:
        point = self.hold if self.hold_kind == "thread" else None
        if point == "before_create":
            self.holding.set()
            await self._gate.wait()
            if self.drop_held:
                return _discord_error(503, 0, "upstream connect error")
        response = await super().post_thread_on_message(request, body, files, channel_id, message_id)
        if point == "after_create":
            self.holding.set()
            await self._gate.wait()
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
