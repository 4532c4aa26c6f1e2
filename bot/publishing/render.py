"""The sentences members read when a job ends. Discord-agnostic: returns plain `ResultMessage`s."""

from __future__ import annotations

from typing import Any

from bot.catalog import MODELS_BY_KEY
from bot.i18n import _, translate
from bot.jobs.cards import AGAIN, BUTTON_LABELS, REMIX, Button
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


def plain_reason(reason: str | None, locale: Any = None) -> str:
    """A vendor's reason as one calm sentence fragment, without markup or mentions. A reason the bot
    wrote itself (a catalogued sentence stored with the job) is shown in `locale`."""
    text = _one_line(translate(reason or "", locale), REASON_MAX_CHARS).strip(" .")
    return defuse_mentions(text).replace("`", "'") if text else translate(DEFAULT_FAILURE_REASON, locale)


def result_buttons(job: JobRecord) -> tuple[Button, ...]:
    """The next steps under a result: Again and Remix on a video (with Extend, 1080p and 4K where the
    catalog allows them), Again after a failure. Buttons that cannot apply are not shown."""
    if job.status is JobStatus.SUCCEEDED:
        actions = [AGAIN, REMIX, *follow_up_actions(job)]
    elif job.status in (JobStatus.FAILED, JobStatus.TIMED_OUT):
        actions = [AGAIN]
    else:
        return ()
    return tuple(Button(action, job.id, BUTTON_LABELS[action]) for action in actions)


def follow_up_actions(job: JobRecord) -> list[str]:
    """Extend / 1080p / 4K where the catalog allows them for this job (model, aspect ratio, resolution)."""
    from bot.validation import follow_ups_for

    if not job.provider_task_id:
        return []
    try:
        return [str(action.value) for action in follow_ups_for(job.spec)]
    except Exception:  # noqa: BLE001 - an unreadable stored request: no follow-ups rather than no result
        return []


def render_result(job: JobRecord) -> ResultMessage:
    """The message for a terminal job, in the requester's language."""
    mention = f"<@{job.user_id}>"
    label = _label(job)
    if job.status is JobStatus.SUCCEEDED:
        body = _("{mention} your {label} video is ready (job #{id}):", mention=mention, label=label, id=job.id)
        body_text = f"{translate(body, job.reader_locale)}\n{job.video_url}"
        if job.error_message:  # delivered with less than was ordered: say so (e.g. the 1080p pass failed)
            body_text += f"\n{plain_reason(job.reason, job.reader_locale)}."
    else:
        body_text = translate(_ending(job, mention, label), job.reader_locale)
    return ResultMessage(
        job_id=job.id, outcome=job.status, content=f"{body_text}\n{_prompt_line(job)}",
        mention_user_id=job.user_id, nonce=job_nonce(job.id),
        video_url=job.video_url if job.status is JobStatus.SUCCEEDED else None,
        buttons=result_buttons(job),
    )


def _ending(job: JobRecord, mention: str, label: str) -> str:
    if job.status is JobStatus.FAILED:
        return _("{mention} your {label} video (job #{id}) could not be made: {reason}. "
                                 "Nothing was charged.", mention=mention, label=label, id=job.id,
                                 reason=plain_reason(job.reason, job.reader_locale))
    if job.status is JobStatus.TIMED_OUT:
        return _("{mention} your {label} video (job #{id}) took far longer than usual, so we "
                                    "stopped waiting for it. Nothing was charged; please try again.",
                                    mention=mention, label=label, id=job.id)
    if job.status is JobStatus.CANCELLED:
        if job.cancelled_by == job.user_id:
            return _("{mention} your {label} video (job #{id}) was cancelled as you asked. "
                                        "Nothing was charged.", mention=mention, label=label, id=job.id)
        return _("{mention} your {label} video (job #{id}) was cancelled by a moderator. "
                                    "Nothing was charged.", mention=mention, label=label, id=job.id)
    raise ValueError(f"job {job.id} is not finished (status {job.status})")
