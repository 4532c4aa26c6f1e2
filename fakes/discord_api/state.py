"""The fake's world and records: constants, recorded requests/messages, fault rules, and
`DiscordState` (ids, the guild, channels, users, knobs, assertion helpers, payload builders).

The REST and gateway halves (`rest.py`, `gateway.py`) read and change this state."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from fakes.discord_api.gateway import _GatewaySession, _SessionState

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
    edits: int = 0  # PATCHes of this message (a job card's status changes)

    @property
    def components(self) -> list[dict[str, Any]]:
        return list(self.payload.get("components") or [])

    @property
    def custom_ids(self) -> list[str]:
        """Every button's custom id, row by row."""
        return [c["custom_id"] for row in self.components for c in row.get("components", []) if "custom_id" in c]

    @property
    def embed_text(self) -> str:
        """The first embed as one string (title, description, fields, footer), for assertions."""
        if not self.embeds:
            return ""
        embed = self.embeds[0]
        parts = [embed.get("title", ""), embed.get("description", "")]
        parts += [f"{f.get('name', '')}: {f.get('value', '')}" for f in embed.get("fields", [])]
        parts.append((embed.get("footer") or {}).get("text", ""))
        return "\n".join(parts)

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


class DiscordState:
    """Everything the fake knows and records. Ids are stable class attributes."""

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
        self.deleted_messages: set[int] = set()
        self.member_messages: dict[int, dict[str, Any]] = {}  # members' messages, readable by the bot
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
        data: dict[str, Any] = {"id": str(self.command_id(name, guild_id)), "name": name, "type": 1,
                                "options": opts, "guild_id": str(guild_id)}
        if resolved:
            data["resolved"] = resolved
        return self.interaction(2, data, user_id=user_id, role_ids=role_ids, permissions=permissions,
                                guild_id=guild_id, channel_id=channel_id, app_permissions=app_permissions)

    def interaction(
        self, kind: int, data: dict[str, Any], *, user_id: int = USER_ID, role_ids: Iterable[int] = (MEMBER_ROLE_ID,),
        permissions: int = DEFAULT_MEMBER_PERMISSIONS, guild_id: int = GUILD_ID, channel_id: int = CHANNEL_ID,
        app_permissions: int = BOT_PERMISSIONS, locale: str = "en-US", message: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """An INTERACTION_CREATE payload of any type (2 command, 3 component, 5 modal submit)."""
        channel = self.channels.get(channel_id) or self._text_channel(channel_id, "unknown", 9)
        payload: dict[str, Any] = {
            "id": str(self.next_id()), "application_id": str(self.APPLICATION_ID), "type": kind, "data": data,
            "guild_id": str(guild_id), "channel_id": str(channel_id), "channel": dict(channel),
            "member": self.member_payload(user_id, role_ids, permissions=permissions),
            "token": f"interaction-token-{self.next_id()}", "version": 1,
            "app_permissions": str(app_permissions), "locale": locale, "guild_locale": "en-US",
            "attachment_size_limit": 10 * 1024 * 1024, "entitlements": [], "context": 0,
            "authorizing_integration_owners": {"0": str(guild_id)},
        }
        if message is not None:
            payload["message"] = message
        return payload

    def button_click(self, message_id: int, custom_id: str, **kwargs: Any) -> dict[str, Any]:
        """A click on a button of a message the bot posted (type 3, component type 2). A button the
        message does not carry (now) is added to the payload's copy: a client showing an older version
        of the message, or a message from before a change, can still send that click."""
        message = self.messages[message_id]
        kwargs.setdefault("channel_id", message.channel_id)
        payload = dict(message.payload)
        if custom_id not in message.custom_ids:
            payload["components"] = [*message.components, {"type": 1, "components": [
                {"type": 2, "style": 2, "label": "old", "custom_id": custom_id}]}]
        return self.interaction(3, {"custom_id": custom_id, "component_type": 2}, message=payload, **kwargs)

    def modal_submit(self, modal: dict[str, Any], values: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """The submit (type 5) of a modal the bot opened (`modal`: the type-9 callback's data); `values`
        maps a component's custom id to its text (text input) or list of values (select)."""
        def answer(component: dict[str, Any]) -> dict[str, Any]:
            value = values.get(component.get("custom_id", ""))
            if component["type"] == 4:
                return {"type": 4, "custom_id": component["custom_id"], "value": value or component.get("value", "")}
            return {"type": component["type"], "custom_id": component["custom_id"], "values": list(value or [])}

        rows = []
        for row in modal["components"]:
            if row["type"] == 18:  # a label around one component
                rows.append({"type": 18, "id": row.get("id", 0), "component": answer(row["component"])})
            else:
                rows.append({"type": 1, "components": [answer(c) for c in row["components"]]})
        return self.interaction(5, {"custom_id": modal["custom_id"], "components": rows}, **kwargs)

    def user_message(self, channel_id: int, content: str, attachments: Iterable[dict[str, Any]] = (),
                     user_id: int = USER_ID) -> dict[str, Any]:
        """A member's message (as Discord would resolve it for a message command)."""
        message_id = self.next_id()
        files = [{k: v for k, v in a.items() if k != "ephemeral"} for a in attachments]
        payload = {"id": str(message_id), "channel_id": str(channel_id), "guild_id": str(self.GUILD_ID), "type": 0,
                   "content": content, "author": self.users.get(user_id) or self._user(user_id, "member"),
                   "embeds": [], "attachments": files, "timestamp": _iso(), "edited_timestamp": None, "tts": False,
                   "mention_everyone": False, "mentions": [], "mention_roles": [], "pinned": False, "flags": 0,
                   "components": []}
        self.member_messages[message_id] = payload
        return payload

    def message_command(self, name: str, target: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """A message context-menu command (type 2, command type 3) on `target` (resolved with it)."""
        data = {"id": str(self.command_id(name, self.GUILD_ID)), "name": name, "type": 3,
                "target_id": target["id"], "guild_id": str(self.GUILD_ID),
                "resolved": {"messages": {target["id"]: target}}}
        kwargs.setdefault("channel_id", int(target["channel_id"]))
        return self.interaction(2, data, **kwargs)
