"""The fake Discord server against the real discord.py client, in-process: if these pass, the fake speaks
enough Discord for the command-tree tests and the end-to-end run."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import discord
import pytest
from discord import app_commands

from fakes.discord_api import FakeDiscord


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    server = FakeDiscord()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def routed_to_fake(fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> FakeDiscord:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.api_base)
    monkeypatch.setattr(discord.gateway.DiscordWebSocket, "DEFAULT_GATEWAY",
                        discord.gateway.yarl.URL(fake.gateway_url))
    return fake


class _Client(discord.Client):
    def __init__(self) -> None:
        super().__init__(intents=discord.Intents.default(), allowed_mentions=discord.AllowedMentions.none(),
                         guild_ready_timeout=0.5)
        self.tree = app_commands.CommandTree(self)
        self.seen: list[str] = []
        self.handled = asyncio.Event()

        @self.tree.command(name="ping", description="Answer pong")
        async def ping(interaction: discord.Interaction, text: str, image: discord.Attachment | None = None) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            await interaction.followup.send(f"pong {text} {image.filename if image else '-'}", ephemeral=True)
            self.seen.append(text)
            self.handled.set()

    async def setup_hook(self) -> None:
        guild = discord.Object(FakeDiscord.GUILD_ID)
        self.tree.copy_global_to(guild=guild)
        await self.tree.sync(guild=guild)


@pytest.fixture
async def client(routed_to_fake: FakeDiscord) -> AsyncIterator[_Client]:
    bot = _Client()
    task = asyncio.create_task(bot.start(routed_to_fake.token))
    try:
        await asyncio.wait_for(bot.wait_until_ready(), 15)
        yield bot
    finally:
        await bot.close()
        await asyncio.wait_for(task, 15)


async def test_login_ready_and_guild_cache(client: _Client, fake: FakeDiscord) -> None:
    guild = client.get_guild(fake.GUILD_ID)
    assert guild is not None and guild.get_channel(fake.CHANNEL_ID) is not None
    assert client.user is not None and client.user.id == fake.BOT_USER_ID
    assert fake.identify_payloads[0]["token"] == fake.token
    assert [c["name"] for c in fake.commands[fake.GUILD_ID]] == ["ping"]


async def test_slash_command_defer_and_followup(client: _Client, fake: FakeDiscord) -> None:
    image = fake.add_attachment(b"\x89PNG\r\n\x1a\nxx", "cat.png", "image/png")
    payload = fake.slash_command("ping", {"text": "hi"}, attachments={"image": image})
    await fake.dispatch_interaction(payload)
    await asyncio.wait_for(client.handled.wait(), 10)

    callbacks = fake.interaction_callbacks[int(payload["id"])]
    assert callbacks == [{"type": 5, "data": {"flags": 64}}]
    followups = [m for m in fake.messages.values() if m.via == "followup"]
    assert len(followups) == 1 and followups[0].content == "pong hi cat.png" and followups[0].ephemeral


async def test_nonce_dedupes_and_threads_and_dm(client: _Client, fake: FakeDiscord) -> None:
    channel = client.get_channel(fake.CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)
    first = await channel.send("result", nonce="job-1")
    second = await channel.send("result", nonce="job-1")
    assert first.id == second.id and len(fake.messages_in(fake.CHANNEL_ID)) == 1
    assert fake.messages[first.id].allowed_mentions == {"parse": []}

    thread = await first.create_thread(name="Job 1")
    assert thread.id == first.id and thread.parent_id == fake.CHANNEL_ID
    member = discord.Object(fake.USER_ID)
    await thread.send("done <@1>", allowed_mentions=discord.AllowedMentions(users=[member]),
                      file=discord.File(io.BytesIO(b"video"), filename="v.mp4"))
    [in_thread] = fake.messages_in(thread.id)
    assert in_thread.allowed_mentions == {"parse": [], "users": [fake.USER_ID]}
    assert in_thread.files[0]["data"] == b"video" and in_thread.files[0]["filename"] == "v.mp4"

    user = await client.fetch_user(fake.USER_ID)
    dm = await user.create_dm()
    await dm.send("your video")
    assert [m.content for m in fake.messages_in(dm.id)] == ["your video"]


async def test_faults_429_retried_403_and_404(client: _Client, fake: FakeDiscord) -> None:
    channel = client.get_channel(fake.CHANNEL_ID)
    assert isinstance(channel, discord.TextChannel)
    fake.fail("POST", rf"/channels/{fake.CHANNEL_ID}/messages", 429, times=1, retry_after=0.01)
    message = await channel.send("after a rate limit")
    assert len(fake.requests_to("POST", rf"/channels/{fake.CHANNEL_ID}/messages")) == 2
    assert message.content == "after a rate limit"

    fake.forbid_thread_creation(fake.CHANNEL_ID)
    with pytest.raises(discord.Forbidden):
        await message.create_thread(name="nope")

    fake.delete_channel(fake.OTHER_CHANNEL_ID)
    with pytest.raises(discord.NotFound):
        await client.fetch_channel(fake.OTHER_CHANNEL_ID)


async def test_gateway_resume_stays_on_fake(client: _Client, fake: FakeDiscord) -> None:
    await fake.drop_gateway(code=4000)
    await fake.wait_until(lambda: fake.resume_payloads and fake.connected_sessions == 1, timeout=15)
    assert fake.resume_payloads[0]["session_id"].startswith("session-")
    assert len(fake.identify_payloads) == 1
    assert fake.gateway_connections == ["/gateway", "/gateway/resume"]

    payload = fake.slash_command("ping", {"text": "again"})
    await fake.dispatch_interaction(payload)
    await asyncio.wait_for(client.handled.wait(), 10)
    assert client.seen == ["again"]
