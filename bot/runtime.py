"""What every process role shares: the role names, how services are built, how a process stops.

`python -m bot` runs every part in one process (`Role.ALL`); `gateway` holds the Discord gateway
connection and answers slash commands and buttons; `worker` submits, polls and delivers through
Discord's REST API only. All three build the very same `Services` (bot.services).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum

import aiohttp
import discord

from bot.clock import Clock
from bot.http_server import OperatorsServer
from bot.publishing.discord_publisher import DiscordPublisher
from bot.services import Services
from bot.settings import Settings

log = logging.getLogger(__name__)

REST_PROBE_EVERY_SECONDS = 30.0  # one GET /users/@me per half minute at most, however often /healthz is asked
REST_PROBE_TIMEOUT_SECONDS = 5.0

ServicesFactory = Callable[[Settings, DiscordPublisher, Clock], Awaitable[Services]]


class Role(StrEnum):
    ALL = "all"
    GATEWAY = "gateway"
    WORKER = "worker"

    @property
    def runs_poller(self) -> bool:
        """Submits, polls, delivers and edits job cards."""
        return self is not Role.GATEWAY

    @property
    def has_gateway(self) -> bool:
        return self is not Role.WORKER


class RestProbe:
    """Is Discord's REST API reachable with our token right now? A cached `GET /users/@me`.

    A worker reaches Discord only through REST, so this is its "connected": a revoked token (401) or
    an unreachable API makes it unhealthy, as a dropped gateway does for a gateway process.
    """

    def __init__(self, client: discord.Client, *, every: float = REST_PROBE_EVERY_SECONDS) -> None:
        self._client = client
        self._every = every
        self._checked_at = float("-inf")
        self._ok = False
        self._lock = asyncio.Lock()

    async def check(self) -> bool:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self._every:
                self._ok = await self._probe()
                self._checked_at = time.monotonic()
            return self._ok

    async def _probe(self) -> bool:
        if self._client.user is None or self._client.is_closed():
            return False
        try:
            await asyncio.wait_for(self._client.http.request(discord.http.Route("GET", "/users/@me")),
                                   REST_PROBE_TIMEOUT_SECONDS)
        except (TimeoutError, discord.HTTPException, aiohttp.ClientError, OSError) as exc:
            log.warning("Discord REST probe failed: %s", type(exc).__name__)
            return False
        return True


async def stop_parts(http_server: OperatorsServer | None, services: Services | None,
                     publisher: DiscordPublisher | None) -> None:
    """Stop the HTTP server, then the services (the poller first: it may still post via Discord), then
    the publisher's download client; one part failing to stop does not keep the others running."""
    steps: list[tuple[str, Callable[[], Awaitable[None]] | None]] = [
        ("http server", http_server.stop if http_server is not None else None),
        ("services", services.aclose if services is not None else None),
        ("publisher", publisher.aclose if publisher is not None else None),
    ]
    for what, stop in steps:
        if stop is None:
            continue
        try:
            await stop()
        except Exception:
            log.exception("error while stopping the %s", what)
