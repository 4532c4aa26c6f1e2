"""`framecast` / `python -m bot`: load settings, point discord.py at the right Discord, run until stopped.

    python -m bot              everything in one process (gateway, commands, poller, HTTP server)
    python -m bot gateway      the gateway connection, slash commands and buttons; no poller
    python -m bot worker       submits, polls, delivers through Discord's REST API; no gateway
    python -m bot healthcheck  asks this process's /healthz (the Docker HEALTHCHECK)
    python -m bot migrate-to-postgres SQLITE_URL POSTGRES_URL
                               copies settings, ledger, audit trail and finished jobs to PostgreSQL

Exit codes: 0 after a clean stop (SIGTERM/SIGINT), 2 for a configuration problem (printed as one line
per problem, no traceback), 1 when Discord cannot be reached or refuses the token, so a supervisor
(Docker's restart policy) restarts the process.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TextIO

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import discord
import httpx
import yarl
from pydantic import ValidationError

from bot.discord_bot import FramecastBot
from bot.healthcheck import healthcheck
from bot.logging_setup import configure_logging
from bot.runtime import Role
from bot.settings import Settings
from bot.worker import FramecastWorker
from storage.database import open_database, sqlite_path
from storage.transfer import TransferRefused, copy_to_postgres

log = logging.getLogger("framecast")

PROG = "framecast"
EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2
COMMANDS = (*(role.value for role in Role), "healthcheck")
MIGRATE = "migrate-to-postgres"
USAGE = (f"usage: {PROG} [{'|'.join(COMMANDS)}]  (default: all)\n"
         f"       {PROG} {MIGRATE} SQLITE_URL POSTGRES_URL")
# Discord or the network saying no: one line is the whole story, a traceback would only bury it.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    discord.HTTPException, discord.GatewayNotFound, discord.ConnectionClosed, aiohttp.ClientError,
    asyncio.TimeoutError, OSError)
MISSING_TOKEN_LINE = (f"{PROG}: DISCORD_TOKEN is not set; put your bot token in the environment or .env "
                      "(see README.md)")


class ConfigError(Exception):
    """Settings that cannot work; each line is one problem, shown without a traceback."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


class GatewayDiscoveryError(Exception):
    pass


def load_settings(role: Role = Role.ALL) -> Settings:
    """Settings from the environment and .env, or ConfigError with one readable line per problem."""
    try:
        settings = Settings()  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError([_describe(error) for error in exc.errors()]) from None
    if not settings.discord_token.get_secret_value().strip():
        raise ConfigError([MISSING_TOKEN_LINE])
    try:
        settings.database_engine
    except ValueError as exc:
        raise ConfigError([f"{PROG}: DATABASE_URL: {exc}"]) from None
    if role.has_gateway and settings.shard_problems():
        raise ConfigError([f"{PROG}: {problem}" for problem in settings.shard_problems()])
    if role.runs_poller and settings.public_base_url and not settings.http_listen:
        # kie.ai would be told to call back an address nothing in this process listens on, and the
        # poller would keep those jobs on the sparse callback schedule: results would arrive late.
        raise ConfigError([f"{PROG}: PUBLIC_BASE_URL is set but HTTP_LISTEN is not: nothing would receive "
                           "kie.ai's callbacks; set HTTP_LISTEN too, or unset PUBLIC_BASE_URL"])
    return settings


def _describe(error: Mapping[str, object]) -> str:
    loc = error.get("loc") or ()
    field = str(loc[0]).upper() if isinstance(loc, tuple) and loc else "settings"
    if field == "DISCORD_TOKEN" and error.get("type") == "missing":
        return MISSING_TOKEN_LINE
    message = str(error.get("msg", "invalid value"))  # never echo the input: it may be a secret
    return f"{PROG}: {field}: {message}"


