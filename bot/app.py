"""`framecast` / `python -m bot`: load settings, point discord.py at the right Discord, run until stopped.

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
from collections.abc import Sequence
from typing import TextIO

import discord
import httpx
import yarl
from pydantic import ValidationError

from bot.discord_bot import FramecastBot
from bot.logging_setup import configure_logging
from bot.settings import Settings

log = logging.getLogger("framecast")

PROG = "framecast"
EXIT_OK, EXIT_RUNTIME, EXIT_CONFIG = 0, 1, 2
MISSING_TOKEN_LINE = (f"{PROG}: DISCORD_TOKEN is not set; put your bot token in the environment or .env "
                      "(see README.md)")


class ConfigError(Exception):
    """Settings that cannot work; each line is one problem, shown without a traceback."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = list(lines)


class GatewayDiscoveryError(Exception):
    pass


def load_settings() -> Settings:
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
    if settings.public_base_url and not settings.http_listen:
        # kie.ai would be told to call back an address nothing in this process listens on, and the
        # poller would keep those jobs on the sparse callback schedule: results would arrive late.
        raise ConfigError([f"{PROG}: PUBLIC_BASE_URL is set but HTTP_LISTEN is not: nothing would receive "
                           "kie.ai's callbacks; set HTTP_LISTEN too, or unset PUBLIC_BASE_URL"])
    return settings


def _describe(error: dict[str, object]) -> str:
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


async def run_bot(settings: Settings, *, bot: FramecastBot | None = None) -> int:
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

    bot = bot or FramecastBot(settings)
    stop_requested = asyncio.Event()
    loop = asyncio.get_running_loop()

    def request_stop(signame: str) -> None:
        if not stop_requested.is_set():
            log.info("%s received; shutting down", signame)
            stop_requested.set()
            loop.create_task(bot.close())

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, request_stop, sig.name)
        except (NotImplementedError, RuntimeError):  # not on the main thread / platform without it
            pass
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
                  where, type(exc).__name__, exc, exc_info=exc)
        return EXIT_RUNTIME
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.remove_signal_handler(sig)
            except (NotImplementedError, RuntimeError):
                pass
    if stop_requested.is_set():
        log.info("stopped cleanly")
        return EXIT_OK
    log.error("the Discord connection ended unexpectedly")
    return EXIT_RUNTIME


def main(argv: Sequence[str] | None = None, *, stderr: TextIO | None = None) -> int:
    """Console entry point; returns the exit code (the `framecast` script wrapper calls sys.exit)."""
    err = stderr or sys.stderr
    try:
        settings = load_settings()
    except ConfigError as exc:
        for line in exc.lines:
            print(line, file=err)
        return EXIT_CONFIG
    configure_logging(settings)
    try:
        return asyncio.run(run_bot(settings))
    except KeyboardInterrupt:
        return EXIT_OK
