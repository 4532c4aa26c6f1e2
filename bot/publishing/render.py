"""The sentences members read when a job ends. Discord-agnostic: returns plain `ResultMessage`s."""

from __future__ import annotations

from bot.catalog import MODELS_BY_KEY
from bot.publishing.base import ResultMessage, job_nonce
from bot.jobs.models import JobRecord, JobStatus

PROMPT_EXCERPT_CHARS = 180
THREAD_NAME_CHARS = 100  # Discord's limit for a channel name
REASON_MAX_CHARS = 400
DEFAULT_FAILURE_REASON = "the vendor did not say why"


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


def plain_reason(reason: str | None) -> str:
    """A vendor's reason as one calm sentence fragment, without markup or mentions."""
    text = _one_line(reason or "", REASON_MAX_CHARS).strip(" .")
    return defuse_mentions(text).replace("`", "'") if text else DEFAULT_FAILURE_REASON


def render_result(job: JobRecord) -> ResultMessage:
    """The message for a terminal job."""
    mention = f"<@{job.user_id}>"
    label = _label(job)
    if job.status is JobStatus.SUCCEEDED:
        body = f"{mention} your {label} video is ready (job #{job.id}):\n{job.video_url}"
    elif job.status is JobStatus.FAILED:
        body = (f"{mention} your {label} video (job #{job.id}) could not be made: "
                f"{plain_reason(job.error_message)}. Nothing was charged.")
    elif job.status is JobStatus.TIMED_OUT:
        body = (f"{mention} your {label} video (job #{job.id}) took far longer than usual, so we stopped "
                "waiting for it. Nothing was charged; please try again.")
    elif job.status is JobStatus.CANCELLED:
        body = (f"{mention} your {label} video (job #{job.id}) was cancelled by a moderator. "
                "Nothing was charged.")
    else:
        raise ValueError(f"job {job.id} is not finished (status {job.status})")
    return ResultMessage(
        job_id=job.id, outcome=job.status, content=f"{body}\n{_prompt_line(job)}",
        mention_user_id=job.user_id, nonce=job_nonce(job.id),
        video_url=job.video_url if job.status is JobStatus.SUCCEEDED else None,
    )
