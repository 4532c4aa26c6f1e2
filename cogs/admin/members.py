"""`/framecast budget|credits`, `usage`, `jobs` and `cancel`: one member's or role's credits and jobs."""

from __future__ import annotations

from typing import Optional

import discord
from discord import app_commands

from bot import audit
from bot.i18n import _
from bot.quota.service import credits_text
from bot.validation import InputError
from cogs.admin.common import (
    JOBS_SHOWN, LEDGER_SHOWN, MAX_CREDITS, AdminBase, Credits, _budget_value, _ledger_line, _reply,
)
from cogs.interaction import guild_id_of, member_role_ids
from cogs.jobs import list_line
from cogs.quota import balance_lines

budget, credits = AdminBase.budget, AdminBase.credits


class MemberCommands(AdminBase):
    """Role and member budgets, credit grants and resets, a member's usage and jobs."""

    # --- budgets ------------------------------------------------------------------------------

    @budget.command(name="role", description="Daily credits for members with a role (the highest role wins)")
    @app_commands.describe(role="The role whose members get this budget", credits="Credits per rolling 24 hours",
                           unlimited="No limit for this role")
    async def budget_role(
        self, interaction: discord.Interaction, role: discord.Role,
        credits: Optional[Credits] = None, unlimited: bool = False,
    ) -> None:
        value = _budget_value("credits", credits, unlimited)
        if role.is_default():  # never in a member's role list, so its budget would never apply
            raise InputError("role", _("for everyone, use `/framecast settings set daily_credits`."))
        await self.services.admin.set_role_budget(guild_id_of(interaction), interaction.user.id, role.id, value)
        await _reply(interaction, _("Done: members with <@&{role}> get {credits} per day.", role=role.id,
                                    credits=credits_text(value)))

    @budget.command(name="role-remove", description="Remove a role's budget")
    @app_commands.describe(role="The role")
    async def budget_role_remove(self, interaction: discord.Interaction, role: discord.Role) -> None:
        await self.services.admin.remove_role_budget(guild_id_of(interaction), interaction.user.id, role.id)
        await _reply(interaction, _("<@&{role}> no longer has its own budget.", role=role.id))

    @budget.command(name="member", description="Daily credits for one member (beats their roles)")
    @app_commands.describe(member="The member", credits="Credits per rolling 24 hours",
                           unlimited="No limit for this member")
    async def budget_member(
        self, interaction: discord.Interaction, member: discord.User,
        credits: Optional[Credits] = None, unlimited: bool = False,
    ) -> None:
        value = _budget_value("credits", credits, unlimited)
        await self.services.admin.set_member_budget(guild_id_of(interaction), interaction.user.id, member.id, value)
        await _reply(interaction, _("Done: <@{user}> gets {credits} per day.", user=member.id,
                                    credits=credits_text(value)))

    @budget.command(name="member-remove", description="Remove a member's own budget (their roles apply again)")
    @app_commands.describe(member="The member")
    async def budget_member_remove(self, interaction: discord.Interaction, member: discord.User) -> None:
        await self.services.admin.remove_member_budget(guild_id_of(interaction), interaction.user.id, member.id)
        await _reply(interaction, _("<@{user}> is back to their roles' budget.", user=member.id))

    @budget.command(name="list", description="Every role and member budget")
    async def budget_list(self, interaction: discord.Interaction) -> None:
        guild_id = guild_id_of(interaction)
        roles = await self.store.role_budgets(guild_id)
        members = await self.store.member_overrides(guild_id)
        lines: list[str] = [_("**Budgets** (per rolling 24 hours)")]
        lines += [_("<@&{role}>: {credits}", role=role_id, credits=credits_text(limit.credits))
                  for role_id, limit in roles.items()]
        lines += [_("<@{user}>: {credits}", user=user_id, credits=credits_text(limit.credits))
                  for user_id, limit in members.items()]
        if len(lines) == 1:
            lines.append(_("None: everyone gets the server's daily credits (`/framecast settings show`)."))
        await _reply(interaction, lines)

    # --- credits, usage, jobs -----------------------------------------------------------------

    @credits.command(name="grant", description="Give a member extra credits for the next 24 hours")
    @app_commands.describe(member="The member", amount="How many credits to give",
                           note="Why (shown in the audit log)")
    async def credits_grant(
        self, interaction: discord.Interaction, member: discord.User,
        amount: app_commands.Range[int, 1, MAX_CREDITS], note: Optional[app_commands.Range[str, 1, 200]] = None,
    ) -> None:
        await self.services.quota.grant(guild_id_of(interaction), member.id, amount, actor_id=interaction.user.id,
                                        note=note)
        self._wake_audit_poster()
        await _reply(interaction, _("Gave <@{user}> {credits} for the next 24 hours.", user=member.id,
                                    credits=credits_text(amount)))

    @credits.command(name="reset", description="Forgive a member's usage so far (their budget is full again)")
    @app_commands.describe(member="The member", note="Why (shown in the audit log)")
    async def credits_reset(
        self, interaction: discord.Interaction, member: discord.User,
        note: Optional[app_commands.Range[str, 1, 200]] = None,
    ) -> None:
        await self.services.quota.reset(guild_id_of(interaction), member.id, actor_id=interaction.user.id, note=note)
        self._wake_audit_poster()
        await _reply(interaction, _("Reset the usage of <@{user}>; videos in progress keep their holds.",
                                    user=member.id))

    @app_commands.command(name="usage", description="A member's credits, as /quota shows them to the member")
    @app_commands.describe(member="The member")
    async def usage(self, interaction: discord.Interaction, member: discord.User) -> None:
        guild_id = guild_id_of(interaction)
        balance = await self.services.quota.balance(guild_id, member.id, member_role_ids(member))
        banned = await self.store.get_ban(guild_id, member.id)
        lines: list[str] = [_("**Credits of <@{user}>**", user=member.id), *balance_lines(balance)]
        if banned is not None and banned.reason:
            lines.append(_("Banned from making videos: {reason}", reason=audit.quote(banned.reason)))
        elif banned is not None:
            lines.append(_("Banned from making videos"))
        entries = await self.services.quota.usage(guild_id, member.id, limit=LEDGER_SHOWN)
        if entries:
            lines.append(_("**Latest credit changes**"))
            lines += [_ledger_line(entry) for entry in entries]
        await _reply(interaction, lines)

    @app_commands.command(name="jobs", description="A member's recent jobs in this server")
    @app_commands.describe(member="The member")
    async def jobs(self, interaction: discord.Interaction, member: discord.User) -> None:
        records = await self.services.jobs.list_jobs(guild_id_of(interaction), member.id, limit=JOBS_SHOWN)
        lines: list[str] = [_("**Recent jobs of <@{user}>**", user=member.id), *(list_line(job) for job in records)]
        if not records:
            lines.append(_("None in this server."))
        await _reply(interaction, lines)

    @app_commands.command(name="cancel", description="Stop a job: it is no longer tracked and its credits are released")
    @app_commands.describe(job="The job number, as in “Job #12”")
    async def cancel(self, interaction: discord.Interaction, job: app_commands.Range[int, 1, None]) -> None:
        cancelled = await self.services.jobs.cancel_job(guild_id_of(interaction), job, interaction.user.id)
        await _reply(interaction, _("Cancelled job #{id} of <@{user}>; its {credits} on hold were released.",
                                    id=cancelled.id, user=cancelled.user_id, credits=credits_text(cancelled.cost)))
