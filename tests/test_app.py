"""The entry point and the bot's wiring, in-process against the loopback Discord (no vendors, stub services)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.app import (
    EXIT_CONFIG,
    MISSING_TOKEN_LINE,
    ConfigError,
    GatewayDiscoveryError,
    discover_gateway,
    load_settings,
    main,
    point_discord_py_at,
)
from bot.discord_bot import EXTENSIONS, FramecastBot, framecast_intents
from bot.settings import Settings
from cogs.errors import FramecastTree
from tests.fakes.discord_api import FakeDiscord


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No Framecast variable from the developer's shell, and no .env (cwd is an empty tmp dir)."""
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


# --- settings and main() -----------------------------------------------------------------------------

@pytest.mark.parametrize("token", [None, "", "   "])
def test_missing_or_blank_token_is_one_line_and_exit_2(clean_env: pytest.MonkeyPatch, token: str | None) -> None:
    if token is not None:
        clean_env.setenv("DISCORD_TOKEN", token)
    stderr = io.StringIO()
    assert main([], stderr=stderr) == EXIT_CONFIG
    assert stderr.getvalue() == MISSING_TOKEN_LINE + "\n"


def test_each_invalid_setting_is_its_own_line_and_secrets_are_not_echoed(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DISCORD_TOKEN", "tok")
    clean_env.setenv("POLL_MIN_INTERVAL_SECONDS", "sk-looks-like-a-secret")
    clean_env.setenv("VEO_PREFERRED_PROVIDER", "someone")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    lines = caught.value.lines
    assert len(lines) == 2
    assert any(line.startswith("framecast: POLL_MIN_INTERVAL_SECONDS:") for line in lines)
    assert any(line.startswith("framecast: VEO_PREFERRED_PROVIDER:") for line in lines)
    assert "sk-looks-like-a-secret" not in "\n".join(lines)


def test_bad_database_url_is_a_config_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DISCORD_TOKEN", "tok")
    clean_env.setenv("DATABASE_URL", "mysql://db/framecast")
    stderr = io.StringIO()
    assert main([], stderr=stderr) == EXIT_CONFIG
    assert stderr.getvalue().startswith("framecast: DATABASE_URL:") and stderr.getvalue().count("\n") == 1
    assert "'mysql'" in stderr.getvalue() and "postgresql://" in stderr.getvalue()


def test_a_postgres_url_is_accepted(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DISCORD_TOKEN", "tok")
    for url in ("postgresql://bot:pw@db:5432/framecast", "postgres://db/framecast"):
        clean_env.setenv("DATABASE_URL", url)
        assert load_settings().database_engine == "postgres"


def test_a_callback_address_without_a_listener_is_a_config_error(clean_env: pytest.MonkeyPatch) -> None:
    clean_env.setenv("DISCORD_TOKEN", "tok")
    clean_env.setenv("PUBLIC_BASE_URL", "https://bot.example.org")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert caught.value.lines == [caught.value.lines[0]] and "HTTP_LISTEN" in caught.value.lines[0]
    clean_env.setenv("HTTP_LISTEN", "0.0.0.0:8080")
    assert load_settings().public_base_url == "https://bot.example.org"


# --- gateway discovery ---------------------------------------------------------------------------------

@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def test_discover_gateway_asks_gateway_bot_with_the_token(fake: FakeDiscord) -> None:
    assert await discover_gateway(fake.api_base, fake.token) == fake.gateway_url
    [request] = fake.requests_to("GET", "/gateway/bot")
    assert request.headers["Authorization"] == f"Bot {fake.token}"


async def test_discover_gateway_explains_a_rejected_token_or_an_outage(fake: FakeDiscord) -> None:
    with pytest.raises(GatewayDiscoveryError, match="rejected DISCORD_TOKEN"):
        await discover_gateway(fake.api_base, "wrong")
    fake.fail("GET", "/gateway/bot", 503)
    with pytest.raises(GatewayDiscoveryError, match="503"):
        await discover_gateway(fake.api_base, fake.token)
    with pytest.raises(GatewayDiscoveryError, match="cannot reach"):
        await discover_gateway("http://127.0.0.1:9/api/v10", fake.token, timeout=2)


def test_point_discord_py_at_moves_rest_and_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    point_discord_py_at("http://127.0.0.1:1/api/v10/", "ws://127.0.0.1:1/gateway")
    assert discord.http.Route("GET", "/users/@me").url == "http://127.0.0.1:1/api/v10/users/@me"
    assert str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY) == "ws://127.0.0.1:1/gateway"


# --- the bot's wiring ------------------------------------------------------------------------------------

def test_no_privileged_intents_and_no_mentions_by_default() -> None:
    intents = framecast_intents()
    assert not (intents.members or intents.presences or intents.message_content)
    assert intents.guilds
    assert intents == discord.Intents(guilds=True)  # nothing the bot does not use
    bot = FramecastBot(Settings(discord_token="t", _env_file=None))  # type: ignore[call-arg]
    assert bot.allowed_mentions is not None and bot.allowed_mentions.to_dict() == {"parse": []}


def test_the_error_handler_is_the_trees_own_on_error() -> None:
    """Red-DiscordBot's pattern: a CommandTree subclass, in place before any cog loads."""
    bot = FramecastBot(Settings(discord_token="t", _env_file=None))  # type: ignore[call-arg]
    assert isinstance(bot.tree, FramecastTree)
    assert type(bot.tree).on_error is FramecastTree.on_error
    assert "cogs.errors" not in EXTENSIONS


class _StubPoller:
    def __init__(self) -> None:
        self.started = 0
        self.stopped = 0

    def start(self) -> None:
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1


class _StubServices:
    def __init__(self) -> None:
        self.poller = _StubPoller()
        self.cards = None
        self.closed = 0
        self.publisher: Any = None

    async def aclose(self) -> None:
        """Like `Services.aclose`: the poller stops first."""
        await self.poller.stop()
        self.closed += 1


async def _stub_services(*_: Any) -> Any:
    return _StubServices()


async def test_bot_wires_services_syncs_to_guilds_and_stops_cleanly(
        fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", discord.http.Route.BASE)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    point_discord_py_at(fake.api_base, fake.gateway_url)
    services = _StubServices()

    async def build(settings: Settings, publisher: Any, clock: Any) -> _StubServices:
        services.publisher = publisher
        return services

    settings = Settings(discord_token=fake.token, discord_guild_ids=[fake.GUILD_ID],  # type: ignore[call-arg]
                        _env_file=None)
    bot = FramecastBot(settings, extensions=("cogs.not_written_yet",), services_factory=build,
                       guild_ready_timeout=0.3)

    @bot.tree.command(name="hello", description="test command")
    async def hello(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("hi", ephemeral=True)

    caplog.set_level(logging.WARNING, logger="bot.discord_bot")
    runner = asyncio.create_task(bot.start(fake.token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), 15)
        await fake.wait_until(lambda: bot.is_gateway_connected(), timeout=5)
        assert bot.services is services and services.poller.started == 1
        assert type(services.publisher).__name__ == "DiscordPublisher"
        assert [c["name"] for c in fake.commands[fake.GUILD_ID]] == ["hello"]
        assert fake.commands.get(None) == []  # guild sync only; the global set is emptied
        assert "cogs.not_written_yet does not exist" in caplog.text
        assert bot.settings is settings and bot.setup_complete
    finally:
        await bot.close()
        await asyncio.wait_for(runner, 15)
    assert services.poller.stopped == 1 and services.closed == 1
    assert not bot.is_gateway_connected()


async def test_a_forbidden_guild_sync_is_logged_and_the_others_still_sync(
        fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    other_guild = 1200000000000000999
    fake.fail("PUT", rf"/applications/\d+/guilds/{other_guild}/commands", 403)
    settings = Settings(discord_token=fake.token, _env_file=None,  # type: ignore[call-arg]
                        discord_guild_ids=[other_guild, fake.GUILD_ID])
    bot = FramecastBot(settings, extensions=(), services_factory=_stub_services)
    bot.tree.command(name="hello", description="test")(_hello)
    caplog.set_level(logging.ERROR, logger="bot.discord_bot")
    try:
        await bot.login(fake.token)  # runs setup_hook, no gateway needed
    finally:
        await bot.close()
    assert bot.synced_guild_ids == [fake.GUILD_ID]
    assert f"cannot register commands in guild {other_guild}" in caplog.text


async def test_guild_sync_removes_commands_an_earlier_run_registered_globally(
        fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    fake.commands[None] = [{"id": "1", "name": "hello", "description": "test", "type": 1}]  # a run without the setting
    settings = Settings(discord_token=fake.token, _env_file=None,  # type: ignore[call-arg]
                        discord_guild_ids=[fake.GUILD_ID])
    bot = FramecastBot(settings, extensions=(), services_factory=_stub_services)
    bot.tree.command(name="hello", description="test")(_hello)
    try:
        await bot.login(fake.token)  # runs setup_hook, no gateway needed
    finally:
        await bot.close()
    assert [c["name"] for c in fake.commands[fake.GUILD_ID]] == ["hello"]
    assert fake.commands[None] == []  # shown once, from the guild


async def _hello(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("hi")

