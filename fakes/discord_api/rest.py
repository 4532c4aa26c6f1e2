"""The fake REST API v10 (+ the attachment CDN): body parsing, fault rules, auth, the route table
and one handler per endpoint discord.py calls."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from aiohttp import web

from fakes.discord_api.state import (
    DiscordState, FaultRule, RecordedMessage, RecordedRequest, _iso,
)


class RestMixin(DiscordState):
    """REST routing and handlers; handler names are `<method>_<what>`, looked up from `_ROUTES`."""

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
        _edit_text(message, body)
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

    async def get_message(self, request: web.Request, body: Any, files: Any, channel_id: str,
                          message_id: str) -> web.Response:
        """One message: a member's (`user_message`) or one the bot posted."""
        cid, mid = int(channel_id), int(message_id)
        if (error := self._channel_error(cid)) is not None:
            return error
        posted = self.messages.get(mid)
        payload = self.member_messages.get(mid) or (posted.payload if posted is not None else None)
        if payload is None or int(payload["channel_id"]) != cid or mid in self.deleted_messages:
            return _error(404, 10008, "Unknown Message")
        return _json(payload)

    async def patch_message(self, request: web.Request, body: Any, files: list[dict[str, Any]], channel_id: str,
                            message_id: str) -> web.Response:
        """Edit a message the bot posted (a job card): content, embeds, components."""
        cid, mid = int(channel_id), int(message_id)
        if (error := self._channel_error(cid)) is not None:
            return error
        message = self.messages.get(mid)
        if message is None or message.channel_id != cid or mid in self.deleted_messages:
            return _error(404, 10008, "Unknown Message")
        body = body or {}
        _edit_text(message, body)
        if "components" in body:
            message.payload["components"] = body["components"] or []
        message.edits += 1
        message.payload.update(content=message.content, embeds=message.embeds, edited_timestamp=_iso())
        return _json(message.payload)

    async def delete_message(self, request: web.Request, body: Any, files: Any, channel_id: str,
                             message_id: str) -> web.Response:
        mid = int(message_id)
        if mid not in self.messages or mid in self.deleted_messages:
            return _error(404, 10008, "Unknown Message")
        self.deleted_messages.add(mid)
        return web.Response(status=204)

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
            "components": body.get("components") or [],
        }
        if channel.get("guild_id"):
            payload["guild_id"] = channel["guild_id"]
        if body.get("nonce") is not None:
            payload["nonce"] = body["nonce"]
        message = RecordedMessage(message_id, channel_id, payload["content"], body.get("allowed_mentions"),
                                  payload["embeds"], files, body.get("nonce"), payload["flags"], via, payload)
        self.messages[message_id] = message
        return message


def _edit_text(message: RecordedMessage, body: dict[str, Any]) -> None:
    """An edit's content and embeds, as Discord applies them: a field left out stays as it was."""
    if "content" in body:
        message.content = body["content"] or ""
    if "embeds" in body:
        message.embeds = body["embeds"] or []


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
    (r"/channels/(\d+)/messages/(\d+)", "get_message"),
    (r"/channels/(\d+)/messages/(\d+)", "patch_message"),
    (r"/channels/(\d+)/messages/(\d+)", "delete_message"),
    (r"/channels/(\d+)/messages/(\d+)/threads", "post_thread_on_message"),
    (r"/channels/(\d+)/threads", "post_thread"),
    (r"/users/@me/channels", "post_dm_channel"),
    (r"/users/(\d+)", "get_user"),
    (r"/guilds/(\d+)", "get_guild"),
    (r"/guilds/(\d+)/members/(\d+)", "get_member"),
]
