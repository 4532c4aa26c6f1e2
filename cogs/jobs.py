"""`/jobs` and `/job id:`: a member's view of their own jobs in this server.

Read-only and ephemeral. A job belongs to its requester: anyone else (unless they can Manage Server)
is told "not found", exactly as for a job that does not exist, so job ids reveal nothing about other
members' prompts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.ext import commands

from bot.catalog import MODELS_BY_KEY
from bot.errors import Refusal
from bot.i18n import Joined, _, _n, join, translate
from bot.jobs.models import JobStatus
from bot.validation import mode_name
from cogs.generate import describe_options, quote
from cogs.interaction import member_role_ids, require_guild

if TYPE_CHECKING:
    from bot.discord_bot import FramecastBot
    from bot.jobs.models import JobRecord
    from bot.services import Services

LIST_LIMIT = 10
AUTOCOMPLETE_LIMIT = 25  # Discord shows at most 25 choices
CHOICE_NAME_MAX = 100
DETAIL_PROMPT_CHARS = 1200

STATUS_EMOJI: dict[str, str] = {
    "queued": "⏳", "submitting": "📤", "running": "🎬", "uncertain": "❔",
    "succeeded": "✅", "failed": "❌", "timed_out": "⌛", "cancelled": "🚫",
}


def status_text(job: "JobRecord") -> Joined:
    status = str(job.status)
    return join([STATUS_EMOJI.get(status, "•"), job.status.word], " ")


def model_label(job: "JobRecord") -> str:
    spec = MODELS_BY_KEY.get(job.model_key)
    return spec.label if spec else job.model_key


def message_link(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


def where_text(job: "JobRecord") -> str:
    """The best place to look: the result message, else the thread, else the summary message."""
    if job.result_message_id:
        return _("[result]({link})", link=message_link(job.guild_id, job.destination_channel_id,
                                                       job.result_message_id))
    if job.thread_id:
        return f"<#{job.thread_id}>"
    if job.summary_message_id:
        return _("[summary]({link})", link=message_link(job.guild_id, job.channel_id, job.summary_message_id))
    return f"<#{job.channel_id}>"


def list_line(job: "JobRecord") -> Joined:
    return join([f"**#{job.id}** ", status_text(job), f" · {model_label(job)} · <t:{int(job.created_at)}:R> · ",
                 where_text(job)], "")


def _duration(start: float | None, end: float | None) -> str | None:
    if start is None or end is None or end < start:
        return None
    seconds = int(end - start)
    return f"{seconds // 60}m {seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def detail_text(job: "JobRecord", locale: Any = None) -> Joined:
    """Everything about one job, for its owner or a moderator (`locale`: the reader's, for the stored reason)."""
    prompt = job.prompt if len(job.prompt) <= DETAIL_PROMPT_CHARS else job.prompt[:DETAIL_PROMPT_CHARS] + "…"
    lines: list[str] = [
        _("**Job #{id}** · {status} · /{family} · {model}", id=job.id, status=status_text(job),
          family=job.family.value, model=model_label(job)),
        _("Requested by <@{user}> {when} · cost {cost}", user=job.user_id, when=f"<t:{int(job.created_at)}:R>",
          cost=_n("{n} credit", "{n} credits", n=job.cost)),
    ]
    try:
        lines.append(describe_options(job.spec))
    except ValueError:  # an unreadable stored request: still show the rest
        lines.append(_("mode: {mode}", mode=mode_name(job.mode)))
    lines.append(quote(prompt))
    times: list[str] = [_("created {when}", when=f"<t:{int(job.created_at)}:f>")]
    if job.submitted_at:
        times.append(_("submitted after {duration}", duration=_duration(job.created_at, job.submitted_at)))
    if job.finished_at:
        times.append(_("finished after {duration}", duration=_duration(job.created_at, job.finished_at)))
    lines.append(join(times, " · "))
    if job.video_url:
        lines.append(_("Video: {url}", url=job.video_url))
    if job.error_message and str(job.status) in ("failed", "timed_out", "cancelled"):
        reason = translate(job.reason or "", locale)
        lines.append(_("Reason: {reason}", reason=discord.utils.escape_mentions(reason)[:300]))
    lines.append(_("Where: {where}", where=where_text(job)))
    return join(lines, "\n")


async def is_moderator(interaction: discord.Interaction, services: Services) -> bool:
    """Manage Server (or Administrator), or the server's configured moderator role."""
    permissions = interaction.permissions
    if permissions.manage_guild or permissions.administrator:
        return True
    if interaction.guild_id is None:
        return False
    role_id = (await services.guild_settings.get(interaction.guild_id)).moderator_role_id
    return role_id is not None and role_id in member_role_ids(interaction.user)


class JobsCog(commands.Cog):
    def __init__(self, bot: FramecastBot) -> None:
        self.bot = bot

    @property
    def services(self) -> Services:
        return self.bot.services

    @app_commands.command(name="jobs", description="Your recent video jobs in this server")
    @app_commands.guild_only()
    @app_commands.check(require_guild)
    async def jobs(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert interaction.guild_id is not None
        records = await self.services.jobs.list_jobs(interaction.guild_id, interaction.user.id, limit=LIST_LIMIT)
        if not records:
            text: str = _("You have no jobs in this server yet. Try `/veo`, `/sora` or `/kling`.")
        else:
            text = join([_("**Your recent jobs**"), *(list_line(job) for job in records)], "\n")
        await interaction.edit_original_response(content=translate(text, interaction.locale),
                                                 allowed_mentions=discord.AllowedMentions.none())

    @app_commands.command(name="job", description="One of your video jobs in full")
    @app_commands.describe(id="The job number, as in “Job #12”")
    @app_commands.guild_only()
    @app_commands.check(require_guild)
    async def job(self, interaction: discord.Interaction, id: app_commands.Range[int, 1, None]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert interaction.guild_id is not None
        record = await self.services.jobs.get_job(interaction.guild_id, id)
        visible = record is not None and (
            record.user_id == interaction.user.id or await is_moderator(interaction, self.services)
        )
        if not visible:
            raise Refusal("not_found", _("Job #{id} not found in this server.", id=id))
        assert record is not None
        await interaction.edit_original_response(
            content=translate(detail_text(record, interaction.locale), interaction.locale),
            allowed_mentions=discord.AllowedMentions.none()
        )

    @job.autocomplete("id")
    async def job_id_autocomplete(self, interaction: discord.Interaction,
                                  current: str) -> list[app_commands.Choice[int]]:
        """The member's recent jobs: number, status and the start of the prompt (Discord shows 25)."""
        if interaction.guild_id is None:
            return []
        rows = await self.services.jobs.recent_choices(interaction.guild_id, interaction.user.id,
                                                       str(current or "").strip().lstrip("#"), AUTOCOMPLETE_LIMIT)
        return [app_commands.Choice(name=choice_name(row["id"], row["status"], row["prompt"], interaction.locale),
                                    value=int(row["id"])) for row in rows]


def choice_name(job_id: int, status: str, prompt: str, locale: Any = None) -> str:
    """`#12 · ✅ done · a fox running through…` within Discord's 100 characters, in the member's language."""
    try:
        word = translate(JobStatus(status).word, locale)
    except ValueError:
        word = status
    head = f"#{job_id} · {STATUS_EMOJI.get(status, '•')} {word} · "
    words = " ".join(prompt.split())
    room = CHOICE_NAME_MAX - len(head)
    return head + (words if len(words) <= room else words[: room - 1].rstrip() + "\u2026")


async def setup(bot: FramecastBot) -> None:
    await bot.add_cog(JobsCog(bot))
