"""Kling v3 through an OpenAI-style gateway (`/v1/video/generations`).

Resellers run different gateway versions, so the poll answer is read in every documented shape:
the OpenAI video object, the gateway envelope (old versions put the result URL in `fail_reason` on
SUCCESS), the simple form, and Kling's native `task_status`/`task_result`. The poll path is
`/v1/videos/{id}` with a fallback to `/v1/video/generations/{id}` on 404; the one that works is kept.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from pydantic import SecretStr

from bot.catalog import ImageRole, Mode, ProviderName
from bot.clock import Clock
from bot.i18n import _
from bot.providers.base import NO_LINK_MESSAGE, ErrorKind, PollResult, ProviderError, TaskState
from bot.providers.http import (
    GATEWAY_ANSWERS,
    VENDOR_LABELS,
    KnownAnswer,
    Phase,
    VendorClient,
    dig,
    error_code,
    error_text,
    first_text,
    json_or_none,
    known_answer,
    unreadable_body,
)
from bot.providers.unified import NO_REASON, failure_message
from bot.providers.vendor_time import vendor_duration
from bot.settings import Settings
from bot.validation import JobSpec

SUCCESS_STATUSES = frozenset({"completed", "succeeded", "succeed", "success", "complete"})
FAILURE_STATUSES = frozenset({"failed", "failure", "error", "cancelled", "canceled", "expired"})
POLL_PATHS = ("/v1/videos/{id}", "/v1/video/generations/{id}")
# The route that carries `fail_reason` when the other one reports a bare failure (older new-api).
REASON_PATH = "/v1/video/generations/{id}"


def _policy_sentence(label: str, reason: str) -> str:
    if reason:
        return _("The vendor rejected the prompt or images under its content policy: {reason}", reason=reason)
    return _("The vendor rejected the prompt or images under its content policy.")


# Kling's own error codes (relayed by the gateway, often as a JSON string in `message`), then the
# gateway's answers. Kling: 1300/1301 content policy; 1302/1303 rate / concurrency limit (nothing made).
KLING_ANSWERS: tuple[KnownAnswer, ...] = (
    KnownAnswer(frozenset({"1300", "1301"}), ErrorKind.FINAL, _policy_sentence),
    KnownAnswer(frozenset({"1302", "1303"}), ErrorKind.RETRYABLE, lambda label, reason: _(
        "{vendor} is busy; the request will be sent again shortly.", vendor=label)),
    *GATEWAY_ANSWERS,
)


def build_kling_body(job: JobSpec) -> dict[str, Any]:
    """The create body. With shot prompts the top-level prompt is left out: the vendor's page takes
    one or the other (its multi_prompt example has no prompt)."""
    params = job.params
    body: dict[str, Any] = {"model": job.vendor_model}
    shots = params.get("multi_prompt") or []
    if not shots:
        body["prompt"] = job.prompt
    first, last = job.image(ImageRole.FIRST_FRAME), job.image(ImageRole.LAST_FRAME)
    if first is not None:
        body["image"] = first.url
    if last is not None:
        body["last_image"] = last.url
    if job.mode is Mode.TEXT and "aspect_ratio" in params:
        body["aspect_ratio"] = params["aspect_ratio"]
    if params.get("duration") is not None:
        body["duration"] = int(params["duration"])
    extra: dict[str, Any] = {}
    if params.get("cfg_scale") is not None:
        extra["cfg_scale"] = params["cfg_scale"]
    if params.get("shot_type"):
        extra["shot_type"] = params["shot_type"]
    if params.get("negative_prompt"):
        extra["negative_prompt"] = params["negative_prompt"]
    if shots:
        extra["multi_prompt"] = [{"prompt": shot} for shot in shots]
    body["extra_body"] = extra
    return body


def parse_progress(value: Any) -> float | None:
    """"30%" -> 0.3; OpenAI's integer percent 30 -> 0.3; a fraction 0.3 stays."""
    if isinstance(value, str):
        text = value.strip().rstrip("%").strip()
        try:
            number = float(text)
        except ValueError:
            return None
        return max(0.0, min(1.0, number / 100))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    if isinstance(value, int) or number > 1:
        number /= 100
    return max(0.0, min(1.0, number))


def _task_node(payload: dict[str, Any]) -> dict[str, Any]:
    """The object that describes the task: `data` in envelopes, the payload itself otherwise."""
    data = payload.get("data")
    if isinstance(data, dict) and any(key in data for key in ("status", "task_status", "task_id", "id")):
        return data
    return payload


def _video_url(node: dict[str, Any], success: bool) -> str:
    url = first_text(
        node.get("video_url"), node.get("url"), node.get("result_url"),
        dig(node, "metadata", "url"), dig(node, "result", "video_url"), dig(node, "result", "url"),
        dig(node, "task_result", "videos", 0, "url"), dig(node, "data", "video_url"),
    )
    if not url and success:
        legacy = first_text(node.get("fail_reason"))  # old gateway versions: the URL sits here
        if legacy.strip().startswith("http"):
            url = legacy
    return url.strip()


