"""A real FramecastBot against the loopback Discord stand-in, with services on a real database (both engines).

Commands run through discord.py's own command tree: `discord.Interaction(data=payload, state=...)` built
from a Discord INTERACTION_CREATE payload, then `tree._call` (checks, cooldowns, transformers and the
error handler included). Every REST call goes over HTTP to `FakeDiscord`. The poller is stopped right
after login so jobs stay where the command left them (no vendor is reached).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import discord
import pytest

from bot.discord_bot import FramecastBot
from bot.settings import Settings
from fakes.settings import make_settings
from fakes.discord_api import FakeDiscord
from fakes.vendors import FakeKieVendor

UNREACHABLE = "http://127.0.0.1:9"  # discard port: nothing listens, and the poller is stopped anyway
COG_EXTENSIONS = ("cogs.generate", "cogs.jobs", "cogs.actions")
MAX_ATTACHMENT_BYTES = 64 * 1024

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 256
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 256
PDF = b"%PDF-1.7\n" + b"\x00" * 256


@pytest.fixture
async def kie() -> AsyncIterator[FakeKieVendor]:
    async with FakeKieVendor(api_key="kie-key") as vendor:
        yield vendor


def harness_settings(database_url: str, fake: FakeDiscord, kie: FakeKieVendor, **overrides: Any) -> Settings:
    """A bot wired to the Discord fake and the kie fake; the other vendors are configured but unreachable."""
    values: dict[str, Any] = dict(
        discord_token=fake.token, discord_guild_ids=[fake.GUILD_ID], database_url=database_url,
        kkiai_api_key="kk-key", kkiai_base_url=UNREACHABLE,
        kie_api_key=kie.api_key, kie_base_url=kie.base_url, kie_upload_base_url=kie.base_url,
        kling_api_key="kl-key", kling_base_url=UNREACHABLE,
        max_attachment_bytes=MAX_ATTACHMENT_BYTES, quota_daily_credits=100, quota_max_concurrent_jobs=10,
    )
    values.update(overrides)
    return make_settings(**values)


@dataclass
class Reply:
    """What one interaction produced on the fake."""

    callbacks: list[dict[str, Any]]
    content: str
    ephemeral: bool


class Harness:
    def __init__(self, bot: FramecastBot, fake: FakeDiscord) -> None:
        self.bot = bot
        self.fake = fake

    async def run(self, payload: dict[str, Any]) -> Reply:
        interaction = discord.Interaction(data=payload, state=self.bot._connection)  # type: ignore[arg-type]
        await self.bot.tree._call(interaction)
        return self.reply_to(payload)

    async def dispatch(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Hand an INTERACTION_CREATE to the client's own state (views, dynamic items, modals, the tree),
        as the gateway would, and wait until it is answered: a modal opened, or a final reply.
        Returns the interaction's first callback."""
        self.bot._connection.parse_interaction_create(payload)  # type: ignore[arg-type]
        interaction_id, token = int(payload["id"]), payload["token"]

        def answered() -> dict[str, Any] | None:
            callbacks = self.fake.interaction_callbacks.get(interaction_id)
            if not callbacks:
                return None
            if callbacks[0].get("type") == 5:  # deferred: wait for the real answer
                original = self.fake.messages.get(self.fake._interaction_originals.get(token, 0))
                if original is None or original.flags & 128:
                    return None
            return callbacks[0]
        return await self.fake.wait_until(answered, timeout=15)

    def answer(self, payload: dict[str, Any]) -> str:
        """The private text an interaction ended with."""
        return self.reply_to(payload).content

    async def command(self, name: str, options: dict[str, Any] | None = None, **kwargs: Any) -> Reply:
        return await self.run(self.fake.slash_command(name, options, **kwargs))

    def reply_to(self, payload: dict[str, Any]) -> Reply:
        callbacks = self.fake.interaction_callbacks.get(int(payload["id"]), [])
        original_id = self.fake._interaction_originals.get(payload["token"])
        original = self.fake.messages.get(original_id) if original_id else None
        assert original is not None, f"the interaction got no response: {callbacks}"
        return Reply(callbacks=callbacks, content=original.content, ephemeral=original.ephemeral)

    def public_messages(self, channel_id: int | None = None) -> list[Any]:
        return [m for m in self.fake.messages.values() if m.via == "channel"
                and (channel_id is None or m.channel_id == channel_id)]

    async def count(self, table: str) -> int:
        rows = await self.bot.services.db.fetchall(f"SELECT COUNT(*) AS n FROM {table}")
        return int(rows[0]["n"])

    async def job_row(self, job_id: int) -> Any:
        return await self.bot.services.jobs.get_job(self.fake.GUILD_ID, job_id)


BotFactory = Callable[..., Awaitable[Harness]]
H = TypeVar("H", bound=Harness)


@asynccontextmanager
async def harness_factory(
    database_url: str, fake: FakeDiscord, kie: FakeKieVendor, extensions: tuple[str, ...],
    harness_class: type[H],
) -> AsyncIterator[Callable[..., Awaitable[H]]]:
    """Real FramecastBots logged in to the Discord stand-in (poller stopped: tests drive it), closed at exit.
    All of them use one database: a second bot is "the same bot restarted"."""
    bots: list[FramecastBot] = []

    async def factory(**setting_overrides: Any) -> H:
        settings = harness_settings(database_url, fake, kie, **setting_overrides)
        bot = FramecastBot(settings, extensions=extensions)
        bots.append(bot)
        await bot.login(fake.token)  # runs setup_hook: services, cogs, command sync
        await bot.services.poller.stop()
        return harness_class(bot, fake)

    try:
        yield factory
    finally:
        for bot in bots:
            await bot.close()


@pytest.fixture
async def make_harness(database_url: str, fake: FakeDiscord, kie: FakeKieVendor) -> AsyncIterator[BotFactory]:
    async with harness_factory(database_url, fake, kie, COG_EXTENSIONS, Harness) as factory:
        yield factory


@pytest.fixture
async def harness(make_harness: BotFactory) -> Harness:
    return await make_harness()
