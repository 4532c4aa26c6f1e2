"""A loopback stand-in for Discord's REST API v10 and gateway, good enough for the real discord.py client.

Why a fake server instead of mocks: the bot's correctness depends on what discord.py really sends (nonces,
allowed_mentions, multipart uploads, deferrals, retries on 429/5xx) and on how it reacts to Discord's real
answers (403, 404, rate limits). This server speaks the wire format, records every request, and exposes a few
fault knobs. It runs in the test's event loop; the bot may run in-process or as a subprocess.

A package: `state.py` (records, ids, payload builders), `rest.py`, `gateway.py`; `FakeDiscord` here
assembles them. Tests import from here, mostly one thing: `FakeDiscord`.
"""

from __future__ import annotations

from aiohttp import web

from fakes.discord_api.gateway import GatewayMixin
from fakes.discord_api.rest import RestMixin
from fakes.discord_api.state import (
    ADMIN_PERMISSIONS, BOT_PERMISSIONS, DEFAULT_MEMBER_PERMISSIONS, DISCORD_EPOCH_MS, MANAGE_GUILD,
    PRIVILEGED_INTENTS, FaultRule, RecordedMessage, RecordedRequest,
)
from fakes.loopback import serve

__all__ = [
    "ADMIN_PERMISSIONS", "BOT_PERMISSIONS", "DEFAULT_MEMBER_PERMISSIONS", "DISCORD_EPOCH_MS", "MANAGE_GUILD",
    "PRIVILEGED_INTENTS", "FakeDiscord", "FaultRule", "RecordedMessage", "RecordedRequest",
]


class FakeDiscord(RestMixin, GatewayMixin):
    """Discord REST + gateway on 127.0.0.1. Ids are stable class attributes."""

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        """Listen on a free 127.0.0.1 port; returns the base URL (no /api/v10)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/resume", self._gateway)
        app.router.add_get("/attachments/{id}/{filename}", self._cdn)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        port = await serve(self._runner)
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        for session in list(self._sockets):
            await session.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/gateway"
