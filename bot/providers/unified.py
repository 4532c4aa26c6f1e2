"""The unified video API (kkiai: `/v1/video/create` + `/v1/video/query`) for Veo and Sora 2.

Success is decided from `status` alone: the vendor's own completed example still carries error text
from retried attempts. The task id is used exactly as create returned it (model prefix included).
"""

from __future__ import annotations

from typing import Any

import httpx

from bot.catalog import UPSAMPLE_COST_KEY, Family, ImageRole, Mode, ProviderName
from bot.i18n import _
from bot.providers.base import NO_LINK_MESSAGE, PollResult, TaskState
from bot.providers.http import (
    GATEWAY_ANSWERS,
    Phase,
    VendorClient,
    as_object,
    dig,
    error_text,
    final_error,
    first_text,
    looks_like_policy,
    unreadable_body,
)
from bot.providers.vendor_time import vendor_duration
from bot.validation import JobSpec

SUCCESS_STATUSES = frozenset({"completed", "complete", "success", "succeeded", "succeed"})
UPSAMPLING_FAILED = "video_upsampling_failed"
UPSAMPLING_FAILED_NOTE = _("The 1080p pass failed, so this is the 720p video; the 1080p surcharge was not charged.")
FAILURE_STATUSES = frozenset({"failed", "failure", "error", "cancelled", "canceled"})


def map_unified_status(status: str) -> TaskState:
    """Every documented status string, plus the inferred rule for unknown ones (= still running)."""
    normalized = status.strip().lower()
    if normalized in SUCCESS_STATUSES:
        return TaskState.SUCCEEDED
    if normalized in FAILURE_STATUSES or normalized.endswith("_failed") or normalized.endswith("_error"):
        return TaskState.FAILED
    return TaskState.RUNNING


NO_REASON = _("The vendor could not make this video and gave no reason.")


def failure_message(reason: str) -> str:
    """The sentence a member reads when the vendor could not make the video (a relayed JSON error
    body is unwrapped to its message first)."""
    reason = error_text(reason)
    if looks_like_policy(reason):
        return _("The vendor rejected the prompt or images under its content policy: {reason}", reason=reason)
    if reason:
        return _("The vendor could not make this video: {reason}", reason=reason)
    return NO_REASON


def parse_unified_query(payload: Any) -> PollResult:
    """A `/v1/video/query` answer as a PollResult."""
    if not isinstance(payload, dict):
        raise ValueError("query reply is not an object")
    detail = as_object(payload.get("detail"))
    raw_status = payload.get("status") or detail.get("status")
    if not isinstance(raw_status, str) or not raw_status:
        raise ValueError("query reply has no status")
    state = map_unified_status(raw_status)
    took = vendor_duration(detail.get("created_at"),
                           detail.get("completed_at") or payload.get("status_update_time"))
    lesser = first_text(detail.get("video_url"))
    if raw_status.strip().lower() == UPSAMPLING_FAILED and lesser:
        # The 1080p pass failed after the video was made: that 720p video is the result, not a failure.
        return PollResult(state=TaskState.SUCCEEDED, raw_status=raw_status, video_url=lesser.strip(), progress=1.0,
                          vendor_seconds=took, note=UPSAMPLING_FAILED_NOTE, uncharged=(UPSAMPLE_COST_KEY,))
    if state is TaskState.SUCCEEDED:
        url = first_text(payload.get("video_url"), detail.get("upsample_video_url"), detail.get("video_url"))
        if not url:
            return PollResult(
                state=TaskState.FAILED, raw_status=raw_status,
                error_message=NO_LINK_MESSAGE,
            )
        return PollResult(state=state, raw_status=raw_status, video_url=url.strip(), progress=1.0, vendor_seconds=took)
    if state is TaskState.FAILED:
        reason = first_text(
            detail.get("video_generation_error"), detail.get("error_message"),
            payload.get("error"), payload.get("message"),
        )
        return PollResult(state=state, raw_status=raw_status, error_message=failure_message(reason),
                          vendor_seconds=took)
    progress = payload.get("progress", detail.get("progress"))
    return PollResult(state=state, raw_status=raw_status, progress=_progress(progress))


def _progress(value: Any) -> float | None:
    if isinstance(value, str) and value.strip().endswith("%"):
        value = value.strip()[:-1]
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, min(1.0, number / 100 if number > 1 else number))


def build_unified_body(job: JobSpec) -> dict[str, Any]:
    """The create body for Veo or Sora 2, from the validated spec."""
    params = job.params
    first = job.image(ImageRole.FIRST_FRAME)
    if job.family is Family.SORA:
        return {
            "model": job.vendor_model,
            "prompt": job.prompt,
            "images": [first.url] if first is not None else [],
            "orientation": params.get("orientation", "landscape"),
            "size": params.get("size", "small"),
            "duration": int(params.get("duration", 10)),
            "watermark": bool(params.get("watermark", True)),
        }
    body: dict[str, Any] = {"model": job.vendor_model, "prompt": job.prompt}
    if job.mode is Mode.FRAMES:
        last = job.image(ImageRole.LAST_FRAME)
        body["images"] = [image.url for image in (first, last) if image is not None]
    elif job.mode is Mode.REFERENCE:
        body["images"] = [image.url for image in job.reference_images]
    if "aspect_ratio" in params:
        body["aspect_ratio"] = params["aspect_ratio"]
    body["enhance_prompt"] = bool(params.get("enhance_prompt", True))
    body["enable_upsample"] = bool(params.get("upsample", False))
    return body


class UnifiedClient(VendorClient):
    """kkiai's unified API: Veo 3.1 and Sora 2."""

    name = ProviderName.KKIAI
    answers = GATEWAY_ANSWERS

    async def submit(self, job: JobSpec, *, callback_url: str | None = None) -> str:
        """POST /v1/video/create; the vendor has no callbacks, so `callback_url` is ignored."""
        return await self._submit("/v1/video/create", self._parse_create, build_unified_body(job))

    def _parse_create(self, response: httpx.Response) -> str:
        payload = self._json_object(response, Phase.SUBMIT)
        task_id = first_text(payload.get("id"), payload.get("task_id"), dig(payload, "data", "id"))
        if not task_id:
            reason = first_text(payload.get("error"), payload.get("message"))
            if looks_like_policy(reason):  # an explicit refusal created nothing
                raise final_error(self.name, response.status_code, reason, policy=True)
            raise unreadable_body(self.name, Phase.SUBMIT, response.status_code, "no task id")
        return task_id.strip()

    async def poll(self, task_id: str, job: JobSpec) -> PollResult:
        """GET /v1/video/query?id=<the id exactly as create returned it>."""
        return await self._poll("/v1/video/query", self._parse_query, params={"id": task_id})

    def _parse_query(self, response: httpx.Response) -> PollResult:
        payload = self._json_object(response, Phase.POLL)
        try:
            return parse_unified_query(payload)
        except ValueError as exc:
            raise unreadable_body(self.name, Phase.POLL, response.status_code, str(exc)) from exc
