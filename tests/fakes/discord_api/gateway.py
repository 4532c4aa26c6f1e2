"""The fake gateway: websocket sessions (HELLO, IDENTIFY/RESUME with replay, heartbeats) and the
test API that dispatches events to them."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.discord_api.state import PRIVILEGED_INTENTS, DiscordState


class GatewayMixin(DiscordState):
    """Gateway test API and the websocket endpoint."""

    # ------------------------------------------------------------------ gateway test API
    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH event to every identified gateway session that holds its guild's shard
        (Discord's rule: shard = (guild_id >> 22) % shard count)."""
        guild_id = data.get("guild_id") if isinstance(data, dict) else None
        for session in list(self._sockets):
            if session.identified and (guild_id is None or session.holds_guild(int(guild_id))):
                await session.send_dispatch(event, data)

    async def dispatch_interaction(self, payload: dict[str, Any]) -> float:
        """Send INTERACTION_CREATE; returns the monotonic send time (to check the 3 s deadline)."""
        sent_at = time.monotonic()
        self.interactions_sent_at[int(payload["id"])] = sent_at
        await self.dispatch("INTERACTION_CREATE", payload)
        return sent_at

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every gateway socket with `code` (4000 = resumable), as Discord does on a blip."""
        for session in list(self._sockets):
            await session.ws.close(code=code)

    @property
    def connected_sessions(self) -> int:
        return sum(1 for s in self._sockets if s.identified)

    # ------------------------------------------------------------------ gateway
    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.gateway_connections.append(request.path)
        session = _GatewaySession(self, ws)
        self._sockets.append(session)
        try:
            await session.run()
        finally:
            self._sockets.remove(session)
            await self._notify()
        return ws


class _GatewaySession:
    """One websocket connection: HELLO, IDENTIFY/RESUME, heartbeats, dispatches."""

    def __init__(self, fake: DiscordState, ws: web.WebSocketResponse) -> None:
        self.fake = fake
        self.ws = ws
        self.identified = False
        self.state: _SessionState | None = None
        self.shard: tuple[int, int] = (0, 1)  # [shard_id, num_shards] from IDENTIFY

    def holds_guild(self, guild_id: int) -> bool:
        shard_id, count = self.shard
        return (guild_id >> 22) % count == shard_id

    async def send(self, payload: dict[str, Any]) -> None:
        if not self.ws.closed:
            await self.ws.send_str(json.dumps(payload))

    async def send_dispatch(self, event: str, data: dict[str, Any]) -> None:
        assert self.state is not None
        self.state.sequence += 1
        frame = {"op": 0, "t": event, "s": self.state.sequence, "d": data}
        self.state.events.append(frame)
        if event == "INTERACTION_CREATE":
            self.fake._interaction_channels[int(data["id"])] = int(data.get("channel_id") or 0)
        await self.send(frame)

    async def run(self) -> None:
        await self.send({"op": 10, "d": {"heartbeat_interval": self.fake.heartbeat_interval_ms}})
        async for message in self.ws:
            if message.type is not WSMsgType.TEXT:
                continue
            frame = json.loads(message.data)
            op, data = frame.get("op"), frame.get("d")
            if op == 1:
                await self.send({"op": 11})
            elif op == 2:
                await self._identify(data or {})
            elif op == 6:
                await self._resume(data or {})

    async def _identify(self, data: dict[str, Any]) -> None:
        fake = self.fake
        fake.identify_payloads.append(data)
        if data.get("token") != fake.token:
            await self.ws.close(code=4004, message=b"Authentication failed.")
            return
        if int(data.get("intents", 0)) & PRIVILEGED_INTENTS and not fake.allow_privileged_intents:
            await self.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        shard = data.get("shard") or [0, 1]
        self.shard = (int(shard[0]), int(shard[1]))
        session_id = f"session-{fake.next_id()}"
        self.state = _SessionState(session_id, self.shard)
        fake._session_states[session_id] = self.state
        self.identified = True
        resume_url = fake.base_url.replace("http://", "ws://") + "/gateway/resume"
        guilds = [{"id": str(fake.GUILD_ID), "unavailable": True}] if self.holds_guild(fake.GUILD_ID) else []
        await self.send_dispatch("READY", {
            "v": 10, "user": fake.users[fake.BOT_USER_ID], "guilds": guilds, "shard": list(self.shard),
            "session_id": session_id, "resume_gateway_url": resume_url,
            "application": {"id": str(fake.APPLICATION_ID), "flags": 0}, "private_channels": [],
            "relationships": [], "user_settings": {}, "presences": [], "geo_ordered_rtc_regions": [],
            "session_type": "normal", "auth": {}, "_trace": ["fake-gateway"]})
        if guilds:
            await self.send_dispatch("GUILD_CREATE", fake.guild_create_payload())
        fake.ready_count += 1
        await fake._notify()

    async def _resume(self, data: dict[str, Any]) -> None:
        fake = self.fake
        fake.resume_payloads.append(data)
        state = fake._session_states.get(str(data.get("session_id")))
        if data.get("token") != fake.token or state is None:
            await self.send({"op": 9, "d": False})
            return
        self.state = state
        self.shard = state.shard
        self.identified = True
        for frame in [f for f in state.events if f["s"] > int(data.get("seq") or 0)]:
            await self.send(frame)
        await self.send_dispatch("RESUMED", {"_trace": ["fake-gateway"]})
        await fake._notify()


@dataclass
class _SessionState:
    session_id: str
    shard: tuple[int, int] = (0, 1)
    sequence: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
