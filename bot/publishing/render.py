"""The sentences members read when a job ends. Discord-agnostic: returns plain `ResultMessage`s."""

from __future__ import annotations

from typing import Any

from bot.catalog import MODELS_BY_KEY
from bot.i18n import _, pick_locale, translate
from bot.publishing.base import ResultMessage, job_nonce
from bot.jobs.models import JobRecord, JobStatus

PROMPT_EXCERPT_CHARS = 180
THREAD_NAME_CHARS = 100  # Discord's limit for a channel name
REASON_MAX_CHARS = 400
DEFAULT_FAILURE_REASON = _("the vendor did not say why")


def defuse_mentions(text: str) -> str:
    """Belt and braces beside AllowedMentions: `@everyone`, `<@123>` in user text render inert."""
    return text.replace("@", "@\u200b")


def _one_line(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "\u2026"


def _label(job: JobRecord) -> str:
    spec = MODELS_BY_KEY.get(job.model_key)
    return spec.label if spec else job.model_key


def _prompt_line(job: JobRecord) -> str:
    return "> " + defuse_mentions(_one_line(job.prompt, PROMPT_EXCERPT_CHARS)).replace("`", "'")


def thread_name(job_id: int, family: str, prompt: str) -> str:
    """The name of a job's thread: its number, family and the start of its prompt (names never ping)."""
    words = " ".join(prompt.split())
    return f"#{job_id} {family}: {words}"[:THREAD_NAME_CHARS]


def job_locale(job: Any) -> str:
    """The language a job's public messages are written in: its requester's, else the server's, else English."""
    return pick_locale(getattr(job, "locale", None), getattr(job, "guild_locale", None))


def plain_reason(reason: str | None, locale: Any = None) -> str:
    """A vendor's reason as one calm sentence fragment, without markup or mentions. A reason the bot
    wrote itself (a catalogued sentence stored with the job) is shown in `locale`."""
    text = _one_line(translate(reason or "", locale), REASON_MAX_CHARS).strip(" .")
    return defuse_mentions(text).replace("`", "'") if text else translate(DEFAULT_FAILURE_REASON, locale)


def render_result(job: JobRecord) -> ResultMessage:
    """The message for a terminal job, in the requester's language."""
    locale = job_locale(job)
    mention = f"<@{job.user_id}>"
    label = _label(job)
    if job.status is JobStatus.SUCCEEDED:
        text = _("{mention} your {model} video is ready (job #{id}):\n{url}", mention=mention, model=label,
                 id=job.id, url=job.video_url)
    elif job.status is JobStatus.FAILED:
        text = _("{mention} your {model} video (job #{id}) could not be made: {reason}. Nothing was charged.",
                 mention=mention, model=label, id=job.id, reason=plain_reason(job.error_message, locale))
    elif job.status is JobStatus.TIMED_OUT:
        text = _("{mention} your {model} video (job #{id}) took far longer than usual, so we stopped waiting for "
                 "it. Nothing was charged; please try again.", mention=mention, model=label, id=job.id)
    elif job.status is JobStatus.CANCELLED:
        text = _("{mention} your {model} video (job #{id}) was cancelled by a moderator. Nothing was charged.",
                 mention=mention, model=label, id=job.id)
    else:
        raise ValueError(f"job {job.id} is not finished (status {job.status})")
    return ResultMessage(
        job_id=job.id, outcome=job.status, content=f"{translate(text, locale)}\n{_prompt_line(job)}",
        mention_user_id=job.user_id, nonce=job_nonce(job.id),
        video_url=job.video_url if job.status is JobStatus.SUCCEEDED else None,
    )