def _failure_sentence(node: dict[str, Any], payload: dict[str, Any]) -> str:
    """A failed task's reason for the member: Kling's codes by the table, else the vendor's words
    (a relayed JSON error unwrapped first); None-free: "gave no reason" when there is none."""
    reason = error_text(first_text(node.get("error"), node.get("fail_reason"), node.get("task_status_msg"),
                                   payload.get("error"), payload.get("message")))
    code = error_code(node.get("error")) or error_code(_as_object(node.get("fail_reason")))
    known = known_answer(KLING_ANSWERS, (code,), reason, ProviderName.KLING)
    if known is not None and known.kind is ErrorKind.FINAL:
        return known.user_message
    return failure_message(reason)


def _as_object(value: Any) -> Any:
    """A JSON object held in a string (a relayed upstream error), else the value itself."""
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def parse_kling_task(payload: Any) -> PollResult:
    """Any of the documented poll shapes as a PollResult."""
    if not isinstance(payload, dict):
        raise ValueError("reply is not an object")
    node = _task_node(payload)
    raw_status = first_text(node.get("status"), node.get("task_status"))
    if not raw_status:
        raise ValueError("reply has no status")
    normalized = raw_status.strip().lower()
    progress = parse_progress(node.get("progress"))
    took = vendor_duration(node.get("created_at"), node.get("completed_at"))  # the OpenAI video object
    if normalized in SUCCESS_STATUSES:
        url = _video_url(node, success=True)
        if not url:
            return PollResult(state=TaskState.FAILED, raw_status=raw_status,
                              error_message=NO_LINK_MESSAGE)
        return PollResult(state=TaskState.SUCCEEDED, raw_status=raw_status, video_url=url, progress=1.0,
                          vendor_seconds=took)
    if normalized in FAILURE_STATUSES:
        return PollResult(state=TaskState.FAILED, raw_status=raw_status, error_message=_failure_sentence(node, payload),
                          vendor_seconds=took)
    return PollResult(state=TaskState.RUNNING, raw_status=raw_status, progress=progress)


class KlingClient(VendorClient):
    """Kling v3 via the OpenAI-style video gateway."""

    name = ProviderName.KLING
    answers = KLING_ANSWERS

    def __init__(
        self, base_url: str, api_key: SecretStr, settings: Settings, clock: Clock,
        *, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, settings, clock, transport=transport)
        self._poll_paths = list(POLL_PATHS)  # the one that last worked goes first

    async def submit(self, job: JobSpec, *, callback_url: str | None = None) -> str:
        """POST /v1/video/generations; the gateway has no callbacks, so `callback_url` is ignored."""
        return await self._submit("/v1/video/generations", self._parse_create, build_kling_body(job))

    def _parse_create(self, response: httpx.Response) -> str:
        known = self._known_answer(response, json_or_none(response))  # Kling's codes come with any status
        if known is not None:
            raise known
        payload = self._json_object(response, Phase.SUBMIT)
        data = payload.get("data")
        task_id = first_text(
            payload.get("id"), payload.get("task_id"), dig(data, "task_id"), dig(data, "id"),
            data if isinstance(data, str) else None,
        )
        if not task_id:
            raise unreadable_body(self.name, Phase.SUBMIT, response.status_code, "no task id")
        return task_id.strip()

    async def poll(self, task_id: str, job: JobSpec) -> PollResult:
        """GET the task on the path that works here (falling back to the other one on 404); a failure
        reported without a reason is asked of the route that carries `fail_reason`, once."""
        result = await self._poll_task(task_id)
        if result.state is TaskState.FAILED and result.error_message == NO_REASON:
            result = await self._reason_from_other_route(task_id, result)
        return result

    async def _reason_from_other_route(self, task_id: str, result: PollResult) -> PollResult:
        """Older gateways' `/v1/videos/{id}` says "failed" and nothing else; `/v1/video/generations/{id}`
        carries `fail_reason`. One request, only for such a failure; any trouble keeps what we have."""
        try:
            other = await self._poll(REASON_PATH.format(id=task_id), self._parse_task, operation="poll_reason")
        except ProviderError:
            return result
        if other.state is TaskState.FAILED and other.error_message and other.error_message != NO_REASON:
            return result.model_copy(update={"error_message": other.error_message})
        return result

    async def _poll_task(self, task_id: str) -> PollResult:
        last_error: ProviderError | None = None
        for path in list(self._poll_paths):
            try:
                result = await self._poll(path.format(id=task_id), self._parse_task)
            except ProviderError as error:
                if error.status_code == 404:
                    last_error = error
                    continue
                raise
            if path != self._poll_paths[0]:
                self._poll_paths.remove(path)
                self._poll_paths.insert(0, path)
            return result
        assert last_error is not None
        raise last_error

    def _parse_task(self, response: httpx.Response) -> PollResult:
        payload = self._json_object(response, Phase.POLL)
        try:
            return parse_kling_task(payload)
        except ValueError as exc:
            reason = error_text(payload)
            raise ProviderError(
                ErrorKind.RETRYABLE, _("{vendor} sent a reply that could not be read.", vendor=VENDOR_LABELS[self.name]),
                status_code=response.status_code, detail=reason or str(exc),
            ) from exc