async def discover_gateway(api_base: str, token: str, *, timeout: float = 15.0) -> str:
    """Ask `GET {api_base}/gateway/bot` for the gateway URL (discord.py itself never asks)."""
    url = f"{api_base.rstrip('/')}/gateway/bot"
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.get(url, headers={"Authorization": f"Bot {token}"})
    except httpx.HTTPError as exc:
        raise GatewayDiscoveryError(f"cannot reach {url}: {type(exc).__name__}: {exc}") from None
    if response.status_code == 401:
        raise GatewayDiscoveryError(f"{url} rejected DISCORD_TOKEN (401 Unauthorized)")
    if response.status_code != 200:
        raise GatewayDiscoveryError(f"{url} answered HTTP {response.status_code}")
    try:
        gateway = response.json()["url"]
    except (ValueError, KeyError, TypeError):
        raise GatewayDiscoveryError(f"{url} answered without a gateway url") from None
    if not isinstance(gateway, str) or not gateway.startswith(("ws://", "wss://")):
        raise GatewayDiscoveryError(f"{url} answered an unusable gateway url: {gateway!r}")
    return gateway


def point_discord_py_at(api_base: str, gateway_url: str) -> None:
    """Route discord.py's REST calls to `api_base` and its gateway connections to `gateway_url`.

    `Route.BASE` is read by every REST route; `DiscordWebSocket.DEFAULT_GATEWAY` is what discord.py
    connects to first and falls back to after an invalidated session. Resumes use the
    `resume_gateway_url` from READY, which the API at `api_base` chooses itself.
    """
    discord.http.Route.BASE = api_base.rstrip("/")
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def freeze_startup_heap() -> None:
    """Move everything alive at start-up (modules, classes, discord.py's tables) out of the garbage
    collector's reach: full collections then scan only what the bot allocates while running, which
    keeps their pauses, and so slash-command answer times, short with thousands of jobs in flight."""
    gc.collect()
    gc.freeze()


