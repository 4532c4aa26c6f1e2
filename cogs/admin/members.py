"""`/framecast budget|credits`, `usage`, `jobs` and `cancel`: one member's or role's credits and jobs."""

from __future__ import annotations

from typing import Optional

import discord
from discord import app_commands

from bot import audit
from bot.quota.service import credits_text
from bot.validation import InputError
from cogs.admin.common import (
    JOBS_SHOWN, LEDGER_SHOWN, MAX_CREDITS, AdminBase, Credits, _budget_value, _clip, _ledger_line, _reply,
)
from cogs.interaction import guild_id_of, member_role_ids
from cogs.jobs import list_line
from cogs.quota import balance_lines

budget, credits = AdminBase.budget, AdminBase.credits


class MemberCommands(AdminBase):
    """Role and member budgets, credit grants and resets, a member's usage and jobs."""

    # --- budgets ------------------------------------------------------------------------------

    @budget.command(name="role", description="Daily credits for members with a role (the highest role wins)")
    @app_commands.describe(credits="Credits per rolling 24 hours", unlimited="No limit for this role")
    async def budget_role(
        self, interaction: discord.Interaction, role: discord.Role,
        credits: Optional[Credits] = None, unlimited: bool = False,
    ) -> None:
        value = _budget_value("credits", credits, unlimited)
        if role.is_default():  # never in a member's role list, so its budget would never apply
            raise InputError("role", "for everyone, use `/framecast settings set daily_credits`.")
        await self.services.admin.set_role_budget(guild_id_of(interaction), interaction.user.id, role.id, value)
        await _reply(interaction, f"Done: members with <@&{role.id}> get {credits_text(value)} per day.")

    @budget.command(name="role-remove", description="Remove a role's budget")
    async def budget_role_remove(self, interaction: discord.Interaction, role: discord.Role) -> None:
        await self.services.admin.remove_role_budget(guild_id_of(interaction), interaction.user.id, role.id)
        await _reply(interaction, f"<@&{role.id}> no longer has its own budget.")

    @budget.command(name="member", description="Daily credits for one member (beats their roles)")
    @app_commands.describe(credits="Credits per rolling 24 hours", unlimited="No limit for this member")
    async def budget_member(
        self, interaction: discord.Interaction, member: discord.User,
        credits: Optional[Credits] = None, unlimited: bool = False,
    ) -> None:
        value = _budget_value("credits", credits, unlimited)
        await self.services.admin.set_member_budget(guild_id_of(interaction), interaction.user.id, member.id, value)
        await _reply(interaction, f"Done: <@{member.id}> gets {credits_text(value)} per day.")

    @budget.command(name="member-remove", description="Remove a member's own budget (their roles apply again)")
    async def budget_member_remove(self, interaction: discord.Interaction, member: discord.User) -> None:
        await self.services.admin.remove_member_budget(guild_id_of(interaction), interaction.user.id, member.id)
        await _reply(interaction, f"<@{member.id}> is back to their roles' budget.")

    @budget.command(name="list", description="Every role and member budget")
    async def budget_list(self, interaction: discord.Interaction) -> None:
        guild_id = guild_id_of(interaction)
        roles = await self.store.role_budgets(guild_id)
        members = await self.store.member_overrides(guild_id)
        lines = ["**Budgets** (per rolling 24 hours)"]
        lines += [f"<@&{role_id}>: {credits_text(limit.credits)}" for role_id, limit in roles.items()]
        lines += [f"<@{user_id}>: {credits_text(limit.credits)}" for user_id, limit in members.items()]
        if len(lines) == 1:
            lines.append("None: everyone gets the server's daily credits (`/framecast settings show`).")
        await _reply(interaction, _clip(lines))

    # --- credits, usage, jobs -----------------------------------------------------------------

    @credits.command(name="grant", description="Give a member extra credits for the next 24 hours")
    async def credits_grant(
        self, interaction: discord.Interaction, member: discord.User,
        amount: app_commands.Range[int, 1, MAX_CREDITS], note: Optional[app_commands.Range[str, 1, 200]] = None,
    ) -> None:
        await self.services.quota.grant(guild_id_of(interaction), member.id, amount, actor_id=interaction.user.id,
                                        note=note)
        self._wake_audit_poster()
        await _reply(interaction, f"Gave <@{member.id}> {credits_text(amount)} for the next 24 hours.")

    @credits.command(name="reset", description="Forgive a member's usage so far (their budget is full again)")
    async def credits_reset(
        self, interaction: discord.Interaction, member: discord.User,
        note: Optional[app_commands.Range[str, 1, 200]] = None,
    ) -> None:
        await self.services.quota.reset(guild_id_of(interaction), member.id, actor_id=interaction.user.id, note=note)
        self._wake_audit_poster()
        await _reply(interaction, f"Reset the usage of <@{member.id}>; videos in progress keep their holds.")

    @app_commands.command(name="usage", description="A member's credits, as /quota shows them to the member")
    async def usage(self, interaction: discord.Interaction, member: discord.User) -> None:
        guild_id = guild_id_of(interaction)
        balance = await self.services.quota.balance(guild_id, member.id, member_role_ids(member))
        banned = await self.store.get_ban(guild_id, member.id)
        lines = [f"**Credits of <@{member.id}>**", *balance_lines(balance)]
        if banned is not None:
            lines.append("Banned from making videos" + (f": {audit.quote(banned.reason)}" if banned.reason else ""))
        entries = await self.services.quota.usage(guild_id, member.id, limit=LEDGER_SHOWN)
        if entries:
            lines.append("**Latest credit changes**")
            lines += [_ledger_line(entry) for entry in entries]
        await _reply(interaction, _clip(lines))

    @app_commands.command(name="jobs", description="A member's recent jobs in this server")
    async def jobs(self, interaction: discord.Interaction, member: discord.User) -> None:
        records = await self.services.jobs.list_jobs(guild_id_of(interaction), member.id, limit=JOBS_SHOWN)
        lines = [f"**Recent jobs of <@{member.id}>**"] + [list_line(job) for job in records]
        if not records:
            lines.append("None in this server.")
        await _reply(interaction, _clip(lines))

    @app_commands.command(name="cancel", description="Stop a job: it is no longer tracked and its credits are released")
    @app_commands.describe(job="The job number, as in “Job #12”")
    async def cancel(self, interaction: discord.Interaction, job: app_commands.Range[int, 1, None]) -> None:
        cancelled = await self.services.jobs.cancel_job(guild_id_of(interaction), job, interaction.user.id)
        await _reply(interaction, f"Cancelled job #{cancelled.id} of <@{cancelled.user_id}>; "
                                  f"its {credits_text(cancelled.cost)} on hold were released.")
