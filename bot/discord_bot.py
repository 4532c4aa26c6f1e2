"""`FramecastBot`: the gateway-holding discord.py client, and the place that wires services, cogs and servers.

Lifecycle: `setup_hook` (runs after login, before the gateway connects) builds the services with the
Discord publisher, loads the cogs, syncs the slash commands, starts the poller (role `all` only: a
`gateway` process leaves that to its workers, bot/worker.py) and the optional operators' HTTP server.
`close` stops them in the reverse order, before the Discord connection goes away, so the poller can
finish a delivery it has in hand.

Always an `AutoShardedBot`: with SHARD_COUNT unset, discord.py asks Discord how many shards to run
(GET /gateway/bot) and runs them all here; SHARD_COUNT + SHARD_IDS run just those shards, so the
shards of a large bot can be spread over several gateway processes.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from typing import Any

import discord
from discord.ext import commands

from bot.clock import Clock, SystemClock
from bot.command_translator import CatalogTranslator
from bot.http_server import (
    HealthChecks,
    OperatorsServer,
    heartbeat_from_metrics,
    start_http_server,
)
from bot.publishing.discord_publisher import DiscordPublisher
from bot.runtime import Role, ServicesFactory, stop_parts
from bot.services import Services, build_services
from bot.settings import Settings
from cogs.errors import FramecastTree

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = ("cogs.generate", "cogs.jobs", "cogs.actions", "cogs.quota", "cogs.admin")


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


def shard_options(settings: Settings) -> dict[str, Any]:
    """AutoShardedBot's shard arguments: none (ask Discord, run all here), or SHARD_COUNT [+ SHARD_IDS]."""
    options: dict[str, Any] = {}
    if settings.shard_count is not None:
        options["shard_count"] = settings.shard_count
    if settings.shard_ids:
        options["shard_ids"] = list(settings.shard_ids)
    return options


class FramecastBot(commands.AutoShardedBot):
    """The gateway process's Discord client (roles `all` and `gateway`). Exposes `settings`, `services`
    and `is_gateway_connected()`."""

    def __init__(
        self,
        settings: Settings,
        *,
        role: Role = Role.ALL,
        clock: Clock | None = None,
        extensions: Sequence[str] = EXTENSIONS,
        services_factory: ServicesFactory | None = None,
        **options: Any,
    ) -> None:
        """`services_factory` defaults to `bot.services.build_services`; tests pass their own."""
        if not role.has_gateway:
            raise ValueError("a worker has no gateway connection: use bot.worker.FramecastWorker")
        # No prefix commands: `when_mentioned` is only there because commands.Bot requires a prefix, and
        # without the message_content intent mention-prefixed messages are all the bot could ever see.
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=framecast_intents(),
            allowed_mentions=discord.AllowedMentions.none(),
            help_command=None,
            tree_cls=FramecastTree,
            **shard_options(settings),
            **options,
        )
        self.settings = settings
        self.role = role
        self.clock: Clock = clock or SystemClock()
        self.extensions_to_load = tuple(extensions)
        self._services_factory: ServicesFactory = services_factory or build_services
        self._services: Services | None = None
        self.publisher: DiscordPublisher | None = None
        self.http_server: OperatorsServer | None = None
        self.synced_guild_ids: list[int] = []
        self.synced_globally = False
        self.setup_complete = False
        self._shards_up: set[int] = set()
        self._announced = False
        self._stopped_services = False
        self.add_listener(self._on_shard_up, "on_shard_connect")
        self.add_listener(self._on_shard_up, "on_shard_resumed")
        self.add_listener(self._on_shard_down, "on_shard_disconnect")
        self.add_listener(self._announce, "on_ready")

    @property
    def services(self) -> Services:
        """Built in `setup_hook` (after login, before any command can arrive)."""
        if self._services is None:
            raise RuntimeError("services are built in setup_hook, after login")
        return self._services

    # --- gateway state (for /healthz) --------------------------------------------------------------
    async def _on_shard_up(self, shard_id: int) -> None:
        self._shards_up.add(shard_id)
        await self._announce()

    async def _on_shard_down(self, shard_id: int) -> None:
        self._shards_up.discard(shard_id)
        if self._announced:
            log.warning("gateway shard %s disconnected; discord.py will reconnect", shard_id)
        self._announced = False

    async def _announce(self) -> None:
        """Log once per (re)connection, when every shard of this process is up and the guilds are in."""
        if not self._announced and self.is_ready() and self.is_gateway_connected():
            guilds = len(self.guilds)
            log.info("gateway connected as %s (%s guild%s, shard%s %s of %s)", self.user, guilds,
                     "" if guilds == 1 else "s", "" if len(self._shards_up) == 1 else "s",
                     ",".join(map(str, sorted(self._shards_up))), self.shard_count)
            self._announced = True

    def own_shards(self) -> set[int]:
        """The shards this process runs (known once discord.py has launched them)."""
        if self.shard_ids is not None:
            return set(self.shard_ids)
        return set(range(self.shard_count or 0))

    def is_gateway_connected(self) -> bool:
        """Every shard of this process has a live gateway session."""
        shards = self.own_shards()
        return bool(shards) and shards <= self._shards_up and not self.is_closed()

    # --- startup ------------------------------------------------------------------------------------
    async def setup_hook(self) -> None:
        self.publisher = DiscordPublisher(self)
        self._services = await self._services_factory(self.settings, self.publisher, self.clock)
        self._register_persistent_items()
        await self._load_extensions()
        await self.tree.set_translator(CatalogTranslator())
        await self._sync_commands()
        if self.role.runs_poller:
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
        polls = self.role.runs_poller
        health = HealthChecks(database=self.services.db, role=self.role, gateway_connected=self.is_gateway_connected,
                              ready=self.is_ready, poller_last_tick=heartbeat_from_metrics if polls else None,
                              clock=self.clock)
        # A gateway process has no poller to hand kie.ai's callbacks to: PUBLIC_BASE_URL points at workers.
        self.http_server = await start_http_server(self.settings, health=health,
                                                   callbacks=self.services.poller if polls else None)
        log.info("operators' HTTP server listening on %s", self.settings.http_listen)

    # --- shutdown -----------------------------------------------------------------------------------
    async def close(self) -> None:
        await self._stop_services()
        await super().close()

    async def _stop_services(self) -> None:
        if not self._stopped_services:
            self._stopped_services = True
            await stop_parts(self.http_server, self._services, self.publisher)
