"""`FramecastBot`: the discord.py client, and the one place that wires services, cogs and servers together.

Lifecycle: `setup_hook` (runs after login, before the gateway connects) builds the services with the
Discord publisher, loads the cogs, syncs the slash commands, starts the poller and the optional operators'
HTTP server. `close` stops them in the reverse order, before the Discord connection goes away, so the
poller can finish a delivery it has in hand.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import discord
from discord.ext import commands

from bot.clock import Clock, SystemClock
from bot.command_translator import CatalogTranslator
from bot.http_server import HealthChecks, OperatorsServer, start_http_server
from bot.publishing.discord_publisher import DiscordPublisher
from bot.services import Services, build_services
from bot.settings import Settings
from cogs.errors import FramecastTree

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = ("cogs.generate", "cogs.jobs", "cogs.actions", "cogs.quota", "cogs.admin")

ServicesFactory = Callable[[Settings, DiscordPublisher, Clock], Awaitable[Services]]


def framecast_intents() -> discord.Intents:
    """Only the `guilds` intent: nothing privileged, nothing unused.

    Slash-command interactions arrive whatever the intents and carry the invoking member with their role
    ids and resolved permissions, so the bot needs neither the member list (`members`), nor presences,
    nor message text (`message_content`), nor message, reaction or typing events. `guilds` keeps the
    channel and thread cache and each server's upload limit (`guild.filesize_limit`) current. Asking for
    nothing privileged means no approval in the Developer Portal and no gateway close 4014.
    """
    intents = discord.Intents.none()
    intents.guilds = True
    return intents


class FramecastBot(commands.Bot):
    """The bot process's Discord client. Exposes `settings`, `services` and `is_gateway_connected()`."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock | None = None,
        extensions: Sequence[str] = EXTENSIONS,
        services_factory: ServicesFactory | None = None,
        **options: Any,
    ) -> None:
        """`services_factory` defaults to `bot.services.build_services`; tests pass their own."""
        # No prefix commands: `when_mentioned` is only there because commands.Bot requires a prefix, and
        # without the message_content intent mention-prefixed messages are all the bot could ever see.
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=framecast_intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            tree_cls=FramecastTree,
            **options,
        )
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.extensions_to_load = tuple(extensions)
        self._services_factory: ServicesFactory = services_factory or build_services
        self._services: Services | None = None
        self.publisher: DiscordPublisher | None = None
        self.http_server: OperatorsServer | None = None
        self.synced_guild_ids: list[int] = []
        self.synced_globally = False
        self.setup_complete = False
        self._gateway_connected = False
        self._stopped_services = False
        self.add_listener(self._on_gateway_up, "on_ready")
        self.add_listener(self._on_gateway_up, "on_resumed")
        self.add_listener(self._on_gateway_down, "on_disconnect")

    @property
    def services(self) -> Services:
        """Built in `setup_hook` (after login, before any command can arrive)."""
        if self._services is None:
            raise RuntimeError("services are built in setup_hook, after login")
        return self._services

    # --- gateway state (for /healthz) --------------------------------------------------------------
    async def _on_gateway_up(self) -> None:
        if not self._gateway_connected:
            guilds = len(self.guilds)
            log.info("gateway connected as %s (%s guild%s)", self.user, guilds, "" if guilds == 1 else "s")
        self._gateway_connected = True

    async def _on_gateway_down(self) -> None:
        if self._gateway_connected:
            log.warning("gateway disconnected; discord.py will reconnect")
        self._gateway_connected = False

    def is_gateway_connected(self) -> bool:
        return self._gateway_connected and not self.is_closed()

    # --- startup ------------------------------------------------------------------------------------
    async def setup_hook(self) -> None:
        self.publisher = DiscordPublisher(self)
        self._services = await self._services_factory(self.settings, self.publisher, self.clock)
        self._register_persistent_items()
        await self._load_extensions()
        await self.tree.set_translator(CatalogTranslator())
        await self._sync_commands()
        self.services.poller.start()
        if self.services.cards is not None:
            self.services.cards.start()
        if self.settings.http_listen:
            await self._start_http_server()
        self.setup_complete = True

    def _register_persistent_items(self) -> None:
        """Every button the bot ever posted works after a restart: its custom id says what to do."""
        from bot.publishing.components import JobButton

        self.add_dynamic_items(JobButton)

    async def _load_extensions(self) -> None:
        for name in self.extensions_to_load:
            if importlib.util.find_spec(name) is None:
                log.warning("extension %s does not exist; its commands are not available", name)
                continue
            await self.load_extension(name)
            log.debug("loaded extension %s", name)

    async def _sync_commands(self) -> None:
        """Guild sync is instant (handy for one community); global sync can take up to an hour to show."""
        guild_ids = list(self.settings.discord_guild_ids)
        if not guild_ids:
            commands_synced = await self.tree.sync()
            self.synced_globally = True
            log.info("synced %d global application commands", len(commands_synced))
            return
        for guild_id in guild_ids:
            guild = discord.Object(id=guild_id)
            self.tree.copy_global_to(guild=guild)
            try:
                commands_synced = await self.tree.sync(guild=guild)
            except discord.Forbidden:
                log.error("cannot register commands in guild %s: invite the bot with the "
                          "applications.commands scope there, or remove it from DISCORD_GUILD_IDS", guild_id)
                continue
            self.synced_guild_ids.append(guild_id)
            log.info("synced %d application commands to guild %s", len(commands_synced), guild_id)
        # A global registration left by an earlier run without DISCORD_GUILD_IDS would show every
        # command twice in those servers: empty the global set at Discord (one bulk overwrite). The
        # local tree keeps its global commands: they are what the guild copies were made from.
        assert self.application_id is not None  # set by login(), before setup_hook runs
        try:
            await self.http.bulk_upsert_global_commands(self.application_id, payload=[])
        except discord.HTTPException as error:
            log.warning("could not remove globally registered commands (%s); they may show twice", error)

    async def _start_http_server(self) -> None:
        health = HealthChecks(database=self.services.db, gateway_connected=self.is_gateway_connected,
                              ready=self.is_ready, clock=self.clock)
        self.http_server = await start_http_server(self.settings, health=health, callbacks=self.services.poller)
        log.info("operators' HTTP server listening on %s", self.settings.http_listen)

    # --- shutdown -----------------------------------------------------------------------------------
    async def close(self) -> None:
        await self._stop_services()
        await super().close()

    async def _stop_services(self) -> None:
        """Stop the HTTP server, then the services (the poller first: it may still post via Discord),
        then the publisher's download client."""
        if self._stopped_services:
            return
        self._stopped_services = True
        steps: list[tuple[str, Callable[[], Awaitable[None]] | None]] = [
            ("http server", self.http_server.stop if self.http_server is not None else None),
            ("services", self._services.aclose if self._services is not None else None),
            ("publisher", self.publisher.aclose if self.publisher is not None else None),
        ]
        for what, stop in steps:
            if stop is None:
                continue
            try:
                await stop()
            except Exception:
                log.exception("error while stopping the %s", what)
