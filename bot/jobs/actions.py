"""What a member's button click does: Again, Remix, Extend, 1080p, 4K and Cancel on an existing job.

Discord-agnostic (the cog passes ids and text). Every new job goes through the slash command's own
path (`JobService.precheck` then `create_job`: channel allowlist, family switch, bans, prompt rules,
credits, videos in progress), named by the click (`request_key`), so a click that arrives twice makes
one job and one vendor call.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from bot.catalog import FOLLOW_UP_BY_MODE, FollowUp, Mode
from bot.errors import Refusal
from bot.i18n import _
from bot.jobs.cards import AGAIN, CANCEL, EXTEND, REMIX, UPSCALE_4K, UPSCALE_1080P
from bot.jobs.models import JobRecord, JobStatus
from bot.jobs.service import JobService, Requester
from bot.validation import InputError, JobSpec, build_follow_up

NEW_JOB_ACTIONS = (AGAIN, REMIX, EXTEND, UPSCALE_1080P, UPSCALE_4K)
PROMPT_ACTIONS = (REMIX, EXTEND)  # a modal asks for the prompt first
UPSCALES = (UPSCALE_1080P, UPSCALE_4K)
ALL_ACTIONS = (*NEW_JOB_ACTIONS, CANCEL)


@dataclass(frozen=True)
class Started:
    """A job a click made, and where its card goes: a new card in the channel, or (an upscale) the
    source job's thread."""

    job: JobRecord
    source: JobRecord
    in_thread: bool


def is_generation(job: JobRecord) -> bool:
    """A video made from a prompt (not an extension or upscale of another video)."""
    return job.mode.value not in FOLLOW_UP_BY_MODE


def check_prompt(prompt: str, spec: JobSpec) -> str:
    text = prompt.strip()
    limit = spec.spec.max_prompt_chars
    if not text:
        raise InputError("prompt", _("write a prompt describing the video."))
    if len(text) > limit:
        raise InputError("prompt", _("is {count} characters; {model} accepts at most {limit}.", count=len(text),
                                     model=spec.spec.label, limit=limit))
    return text


def again_spec(source: JobSpec, prompt: str | None = None, rng: random.Random | None = None) -> JobSpec:
    """The same request again: same model, settings and images, a new seed where the model takes one,
    and the member's edited prompt for a remix."""
    params = dict(source.params)
    seed_range = source.spec.seed_range
    if seed_range is not None and source.mode in (Mode.TEXT, Mode.FRAMES, Mode.REFERENCE):
        low, high = seed_range
        params["seed"] = (rng or random.SystemRandom()).randint(low, high)
    text = check_prompt(prompt, source) if prompt is not None else source.prompt
    return source.model_copy(update={"params": params, "prompt": text})


class JobActions:
    """The service behind the buttons; the cog checks who may click and renders the answers."""

    def __init__(self, jobs: JobService) -> None:
        self.jobs = jobs

    async def source(self, guild_id: int, job_id: int) -> JobRecord:
        """The job a button names, in this server only (another server's job "does not exist")."""
        job = await self.jobs.get_job(guild_id, job_id)
        if job is None:
            raise Refusal("not_found", _("Job #{id} no longer exists in this server.", id=job_id))
        return job

    def spec_for(self, source: JobRecord, action: str, prompt: str | None = None) -> JobSpec:
        """The new job's request, or a plain refusal when the button cannot apply to this job."""
        if action in (AGAIN, REMIX):
            if not is_generation(source):
                raise Refusal("not_applicable", _("This button works on generated videos, not on extensions "
                                                  "or upscales; use it on the original video."))
            return again_spec(source.spec, prompt if action == REMIX else None)
        if source.status is not JobStatus.SUCCEEDED or not source.provider_task_id:
            raise Refusal("not_applicable", _("Job #{id} has no finished video to work from.", id=source.id))
        try:
            return build_follow_up(source.spec, source.provider_task_id, FollowUp(action), prompt)
        except InputError as error:
            raise Refusal("not_applicable", error.message) from None

    async def start(self, requester: Requester, source: JobRecord, action: str, *, click_id: int,
                    prompt: str | None = None) -> Started:
        """Make the job a click asks for (once per click); raises Refusal or InputError."""
        key = f"click:{click_id}"
        spec = self.spec_for(source, action, prompt)
        existing = await self.jobs.job_for_key(key)
        if existing is None:
            await self.jobs.precheck(requester, spec)
        in_thread = action in UPSCALES and source.thread_id is not None
        job = await self.jobs.create_job(
            requester, spec, request_key=key, parent_job_id=source.id, follow_up=action,
            thread_id=source.thread_id if in_thread else None)
        return Started(job=job, source=source, in_thread=in_thread)

    @staticmethod
    def may_cancel(job: JobRecord, user_id: int, moderator: bool) -> None:
        if job.user_id != user_id and not moderator:
            raise Refusal("not_allowed", _("Only the member who asked for job #{id} or a moderator can cancel it.",
                                           id=job.id))

    async def cancel(self, guild_id: int, job_id: int, user_id: int, *, moderator: bool) -> JobRecord:
        """The card's Cancel: the same effect as `/framecast cancel` (hold released, card says who)."""
        job = await self.source(guild_id, job_id)
        self.may_cancel(job, user_id, moderator)
        return await self.jobs.cancel_job(guild_id, job_id, user_id)
