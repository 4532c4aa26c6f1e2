"""`ServerAdmin`: a moderator's change to a server's settings, and its audit line, in one transaction.

The `/framecast` cogs call one method per change and render the answer; the change and the
"<@moderator> did X" audit event commit together (or not at all), so the audit trail never misses a
change nor describes one that was refused. The SQL is in storage/guild_settings.py and bot/audit.py.
Prompt rules and bans are `PolicyService`'s, grants and resets `QuotaService`'s: they audit the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from bot.audit import AuditService
from bot.clock import Clock
from bot.errors import Refusal
from bot.i18n import _
from bot.quota.service import credits_text
from storage.database import Connection, Database
from storage.guild_settings import GuildSettingsStore


class ServerAdmin:
    """Audited changes to one server's settings, costs, budgets, families and channel allowlist."""

    def __init__(self, db: Database, clock: Clock, store: GuildSettingsStore, *,
                 wake_poller: Callable[[], None] | None = None, audit: AuditService | None = None) -> None:
        self.db = db
        self.clock = clock
        self.store = store
        self.wake_poller = wake_poller  # the poller posts the audit event; wake it rather than wait
        self.audit = audit or AuditService(db, clock)

    @asynccontextmanager
    async def _audited(self, guild_id: int, actor_id: int, kind: str, text: str, *,
                       target_id: int | None = None) -> AsyncIterator[Connection]:
        """A transaction for one change; its audit event ("<@actor> {text}") is added if the change raised
        nothing, and the whole is rolled back otherwise."""
        now = self.clock.now()
        async with self.db.transaction() as conn:
            yield conn
            await self.audit.record(conn=conn, guild_id=guild_id, kind=kind, actor_id=actor_id, target_id=target_id,
                                    text=f"<@{actor_id}> {text}", now=now)
        if self.wake_poller is not None:
            self.wake_poller()

    # --- server-wide settings ---------------------------------------------------------------------

    async def update_settings(self, guild_id: int, actor_id: int, fields: Mapping[str, Any], said: str) -> None:
        """Change `guild_settings` columns (None puts one back to the bot's default); `said` is the audit text."""
        async with self._audited(guild_id, actor_id, "settings", f"{said}.") as conn:
            await self.store.update(guild_id, fields, now=self.clock.now(), conn=conn)

    async def set_family_enabled(self, guild_id: int, actor_id: int, family: str, enabled: bool) -> None:
        state = "on" if enabled else "off"
        async with self._audited(guild_id, actor_id, "family", f"turned /{family} {state}.") as conn:
            await self.store.set_family_enabled(guild_id, family, enabled, conn=conn)

    # --- costs ------------------------------------------------------------------------------------

    async def set_cost(self, guild_id: int, actor_id: int, cost_key: str, credits: int) -> None:
        text = f"set the cost of {cost_key} to {credits_text(credits)}."
        async with self._audited(guild_id, actor_id, "cost", text) as conn:
            await self.store.set_cost(guild_id, cost_key, credits, conn=conn)

    async def reset_cost(self, guild_id: int, actor_id: int, cost_key: str) -> None:
        async with self._audited(guild_id, actor_id, "cost", f"reset the cost of {cost_key} to the default.") as conn:
            await self.store.clear_cost(guild_id, cost_key, conn=conn)

    # --- budgets ----------------------------------------------------------------------------------

    async def set_role_budget(self, guild_id: int, actor_id: int, role_id: int, credits: int | None) -> None:
        """`credits` None = unlimited for members with the role."""
        text = f"set the budget of <@&{role_id}> to {credits_text(credits)}."
        async with self._audited(guild_id, actor_id, "budget", text) as conn:
            await self.store.set_role_budget(guild_id, role_id, credits, conn=conn)

    async def remove_role_budget(self, guild_id: int, actor_id: int, role_id: int) -> None:
        """Refusal("not_found") when the role has no budget (nothing written, nothing audited)."""
        async with self._audited(guild_id, actor_id, "budget", f"removed the budget of <@&{role_id}>.") as conn:
            if not await self.store.remove_role_budget(guild_id, role_id, conn=conn):
                raise Refusal("not_found", _("<@&{role_id}> has no budget here.", role_id=role_id))

    async def set_member_budget(self, guild_id: int, actor_id: int, user_id: int, credits: int | None) -> None:
        """`credits` None = unlimited; beats the member's roles."""
        text = f"set the budget of <@{user_id}> to {credits_text(credits)}."
        async with self._audited(guild_id, actor_id, "budget", text, target_id=user_id) as conn:
            await self.store.set_member_override(guild_id, user_id, credits, conn=conn)

    async def remove_member_budget(self, guild_id: int, actor_id: int, user_id: int) -> None:
        """Refusal("not_found") when the member has no budget of their own."""
        text = f"removed the own budget of <@{user_id}>."
        async with self._audited(guild_id, actor_id, "budget", text, target_id=user_id) as conn:
            if not await self.store.remove_member_override(guild_id, user_id, conn=conn):
                raise Refusal("not_found", _("<@{user_id}> has no budget of their own here.", user_id=user_id))

    # --- channel allowlist ------------------------------------------------------------------------

    async def allow_channel(self, guild_id: int, actor_id: int, channel_id: int) -> list[int]:
        """Add a channel to the allowlist; returns the allowlist after the change."""
        text = f"allowed video commands in <#{channel_id}>."
        async with self._audited(guild_id, actor_id, "channels", text) as conn:
            await self.store.allow_channel(guild_id, channel_id, conn=conn)
            return await self.store.allowed_channels(guild_id, conn=conn)

    async def disallow_channel(self, guild_id: int, actor_id: int, channel_id: int) -> list[int]:
        """Remove a channel from the allowlist (Refusal("not_found") if it is not on it); returns the rest."""
        text = f"disallowed video commands in <#{channel_id}>."
        async with self._audited(guild_id, actor_id, "channels", text) as conn:
            if not await self.store.disallow_channel(guild_id, channel_id, conn=conn):
                raise Refusal("not_found", _("<#{channel_id}> is not on the allowed list.", channel_id=channel_id))
            return await self.store.allowed_channels(guild_id, conn=conn)
