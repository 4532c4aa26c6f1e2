"""May this member make this video here? One place answers, before anything is spent.

Checks run cheapest and least surprising first: server paused, member banned, channel not on the
allowlist, family turned off, prompt breaks a rule. Each "no" is a Refusal with a sentence the
member can act on; a blocked prompt never echoes the matched word (that would teach the way around
it) but is logged and put on the audit trail for moderators.

Also the moderator-side writes that belong with policy (rules, bans), each in one transaction with
its audit event.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from bot import audit
from bot.clock import Clock
from bot.errors import Refusal
from bot.i18n import _
from bot.moderation.rules import Match, first_match, validate
from storage.database import Database
from storage.guild_settings import GuildSettingsStore, PromptRule
from storage.snapshot import MemberSnapshot, read_snapshot

log = logging.getLogger(__name__)

MAX_CHANNELS_NAMED = 10  # a refusal lists at most this many allowed channels


class RequesterLike(Protocol):
    """What policy needs of bot.jobs.service.Requester (plain ids, no Discord objects)."""

    @property
    def guild_id(self) -> int: ...

    @property
    def channel_id(self) -> int: ...

    @property
    def user_id(self) -> int: ...

    @property
    def role_ids(self) -> Sequence[int]: ...

    @property
    def parent_channel_id(self) -> int | None: ...


def _family_name(family: object) -> str:
    value = getattr(family, "value", family)
    return str(value)


def _what_to_check(family_or_spec: object, prompt: str | None) -> tuple[str, list[str]]:
    """(family name, member-written prompts) from either calling convention of `check`."""
    if prompt is not None:
        return _family_name(family_or_spec), [prompt]
    spec_prompt = getattr(family_or_spec, "prompt", None)
    if not isinstance(spec_prompt, str):
        raise TypeError("check() needs a prompt, or a JobSpec as its second argument")
    params = getattr(family_or_spec, "params", {}) or {}
    shots = [shot for shot in params.get("multi_prompt") or [] if isinstance(shot, str)]
    return _family_name(getattr(family_or_spec, "family")), [spec_prompt, *shots]  # noqa: B009 (typed object)


class PolicyService:
    """Server-level permission to generate, and the moderator actions that change it."""

    def __init__(self, db: Database, clock: Clock, store: GuildSettingsStore | None = None) -> None:
        self.db = db
        self.clock = clock
        self.store = store or GuildSettingsStore(db)
        self.audit = audit.AuditService(db, clock)

    async def check(self, requester: RequesterLike, family: object, prompt: str | None = None, *,
                    snapshot: MemberSnapshot | None = None) -> None:
        """Return if the request may go ahead; raise Refusal saying why not.

        Call as `check(requester, family, prompt)`, or `check(requester, job_spec)`: with a JobSpec
        its prompt and each multi-shot prompt are checked (not the negative prompt, which names
        what the member wants kept out). `snapshot`: the server's settings already read for this
        command (one statement for policy, price and budget); read here when not given.
        """
        family_name, prompts = _what_to_check(family, prompt)
        guild_id = requester.guild_id
        if snapshot is None:
            snapshot = await read_snapshot(self.db, guild_id, requester.user_id, requester.role_ids)

        if snapshot.settings.paused:
            raise Refusal("paused", _("Video making is paused on this server right now; try again later."))

        ban = snapshot.ban
        if ban is not None:
            if ban.reason:
                raise Refusal("banned", _("You are not allowed to make videos on this server. Reason: {reason}",
                                          reason=audit.quote(ban.reason)))
            raise Refusal("banned", _("You are not allowed to make videos on this server."))

        allowed = snapshot.allowed_channels
        if allowed and not {requester.channel_id, requester.parent_channel_id} & set(allowed):
            named = ", ".join(f"<#{channel_id}>" for channel_id in allowed[:MAX_CHANNELS_NAMED])
            if len(allowed) > MAX_CHANNELS_NAMED:
                raise Refusal("channel", _("Videos can only be made in {channels} (and {more} more).",
                                           channels=named, more=len(allowed) - MAX_CHANNELS_NAMED))
            raise Refusal("channel", _("Videos can only be made in {channels}.", channels=named))

        if not snapshot.is_family_enabled(family_name):
            raise Refusal("family", _("/{family} is turned off on this server.", family=family_name))

        rules = snapshot.prompt_rules
        for text in prompts:
            match = first_match(rules, text)
            if match is not None:
                await self._record_block(requester, family_name, text, match)
                raise Refusal(
                    "prompt",
                    _("Your prompt contains a word or phrase this server does not allow. Please rephrase it."),
                )

    async def _record_block(self, requester: RequesterLike, family: str, prompt: str, match: Match) -> None:
        log.info(
            "prompt blocked: guild=%s user=%s channel=%s family=%s rule=%s (%s) prompt=%r",
            requester.guild_id, requester.user_id, requester.channel_id, family,
            match.rule_id, match.kind, prompt[:300],
        )
        await self.audit.record(
            guild_id=requester.guild_id,
            kind="prompt_blocked",
            actor_id=requester.user_id,
            target_id=requester.user_id,
            text=(
                f"Blocked a /{family} prompt from <@{requester.user_id}> in <#{requester.channel_id}> "
                f"(rule #{match.rule_id}, {match.kind}): \u201c{audit.quote(prompt)}\u201d"
            ),
        )

    async def test_prompt(self, guild_id: int, prompt: str) -> Match | None:
        """Which rule would block this prompt (for moderators trying their rules out)."""
        return first_match(await self.store.prompt_rules(guild_id), prompt)

    # --- moderator actions ------------------------------------------------------------------

    async def add_rule(self, guild_id: int, kind: str, pattern: str, *, actor_id: int) -> PromptRule:
        """Validate and store a rule; InvalidRule (with a sentence) if it cannot be used."""
        cleaned = validate(kind, pattern)
        now = self.clock.now()
        async with self.db.transaction() as conn:
            rule = await self.store.add_prompt_rule(guild_id, kind, cleaned, created_by=actor_id, now=now, conn=conn)
            await self.audit.record(
                conn=conn, guild_id=guild_id, kind="rule_added", actor_id=actor_id, now=now,
                text=f"<@{actor_id}> added prompt rule #{rule.id} ({kind}).",
            )
        return rule

    async def remove_rule(self, guild_id: int, rule_id: int, *, actor_id: int) -> bool:
        now = self.clock.now()
        async with self.db.transaction() as conn:
            removed = await self.store.remove_prompt_rule(guild_id, rule_id, conn=conn)
            if removed:
                await self.audit.record(
                    conn=conn, guild_id=guild_id, kind="rule_removed", actor_id=actor_id, now=now,
                    text=f"<@{actor_id}> removed prompt rule #{rule_id}.",
                )
        return removed

    async def ban(self, guild_id: int, user_id: int, *, reason: str | None, actor_id: int) -> None:
        now = self.clock.now()
        async with self.db.transaction() as conn:
            await self.store.ban(guild_id, user_id, reason=reason, banned_by=actor_id, now=now, conn=conn)
            why = f": {audit.quote(reason)}" if reason else "."
            await self.audit.record(
                conn=conn, guild_id=guild_id, kind="ban", actor_id=actor_id, target_id=user_id, now=now,
                text=f"<@{actor_id}> banned <@{user_id}> from making videos{why}",
            )

    async def unban(self, guild_id: int, user_id: int, *, actor_id: int) -> bool:
        now = self.clock.now()
        async with self.db.transaction() as conn:
            removed = await self.store.unban(guild_id, user_id, conn=conn)
            if removed:
                await self.audit.record(
                    conn=conn, guild_id=guild_id, kind="unban", actor_id=actor_id, target_id=user_id, now=now,
                    text=f"<@{actor_id}> lifted the video ban on <@{user_id}>.",
                )
        return removed
