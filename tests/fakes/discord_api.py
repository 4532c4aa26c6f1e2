"""A loopback stand-in for Discord's REST API v10 and gateway, good enough for the real discord.py client.

Why a fake server instead of mocks: the bot's correctness depends on what discord.py really sends (nonces,
allowed_mentions, multipart uploads, deferrals, retries on 429/5xx) and on how it reacts to Discord's real
answers (403, 404, rate limits). This server speaks the wire format, records every request, and exposes a few
fault knobs. It runs in the test's event loop; the bot may run in-process or as a subprocess.

It is one file on purpose (REST, gateway, payload builders): tests import one thing, `FakeDiscord`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1420070400000
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)  # members, presences, message_content
DEFAULT_MEMBER_PERMISSIONS = 0x0000_0000_0006_4C40 | (1 << 38)  # view, send, embed, attach, history, threads
ADMIN_PERMISSIONS = 1 << 3
MANAGE_GUILD = 1 << 5
BOT_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 35) | (1 << 38)


def _iso(ts: float | None = None) -> str:
    return datetime.fromtimestamp(ts if ts is not None else time.time(), tz=timezone.utc).isoformat()


@dataclass
class RecordedRequest:
    """One HTTP request as the fake received it."""

    method: str
    path: str  # without the /api/v10 prefix
    query: dict[str, str]
    json: Any
    files: list[dict[str, Any]]  # {"field", "filename", "content_type", "data"}
    headers: dict[str, str]
    received_at: float = field(default_factory=time.monotonic)


@dataclass
class RecordedMessage:
    """A message that now exists on the fake (channel send, interaction response or followup)."""

    id: int
    channel_id: int
    content: str
    allowed_mentions: dict[str, Any] | None
    embeds: list[dict[str, Any]]
    files: list[dict[str, Any]]
    nonce: str | None
    flags: int
    via: str  # "channel" | "interaction" | "followup"
    payload: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & 64)


@dataclass
class FaultRule:
    """Answer `status` to the next `times` requests matching method + path regex."""

    method: str
    path_pattern: str
    status: int
    times: int
    retry_after: float = 0.05
    is_global: bool = False

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and re.fullmatch(self.path_pattern, path) is not None


class FakeDiscord:
    """Discord REST + gateway on 127.0.0.1. Ids are stable class attributes."""

    TOKEN = "fake.discord.token-for-tests"
    APPLICATION_ID = 1100000000000000001
    BOT_USER_ID = APPLICATION_ID
    GUILD_ID = 1200000000000000001
    CHANNEL_ID = 1300000000000000001  # #general, a text channel
    OTHER_CHANNEL_ID = 1300000000000000002  # #videos
    AUDIT_CHANNEL_ID = 1300000000000000003  # #mod-log
    USER_ID = 1400000000000000001  # an ordinary member
    MODERATOR_ID = 1400000000000000002  # a member with Manage Server
    EVERYONE_ROLE_ID = GUILD_ID
    MEMBER_ROLE_ID = 1500000000000000001
    MODERATOR_ROLE_ID = 1500000000000000002

    def __init__(self, *, token: str = TOKEN, heartbeat_interval_ms: int = 41250) -> None:
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.base_url = ""
        self.requests: list[RecordedRequest] = []
        self.messages: dict[int, RecordedMessage] = {}
        self.threads: dict[int, dict[str, Any]] = {}
        self.interaction_callbacks: dict[int, list[dict[str, Any]]] = {}
        self.interactions_sent_at: dict[int, float] = {}
        self.commands: dict[int | None, list[dict[str, Any]]] = {}  # guild id (None = global) -> commands
        self.identify_payloads: list[dict[str, Any]] = []
        self.resume_payloads: list[dict[str, Any]] = []
        self.gateway_connections: list[str] = []  # request path of every websocket connection
        self.faults: list[FaultRule] = []
        self.forbidden_thread_channels: set[int | None] = set()  # None = every channel
        self.forbidden_send_channels: set[int] = set()
        self.deleted_channels: set[int] = set()
        self.allow_privileged_intents = False
        self._ids = itertools.count(((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22) + 1)
        self._nonces: dict[tuple[int, str], tuple[float, int]] = {}
        self._interaction_originals: dict[str, int] = {}  # interaction token -> @original message id
        self._attachments: dict[int, tuple[bytes, str, str]] = {}
        self.channels: dict[int, dict[str, Any]] = {
            cid: self._text_channel(cid, name, pos)
            for pos, (cid, name) in enumerate(
                [(self.CHANNEL_ID, "general"), (self.OTHER_CHANNEL_ID, "videos"), (self.AUDIT_CHANNEL_ID, "mod-log")]
            )
        }
        self.users: dict[int, dict[str, Any]] = {
            self.BOT_USER_ID: {"id": str(self.BOT_USER_ID), "username": "Framecast", "discriminator": "0",
                               "global_name": None, "avatar": None, "bot": True},
            self.USER_ID: self._user(self.USER_ID, "alice"),
            self.MODERATOR_ID: self._user(self.MODERATOR_ID, "mod"),
        }
        self._interaction_channels: dict[int, int] = {}  # interaction id -> channel id
        self._sockets: list[_GatewaySession] = []
        self._session_states: dict[str, _SessionState] = {}
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.ready_count = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> str:
        """Listen on a free 127.0.0.1 port; returns the base URL (no /api/v10)."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/gateway/resume", self._gateway)
        app.router.add_get("/attachments/{id}/{filename}", self._cdn)
        app.router.add_route("*", "/api/v10/{tail:.*}", self._rest)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        return self.base_url

    async def close(self) -> None:
        for session in list(self._sockets):
            await session.ws.close(code=1001)
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_base(self) -> str:
        return f"{self.base_url}/api/v10"

    @property
    def gateway_url(self) -> str:
        return self.base_url.replace("http://", "ws://") + "/gateway"

    # ------------------------------------------------------------------ fault knobs
    def fail(self, method: str, path_pattern: str, status: int, times: int = 1, *,
             retry_after: float = 0.05, is_global: bool = False) -> FaultRule:
        """Answer 429/5xx (or any status) to the next `times` matching requests."""
        rule = FaultRule(method.upper(), path_pattern, status, times, retry_after, is_global)
        self.faults.append(rule)
        return rule

    def forbid_thread_creation(self, channel_id: int | None = None) -> None:
        self.forbidden_thread_channels.add(channel_id)

    def forbid_sending(self, channel_id: int) -> None:
        self.forbidden_send_channels.add(channel_id)

    def delete_channel(self, channel_id: int) -> None:
        self.deleted_channels.add(channel_id)

    # ------------------------------------------------------------------ assertions helpers
    def messages_in(self, channel_id: int) -> list[RecordedMessage]:
        return [m for m in self.messages.values() if m.channel_id == channel_id]

    def requests_to(self, method: str, path_pattern: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path_pattern, r.path)]

    def callback_delay(self, interaction_id: int) -> float | None:
        """Seconds from dispatching the interaction to its first callback (Discord allows 3)."""
        calls = self.requests_to("POST", rf"/interactions/{interaction_id}/[^/]+/callback")
        sent_at = self.interactions_sent_at.get(interaction_id)
        return None if not calls or sent_at is None else calls[0].received_at - sent_at

    async def wait_until(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        """Wait (without sleeping blindly) until `predicate()` is truthy after some request or event."""
        async def _wait() -> Any:
            async with self._changed:
                while not (value := predicate()):
                    await self._changed.wait()
                return value
        return await asyncio.wait_for(_wait(), timeout)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # ------------------------------------------------------------------ ids and payloads
    def next_id(self) -> int:
        return next(self._ids)

    @staticmethod
    def _user(user_id: int, name: str) -> dict[str, Any]:
        return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name.title(),
                "avatar": None}

    def _text_channel(self, channel_id: int, name: str, position: int) -> dict[str, Any]:
        return {"id": str(channel_id), "type": 0, "guild_id": str(self.GUILD_ID), "name": name,
                "position": position, "permission_overwrites": [], "nsfw": False, "topic": None,
                "parent_id": None, "last_message_id": None, "rate_limit_per_user": 0}

    def member_payload(self, user_id: int, role_ids: Iterable[int] = (), *,
                       permissions: int | None = None) -> dict[str, Any]:
        user = self.users.get(user_id) or self._user(user_id, f"user{user_id % 1000}")
        member = {"user": user, "roles": [str(r) for r in role_ids], "nick": None, "avatar": None,
                  "joined_at": _iso(0), "deaf": False, "mute": False, "flags": 0, "pending": False,
                  "premium_since": None}
        if permissions is not None:
            member["permissions"] = str(permissions)
        return member

    def guild_payload(self) -> dict[str, Any]:
        roles = [
            {"id": str(self.EVERYONE_ROLE_ID), "name": "@everyone", "permissions": str(DEFAULT_MEMBER_PERMISSIONS),
             "position": 0, "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0},
            {"id": str(self.MEMBER_ROLE_ID), "name": "Creators", "permissions": "0", "position": 1, "color": 0,
             "hoist": False, "managed": False, "mentionable": False, "flags": 0},
            {"id": str(self.MODERATOR_ROLE_ID), "name": "Mods", "permissions": str(MANAGE_GUILD), "position": 2,
             "color": 0, "hoist": False, "managed": False, "mentionable": False, "flags": 0},
        ]
        return {"id": str(self.GUILD_ID), "name": "Framecast Test Guild", "icon": None, "owner_id": "1",
                "roles": roles, "emojis": [], "stickers": [], "features": [], "premium_tier": 0,
                "verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
                "mfa_level": 0, "system_channel_id": None, "preferred_locale": "en-US", "nsfw_level": 0}

    def guild_create_payload(self) -> dict[str, Any]:
        data = self.guild_payload()
        bot_member = self.member_payload(self.BOT_USER_ID)
        data.update({
            "unavailable": False, "large": False, "member_count": 3, "joined_at": _iso(0),
            "channels": [dict(c) for cid, c in self.channels.items() if c["type"] == 0],
            "threads": [], "voice_states": [], "presences": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [],
            "members": [bot_member, self.member_payload(self.USER_ID, [self.MEMBER_ROLE_ID])],
        })
        return data

    def add_attachment(self, data: bytes, filename: str, content_type: str) -> dict[str, Any]:
        """Host bytes on the fake CDN; returns an attachment payload (as in `resolved.attachments`)."""
        attachment_id = self.next_id()
        self._attachments[attachment_id] = (data, filename, content_type)
        url = f"{self.base_url}/attachments/{attachment_id}/{filename}"
        return {"id": str(attachment_id), "filename": filename, "size": len(data), "url": url,
                "proxy_url": url, "content_type": content_type, "ephemeral": True}

    def command_id(self, name: str, guild_id: int | None = None) -> int:
        for scope in (guild_id, None) if guild_id is not None else (None,):
            for command in self.commands.get(scope, []):
                if command["name"] == name:
                    return int(command["id"])
        return self.next_id()

    def slash_command(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        subcommand: str | None = None,
        subcommand_group: str | None = None,
        user_id: int = USER_ID,
        role_ids: Iterable[int] = (MEMBER_ROLE_ID,),
        permissions: int = DEFAULT_MEMBER_PERMISSIONS,
        guild_id: int = GUILD_ID,
        channel_id: int = CHANNEL_ID,
        attachments: dict[str, dict[str, Any]] | None = None,
        app_permissions: int = BOT_PERMISSIONS,
        option_types: dict[str, int] | None = None,
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload for `/name [group] [sub] options...`.

        Option types are inferred (str 3, bool 5, int 4, float 10); `attachments` maps option name to a payload
        from `add_attachment` (type 11, put into `resolved.attachments`); `option_types` overrides (e.g. 6 user).
        """
        opts: list[dict[str, Any]] = []
        for key, value in (options or {}).items():
            kind = (option_types or {}).get(key) or (
                5 if isinstance(value, bool) else 4 if isinstance(value, int) else 10 if isinstance(value, float)
                else 3)
            opts.append({"name": key, "type": kind, "value": str(value) if kind == 6 else value})
        resolved: dict[str, Any] = {}
        for key, attachment in (attachments or {}).items():
            opts.append({"name": key, "type": 11, "value": attachment["id"]})
            resolved.setdefault("attachments", {})[attachment["id"]] = attachment
        if subcommand is not None:
            opts = [{"name": subcommand, "type": 1, "options": opts}]
        if subcommand_group is not None:
            opts = [{"name": subcommand_group, "type": 2, "options": opts}]
        channel = self.channels.get(channel_id) or self._text_channel(channel_id, "unknown", 9)
        data: dict[str, Any] = {"id": str(self.command_id(name, guild_id)), "name": name, "type": 1,
                                "options": opts, "guild_id": str(guild_id)}
        if resolved:
            data["resolved"] = resolved
        return {
            "id": str(self.next_id()), "application_id": str(self.APPLICATION_ID), "type": 2, "data": data,
            "guild_id": str(guild_id), "channel_id": str(channel_id), "channel": dict(channel),
            "member": self.member_payload(user_id, role_ids, permissions=permissions),
            "token": f"interaction-token-{self.next_id()}", "version": 1,
            "app_permissions": str(app_permissions), "locale": "en-US", "guild_locale": "en-US",
            "attachment_size_limit": 10 * 1024 * 1024, "entitlements": [], "context": 0,
            "authorizing_integration_owners": {"0": str(guild_id)},
        }

    # ------------------------------------------------------------------ gateway test API
    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a DISPATCH event to every identified gateway session."""
        for session in list(self._sockets):
            if session.identified:
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

    # ------------------------------------------------------------------ CDN
    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        entry = self._attachments.get(int(request.match_info["id"]))
        if entry is None:
            return web.Response(status=404, text="Not Found")
        data, _filename, content_type = entry
        return web.Response(body=data, content_type=content_type)

    # ------------------------------------------------------------------ REST
    async def _rest(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        body, files = await self._read_body(request)
        self.requests.append(RecordedRequest(request.method, path, dict(request.query), body, files,
                                             dict(request.headers)))
        try:
            return await self._route(request, path, body, files)
        finally:
            await self._notify()

    async def _read_body(self, request: web.Request) -> tuple[Any, list[dict[str, Any]]]:
        if not request.can_read_body:
            return None, []
        if request.content_type.startswith("multipart/"):
            body: Any = None
            files: list[dict[str, Any]] = []
            reader = await request.multipart()
            async for part in reader:
                data = await part.read()  # type: ignore[union-attr]
                if part.name == "payload_json":
                    body = json.loads(data)
                else:
                    files.append({"field": part.name, "filename": part.filename,
                                  "content_type": part.headers.get("Content-Type"), "data": bytes(data)})
            return body, files
        raw = await request.read()
        return (json.loads(raw) if raw else None), []

    async def _route(self, request: web.Request, path: str, body: Any, files: list[dict[str, Any]]) -> web.Response:
        method = request.method
        for rule in self.faults:
            if rule.matches(method, path):
                rule.times -= 1
                return self._fault_response(rule)
        webhook = path.startswith(("/webhooks/", "/interactions/"))
        if not webhook and request.headers.get("Authorization") != f"Bot {self.token}":
            return _error(401, 0, "401: Unauthorized")
        for pattern, handler_name in _ROUTES:
            match = re.fullmatch(pattern, path)
            if match and handler_name.startswith(method.lower() + "_"):
                handler = getattr(self, handler_name)
                return await handler(request, body, files, *match.groups())
        return _error(404, 0, f"404: Not Found ({method} {path})")

    def _fault_response(self, rule: FaultRule) -> web.Response:
        if rule.status == 429:
            headers = {"Retry-After": str(max(1, int(rule.retry_after))), "X-RateLimit-Limit": "5",
                       "X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": str(rule.retry_after),
                       "X-RateLimit-Bucket": "fakebucket", "X-RateLimit-Scope": "user", "Via": "1.1 google"}
            if rule.is_global:
                headers["X-RateLimit-Global"] = "true"
            body = {"message": "You are being rate limited.", "retry_after": rule.retry_after,
                    "global": rule.is_global}
            return _json(body, status=429, headers=headers)
        return _error(rule.status, 0, f"{rule.status}: injected fault")

    # --- users, applications, gateway discovery
    async def get_gateway_bot(self, request: web.Request, body: Any, files: Any) -> web.Response:
        return _json({"url": self.gateway_url, "shards": 1, "session_start_limit": {
            "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}})

    async def get_me(self, request: web.Request, body: Any, files: Any) -> web.Response:
        return _json(self.users[self.BOT_USER_ID])

    async def get_application(self, request: web.Request, body: Any, files: Any) -> web.Response:
        return _json({
            "id": str(self.APPLICATION_ID), "name": "Framecast", "description": "", "icon": None,
            "bot_public": False, "bot_require_code_grant": False, "verify_key": "00" * 32, "flags": 0,
            "owner": self._user(1, "owner"), "team": None, "rpc_origins": [], "summary": "",
            "interactions_endpoint_url": None})

    async def put_global_commands(self, request: web.Request, body: Any, files: Any, app_id: str) -> web.Response:
        return _json(self._store_commands(None, body or []))

    async def put_guild_commands(self, request: web.Request, body: Any, files: Any, app_id: str,
                                 guild_id: str) -> web.Response:
        return _json(self._store_commands(int(guild_id), body or []))

    def _store_commands(self, guild_id: int | None, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        previous = {c["name"]: c["id"] for c in self.commands.get(guild_id, [])}
        stored = []
        for command in commands:
            entry = {"type": 1, "description": "", "options": [], "default_member_permissions": None,
                     "nsfw": False, **command, "id": previous.get(command["name"], str(self.next_id())),
                     "application_id": str(self.APPLICATION_ID), "version": str(self.next_id())}
            if guild_id is not None:
                entry["guild_id"] = str(guild_id)
            stored.append(entry)
        self.commands[guild_id] = stored
        return stored

    # --- interactions and webhooks
    async def post_interaction_callback(self, request: web.Request, body: Any, files: list[dict[str, Any]],
                                        interaction_id: str, token: str) -> web.Response:
        body = body or {}
        self.interaction_callbacks.setdefault(int(interaction_id), []).append(body)
        if len(self.interaction_callbacks[int(interaction_id)]) > 1:
            return _error(400, 40060, "Interaction has already been acknowledged.")
        kind = body.get("type")
        data = body.get("data") or {}
        flags = int(data.get("flags", 0))
        response: dict[str, Any] = {"interaction": {"id": interaction_id, "type": 2,
                                                    "response_message_loading": kind == 5,
                                                    "response_message_ephemeral": bool(flags & 64)}}
        if kind in (4, 5):
            channel_id = self._channel_of_interaction(interaction_id)
            message = self._create_message(channel_id, data if kind == 4 else {"content": "", "flags": flags | 128},
                                           files if kind == 4 else [], via="interaction")
            self._interaction_originals[token] = message.id
            response["interaction"]["response_message_id"] = str(message.id)
            response["resource"] = {"type": kind, "message": message.payload}
        elif kind is not None:
            response["resource"] = {"type": kind}
        return _json(response)

    def _channel_of_interaction(self, interaction_id: str) -> int:
        # The callback URL carries no channel; the dispatched INTERACTION_CREATE (recorded on dispatch) does.
        return self._interaction_channels.get(int(interaction_id), self.CHANNEL_ID)

    async def post_followup(self, request: web.Request, body: Any, files: list[dict[str, Any]], app_id: str,
                            token: str) -> web.Response:
        original = self.messages.get(self._interaction_originals.get(token, 0))
        channel_id = original.channel_id if original else self.CHANNEL_ID
        message = self._create_message(channel_id, body or {}, files, via="followup")
        return _json(message.payload)

    async def get_original(self, request: web.Request, body: Any, files: Any, app_id: str,
                           token: str) -> web.Response:
        message = self.messages.get(self._interaction_originals.get(token, 0))
        if message is None:
            return _error(404, 10008, "Unknown Message")
        return _json(message.payload)

    async def patch_original(self, request: web.Request, body: Any, files: list[dict[str, Any]], app_id: str,
                             token: str) -> web.Response:
        message = self.messages.get(self._interaction_originals.get(token, 0))
        if message is None:
            return _error(404, 10008, "Unknown Message")
        body = body or {}
        if "content" in body:
            message.content = body["content"] or ""
        if "embeds" in body:
            message.embeds = body["embeds"] or []
        if "allowed_mentions" in body:
            message.allowed_mentions = body["allowed_mentions"]
        message.flags &= ~128  # no longer "thinking"
        message.files.extend(files)
        message.payload.update(content=message.content, embeds=message.embeds, flags=message.flags,
                               edited_timestamp=_iso())
        return _json(message.payload)

    # --- channels, messages, threads
    def _channel_error(self, channel_id: int) -> web.Response | None:
        if channel_id in self.deleted_channels or channel_id not in self.channels:
            return _error(404, 10003, "Unknown Channel")
        return None

    async def get_channel(self, request: web.Request, body: Any, files: Any, channel_id: str) -> web.Response:
        return self._channel_error(int(channel_id)) or _json(self.channels[int(channel_id)])

    async def post_message(self, request: web.Request, body: Any, files: list[dict[str, Any]],
                           channel_id: str) -> web.Response:
        cid = int(channel_id)
        if (error := self._channel_error(cid)) is not None:
            return error
        if cid in self.forbidden_send_channels:
            return _error(403, 50013, "Missing Permissions")
        body = body or {}
        nonce = body.get("nonce")
        if nonce is not None and body.get("enforce_nonce"):
            seen = self._nonces.get((cid, str(nonce)))
            if seen is not None and time.monotonic() - seen[0] < 300 and seen[1] in self.messages:
                return _json(self.messages[seen[1]].payload)
        message = self._create_message(cid, body, files, via="channel")
        if nonce is not None and body.get("enforce_nonce"):
            self._nonces[(cid, str(nonce))] = (time.monotonic(), message.id)
        return _json(message.payload)

    async def get_messages(self, request: web.Request, body: Any, files: Any, channel_id: str) -> web.Response:
        cid = int(channel_id)
        if (error := self._channel_error(cid)) is not None:
            return error
        limit = int(request.query.get("limit", 50))
        before = int(request.query.get("before", 0)) or None
        after = int(request.query.get("after", 0)) or None
        found = [m for m in self.messages_in(cid) if not m.ephemeral
                 and (before is None or m.id < before) and (after is None or m.id > after)]
        found.sort(key=lambda m: m.id, reverse=True)
        return _json([m.payload for m in found[:limit]])

    async def post_thread_on_message(self, request: web.Request, body: Any, files: Any, channel_id: str,
                                     message_id: str) -> web.Response:
        cid, mid = int(channel_id), int(message_id)
        if (error := self._channel_error(cid)) is not None:
            return error
        if None in self.forbidden_thread_channels or cid in self.forbidden_thread_channels:
            return _error(403, 50013, "Missing Permissions")
        if mid not in self.messages or self.messages[mid].channel_id != cid:
            return _error(404, 10008, "Unknown Message")
        if mid in self.threads:
            return _error(400, 160004, "A thread has already been created for this message")
        return _json(self._create_thread(cid, mid, body or {}, thread_type=11))

    async def post_thread(self, request: web.Request, body: Any, files: Any, channel_id: str) -> web.Response:
        cid = int(channel_id)
        if (error := self._channel_error(cid)) is not None:
            return error
        if None in self.forbidden_thread_channels or cid in self.forbidden_thread_channels:
            return _error(403, 50013, "Missing Permissions")
        body = body or {}
        return _json(self._create_thread(cid, self.next_id(), body, thread_type=int(body.get("type", 12))))

    def _create_thread(self, parent_id: int, thread_id: int, body: dict[str, Any], *, thread_type: int) -> dict[str, Any]:
        thread = {"id": str(thread_id), "type": thread_type, "guild_id": str(self.GUILD_ID),
                  "parent_id": str(parent_id), "owner_id": str(self.BOT_USER_ID), "name": body.get("name", "thread"),
                  "last_message_id": None, "message_count": 0, "member_count": 1, "rate_limit_per_user": 0,
                  "flags": 0, "thread_metadata": {"archived": False, "locked": False,
                                                  "auto_archive_duration": body.get("auto_archive_duration", 1440),
                                                  "archive_timestamp": _iso()}}
        self.threads[thread_id] = thread
        self.channels[thread_id] = thread
        return thread

    async def post_dm_channel(self, request: web.Request, body: Any, files: Any) -> web.Response:
        recipient = int((body or {}).get("recipient_id", 0))
        for channel in self.channels.values():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == str(recipient):
                return _json(channel)
        channel_id = self.next_id()
        user = self.users.get(recipient) or self._user(recipient, f"user{recipient % 1000}")
        self.channels[channel_id] = {"id": str(channel_id), "type": 1, "recipients": [user], "last_message_id": None}
        return _json(self.channels[channel_id])

    async def get_user(self, request: web.Request, body: Any, files: Any, user_id: str) -> web.Response:
        user = self.users.get(int(user_id))
        return _json(user) if user is not None else _error(404, 10013, "Unknown User")

    async def get_guild(self, request: web.Request, body: Any, files: Any, guild_id: str) -> web.Response:
        if int(guild_id) != self.GUILD_ID:
            return _error(404, 10004, "Unknown Guild")
        return _json(self.guild_payload())

    async def get_member(self, request: web.Request, body: Any, files: Any, guild_id: str,
                         user_id: str) -> web.Response:
        uid = int(user_id)
        if int(guild_id) != self.GUILD_ID or uid not in self.users:
            return _error(404, 10007, "Unknown Member")
        roles = {self.USER_ID: [self.MEMBER_ROLE_ID], self.MODERATOR_ID: [self.MODERATOR_ROLE_ID]}.get(uid, [])
        return _json(self.member_payload(uid, roles))

    def _create_message(self, channel_id: int, body: dict[str, Any], files: list[dict[str, Any]], *,
                        via: str) -> RecordedMessage:
        message_id = self.next_id()
        attachments = []
        for upload in files:
            attachment = self.add_attachment(upload["data"], upload["filename"] or "file",
                                             upload["content_type"] or "application/octet-stream")
            attachment.pop("ephemeral")
            attachments.append(attachment)
        channel = self.channels.get(channel_id, {})
        payload = {
            "id": str(message_id), "channel_id": str(channel_id), "type": 0, "content": body.get("content") or "",
            "author": self.users[self.BOT_USER_ID], "embeds": body.get("embeds") or [], "attachments": attachments,
            "timestamp": _iso(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [], "mention_roles": [], "pinned": False, "flags": int(body.get("flags") or 0),
            "components": [],
        }
        if channel.get("guild_id"):
            payload["guild_id"] = channel["guild_id"]
        if body.get("nonce") is not None:
            payload["nonce"] = body["nonce"]
        message = RecordedMessage(message_id, channel_id, payload["content"], body.get("allowed_mentions"),
                                  payload["embeds"], files, body.get("nonce"), payload["flags"], via, payload)
        self.messages[message_id] = message
        return message


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with Content-Type exactly `application/json`: discord.py compares the header verbatim."""
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={**(headers or {}), "Content-Type": "application/json"})


def _error(status: int, code: int, message: str) -> web.Response:
    return _json({"message": message, "code": code}, status=status)


_ROUTES: list[tuple[str, str]] = [
    (r"/gateway/bot", "get_gateway_bot"),
    (r"/users/@me", "get_me"),
    (r"/oauth2/applications/@me", "get_application"),
    (r"/applications/(\d+)/commands", "put_global_commands"),
    (r"/applications/(\d+)/guilds/(\d+)/commands", "put_guild_commands"),
    (r"/interactions/(\d+)/([^/]+)/callback", "post_interaction_callback"),
    (r"/webhooks/(\d+)/([^/]+)", "post_followup"),
    (r"/webhooks/(\d+)/([^/]+)/messages/@original", "get_original"),
    (r"/webhooks/(\d+)/([^/]+)/messages/@original", "patch_original"),
    (r"/channels/(\d+)", "get_channel"),
    (r"/channels/(\d+)/messages", "post_message"),
    (r"/channels/(\d+)/messages", "get_messages"),
    (r"/channels/(\d+)/messages/(\d+)/threads", "post_thread_on_message"),
    (r"/channels/(\d+)/threads", "post_thread"),
    (r"/users/@me/channels", "post_dm_channel"),
    (r"/users/(\d+)", "get_user"),
    (r"/guilds/(\d+)", "get_guild"),
    (r"/guilds/(\d+)/members/(\d+)", "get_member"),
]


class _GatewaySession:
    """One websocket connection: HELLO, IDENTIFY/RESUME, heartbeats, dispatches."""

    def __init__(self, fake: FakeDiscord, ws: web.WebSocketResponse) -> None:
        self.fake = fake
        self.ws = ws
        self.identified = False
        self.state: _SessionState | None = None

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
        session_id = f"session-{fake.next_id()}"
        self.state = _SessionState(session_id)
        fake._session_states[session_id] = self.state
        self.identified = True
        resume_url = fake.base_url.replace("http://", "ws://") + "/gateway/resume"
        await self.send_dispatch("READY", {
            "v": 10, "user": fake.users[fake.BOT_USER_ID], "guilds": [{"id": str(fake.GUILD_ID), "unavailable": True}],
            "session_id": session_id, "resume_gateway_url": resume_url,
            "application": {"id": str(fake.APPLICATION_ID), "flags": 0}, "private_channels": [],
            "relationships": [], "user_settings": {}, "presences": [], "geo_ordered_rtc_regions": [],
            "session_type": "normal", "auth": {}, "_trace": ["fake-gateway"]})
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
        self.identified = True
        for frame in [f for f in state.events if f["s"] > int(data.get("seq") or 0)]:
            await self.send(frame)
        await self.send_dispatch("RESUMED", {"_trace": ["fake-gateway"]})
        await fake._notify()


@dataclass
class _SessionState:
    session_id: str
    sequence: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