def _on_stop_signals(loop: asyncio.AbstractEventLoop, callback: Callable[[str], None]) -> Callable[[], None]:
    """Call `callback(signal name)` on SIGTERM/SIGINT; returns the function that removes the handlers."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, callback, sig.name)
        except (NotImplementedError, RuntimeError):  # not on the main thread / platform without it
            pass

    def remove() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
    return remove


async def run_bot(settings: Settings, *, role: Role = Role.ALL, bot: FramecastBot | None = None) -> int:
    """Run until SIGTERM/SIGINT (exit 0) or until Discord cannot be reached (exit 1)."""
    token = settings.discord_token.get_secret_value().strip()
    if settings.discord_api_base:
        try:
            gateway = await discover_gateway(settings.discord_api_base, token)
        except GatewayDiscoveryError as exc:
            log.error("gateway discovery failed: %s", exc)
            return EXIT_RUNTIME
        point_discord_py_at(settings.discord_api_base, gateway)
        log.info("using Discord API %s and gateway %s", settings.discord_api_base, gateway)

    bot = bot or FramecastBot(settings, role=role)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop(signame: str) -> None:
        if not stop_requested.is_set():
            log.info("%s received; shutting down", signame)
            stop_requested.set()
            loop.create_task(bot.close())

    remove_signal_handlers = _on_stop_signals(loop, request_stop)
    freeze_startup_heap()
    try:
        async with bot:
            await bot.start(token, reconnect=True)
    except discord.LoginFailure:
        log.error("Discord rejected DISCORD_TOKEN (401); reset the token in the Developer Portal")
        return EXIT_RUNTIME
    except discord.PrivilegedIntentsRequired:
        log.error("Discord refused the requested intents (close 4014)")
        return EXIT_RUNTIME
    except Exception as exc:
        if stop_requested.is_set():
            log.warning("error during shutdown: %s: %s", type(exc).__name__, exc)
            return EXIT_OK
        if bot.user is None:
            where = "login (REST API)"
        elif not bot.setup_complete:
            where = "startup (services, cogs, command sync)"
        elif not bot.is_ready():
            where = "first gateway connection"
        else:
            where = "gateway connection"
        log.error("%s failed: %s: %s (exiting so the supervisor restarts the bot)",
                  where, type(exc).__name__, exc, exc_info=None if isinstance(exc, CONNECTION_ERRORS) else exc)
        return EXIT_RUNTIME
    finally:
        remove_signal_handlers()
    if stop_requested.is_set():
        log.info("stopped cleanly")
        return EXIT_OK
    log.error("the Discord connection ended unexpectedly")
    return EXIT_RUNTIME


async def run_worker(settings: Settings, *, worker: FramecastWorker | None = None) -> int:
    """`worker`: log in over REST (no gateway) and work until SIGTERM/SIGINT (exit 0), or exit 1 when
    Discord refuses the token or cannot be reached."""
    token = settings.discord_token.get_secret_value().strip()
    if settings.discord_api_base:
        discord.http.Route.BASE = settings.discord_api_base.rstrip("/")
        log.info("using Discord API %s (REST only: a worker opens no gateway connection)", settings.discord_api_base)
    worker = worker or FramecastWorker(settings)
    stop_requested = asyncio.Event()

    def request_stop(signame: str) -> None:
        if not stop_requested.is_set():
            log.info("%s received; shutting down", signame)
            stop_requested.set()

    remove_signal_handlers = _on_stop_signals(asyncio.get_running_loop(), request_stop)
    freeze_startup_heap()
    try:
        async with worker:
            await worker.login(token)
            await stop_requested.wait()
    except discord.LoginFailure:
        log.error("Discord rejected DISCORD_TOKEN (401); reset the token in the Developer Portal")
        return EXIT_RUNTIME
    except CONNECTION_ERRORS as exc:
        where = "login (REST API)" if worker.user is None else "worker"
        log.error("%s failed: %s: %s (exiting so the supervisor restarts the worker)", where,
                  type(exc).__name__, exc)
        return EXIT_RUNTIME
    finally:
        remove_signal_handlers()
    log.info("stopped cleanly")
    return EXIT_OK


def migrate_to_postgres(args: Sequence[str], err: TextIO) -> int:
    """`migrate-to-postgres SQLITE_URL POSTGRES_URL`: one line per outcome, exit 0 when copied."""
    if len(args) != 2:
        print(f"{PROG}: {MIGRATE} needs the SQLite database and the PostgreSQL database, e.g.\n"
              f"  {PROG} {MIGRATE} sqlite:////data/bot.db postgresql://framecast:secret@db:5432/framecast", file=err)
        return EXIT_CONFIG
    logging.basicConfig(level=logging.WARNING)
    try:
        copied = asyncio.run(_copy(args[0], args[1]))
    except TransferRefused as exc:
        print(f"{PROG}: {MIGRATE}: refused: {exc}", file=err)
        return EXIT_RUNTIME
    except (OSError, ValueError, asyncpg.PostgresError) as exc:
        print(f"{PROG}: {MIGRATE}: failed: {type(exc).__name__}: {exc}", file=err)
        return EXIT_RUNTIME
    settings_rows = sum(n for table, n in copied.items() if table.startswith("guild_"))
    print(f"copied {copied['jobs']} jobs, {copied['credit_ledger']} ledger entries, {copied['audit_events']} audit "
          f"events and {settings_rows} server settings rows; now set DATABASE_URL to the PostgreSQL database")
    return EXIT_OK


async def _copy(source_url: str, target_url: str) -> dict[str, int]:
    if sqlite_path(source_url) is None or sqlite_path(target_url) is not None:
        raise TransferRefused("copy from a SQLite database (sqlite:///...) to a PostgreSQL one (postgresql://...)")
    source = await open_database(source_url)
    try:
        target = await open_database(target_url)
        try:
            return await copy_to_postgres(source, target)
        finally:
            await target.close()
    finally:
        await source.close()


def main(argv: Sequence[str] | None = None, *, stderr: TextIO | None = None) -> int:
    """Console entry point; returns the exit code (the `framecast` script wrapper calls sys.exit)."""
    err = stderr or sys.stderr
    args = list(sys.argv[1:] if argv is None else argv)
    command = args[0] if args else Role.ALL.value
    if command in ("-h", "--help"):
        print(USAGE)
        return EXIT_OK
    if command == MIGRATE:
        return migrate_to_postgres(args[1:], err)
    if command not in COMMANDS or len(args) > 1:
        print(f"{PROG}: unknown command {' '.join(args)!r}; {USAGE}", file=err)
        return EXIT_CONFIG
    if command == "healthcheck":
        return healthcheck()
    role = Role(command)
    try:
        settings = load_settings(role)
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=err)
        return EXIT_CONFIG
    configure_logging(settings)
    try:
        return asyncio.run(run_worker(settings) if role is Role.WORKER else run_bot(settings, role=role))
    except KeyboardInterrupt:
        return EXIT_OK
