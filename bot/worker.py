"""`python -m bot worker`: the process that moves jobs forward, with no gateway connection.

It submits, polls, delivers results and audit lines, edits job cards and serves the operators' HTTP
server (kie.ai callbacks, `/healthz`, `/metrics`). Discord is reached through its REST API with the
bot token only: `login()` (which checks the token and runs `setup_hook`) and never `connect()`, so a
worker holds no gateway session and no guild cache, and any number of them can run side by side
against one database: the job claim (a lease) is what keeps them apart.
"""

from __future__ import annotations

import logging

import discord

from bot.clock import Clock, SystemClock
from bot.http_server import HealthChecks, OperatorsServer, start_http_server
from bot.publishing.discord_publisher import DiscordPublisher
from bot.runtime import RestProbe, Role, ServicesFactory, stop_parts
from bot.services import Services, build_services
from bot.settings import Settings

log = logging.getLogger(__name__)


class FramecastWorker(discord.Client):
    """A Discord client that only ever logs in: REST with the bot token, no gateway."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None,
                 services_factory: ServicesFactory | None = None) -> None:
        # The intents are never sent (no IDENTIFY); `guilds` only keeps discord.py from warning about them.
        super().__init__(intents=discord.Intents(guilds=True), allowed_mentions=discord.AllowedMentions.none())
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._services_factory: ServicesFactory = services_factory or build_services
        self._services: Services | None = None
        self.publisher: DiscordPublisher | None = None
        self.http_server: OperatorsServer | None = None
        self.rest_probe = RestProbe(self)
        self._stopped = False

    @property
    def services(self) -> Services:
        if self._services is None:
            raise RuntimeError("services are built in setup_hook, after login")
        return self._services

    async def setup_hook(self) -> None:
        """Runs inside `login()`: build the services, start the poller and the card keeper, serve HTTP."""
        self.publisher = DiscordPublisher(self)
        self._services = await self._services_factory(self.settings, self.publisher, self.clock)
        self.services.poller.start()
        if self.services.cards is not None:
            self.services.cards.start()
        health = HealthChecks(database=self.services.db, role=Role.WORKER, gateway_connected=None,
                              discord_rest=self.rest_probe.check, ready=lambda: self.user is not None,
                              clock=self.clock)
        self.http_server = await start_http_server(self.settings, health=health, callbacks=self.services.poller)
        log.info("worker %s logged in as %s: working through Discord's REST API, no gateway connection",
                 self.services.poller.owner, self.user)

    async def close(self) -> None:
        if not self._stopped:
            self._stopped = True
            await stop_parts(self.http_server, self._services, self.publisher)
        await super().close()
