"""kie.ai Veo 3.1: generate, record-info, the 1080p upgrade, image re-hosting and callbacks, and the
follow-ups of a finished video (extend, 1080p, 4K).

Every kie reply is an envelope `{code, msg, data}` whose body `code` is the real status, so both the
HTTP status and the body code are checked. For 1080p jobs the 720p result is held back until the
1080p file is ready, but never lost: ten minutes after the task completed, the 720p link is delivered.

Follow-ups run through the same `submit`/`poll`: an extension is a new kie task (polled with
record-info); an upscale is no task of its own at kie (its endpoint is asked again until the file is
there), so the job gets a derived id, "1080p:<taskId>" / "4k:<taskId>" (provider task ids are unique
per vendor), which `poll` reads back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, SecretStr

from bot.catalog import UHD_COST_KEY, UPSAMPLE_COST_KEY, ImageRole, Mode, ProviderName
from bot.clock import Clock
from bot.i18n import _
from bot.providers.base import NO_LINK_MESSAGE, ErrorKind, PollResult, ProviderError, TaskState
from bot.providers.http import (
    VENDOR_LABELS,
    KnownAnswer,
    Phase,
    VendorClient,
    as_object,
    dig,
    error_text,
    final_error,
    first_text,
    json_or_none,
    known_answer,
    looks_like_policy,
    parse_retry_after,
    plain_body_text,
    soften_for_upload,
    trim_reason,
    unreadable_body,
)
from bot.providers.unified import failure_message
from bot.providers.vendor_time import epoch_seconds, vendor_duration
from bot.settings import Settings
from bot.validation import JobSpec

GENERATION_TYPES = {
    Mode.TEXT: "TEXT_2_VIDEO",
    Mode.FRAMES: "FIRST_AND_LAST_FRAMES_2_VIDEO",
    Mode.REFERENCE: "REFERENCE_2_VIDEO",
}
UPSCALE_MODES = {Mode.UPSCALE_1080P: "1080p", Mode.UPSCALE_4K: "4k"}
# The upscale endpoints: 1080p is a GET, 4K a POST (asked again, it answers "processing" until ready).
UPSCALE_PATHS = {"1080p": ("GET", "/api/v1/veo/get-1080p-video"), "4k": ("POST", "/api/v1/veo/get-4k-video")}
# An upscale endpoint's "not ready yet" (kie: 1080p code 400 "1080P is processing...", 4K code 422
# "4k is processing. It should be ready in 5-10 minutes"): the same codes mean real refusals elsewhere.
_NOT_READY = re.compile(r"is processing|not ready|ready in|check back", re.IGNORECASE)
# How long after the task completed we wait for the 1080p file before delivering the 720p one.
HD_GRACE_SECONDS = 600.0
UHD_GRACE_SECONDS = 1200.0  # 4K: "typically ~5-10 minutes"


@dataclass(frozen=True)
class Upgrade:
    """A pass ordered with the video (kie makes 720p first): how long to wait for it past the 720p
    video, what record-info reports once the video already has it, its cost key, and the notes."""

    grace_seconds: float
    reported: tuple[str, ...]
    cost_key: str
    failed_note: str
    late_note: str


UPGRADES: dict[str, Upgrade] = {
    "1080p": Upgrade(HD_GRACE_SECONDS, ("1080",), UPSAMPLE_COST_KEY,
                     _("The 1080p pass failed, so this is the 720p video; the 1080p surcharge was not charged."),
                     _("The 1080p file did not come in time, so this is the 720p video; the 1080p surcharge was "
                       "not charged.")),
    "4k": Upgrade(UHD_GRACE_SECONDS, ("4k", "2160"), UHD_COST_KEY,
                  _("The 4K pass failed, so this is the 720p video; the 4K surcharge was not charged."),
                  _("The 4K file did not come in time, so this is the 720p video; the 4K surcharge was not "
                    "charged.")),
}
FIRST_SEEN_PRUNE_AT = 256  # sightings kept before old ones are looked for and dropped
UPLOAD_PATH = "framecast"
_LABEL = VENDOR_LABELS[ProviderName.KIE]


def build_kie_body(job: JobSpec, callback_url: str | None = None) -> dict[str, Any]:
    """The `/api/v1/veo/generate` body from the validated spec."""
    params = job.params
    body: dict[str, Any] = {
        "prompt": job.prompt,
        "model": job.vendor_model,
        "generationType": GENERATION_TYPES[job.mode],
    }
    if job.mode is Mode.FRAMES:
        frames = (job.image(ImageRole.FIRST_FRAME), job.image(ImageRole.LAST_FRAME))
        body["imageUrls"] = [image.url for image in frames if image is not None]
    elif job.mode is Mode.REFERENCE:
        body["imageUrls"] = [image.url for image in job.reference_images]
    if "aspect_ratio" in params:
        body["aspect_ratio"] = params["aspect_ratio"]
    if params.get("seed") is not None:
        body["seeds"] = int(params["seed"])
    body["enableTranslation"] = bool(params.get("enhance_prompt", True))
    if callback_url:
        body["callBackUrl"] = callback_url
    return body


def build_extend_body(job: JobSpec, callback_url: str | None = None) -> dict[str, Any]:
    """The `/api/v1/veo/extend` body: the source task and what happens next."""
    body: dict[str, Any] = {
        "taskId": job.params["source_task_id"], "prompt": job.prompt, "model": job.vendor_model,
    }
    if callback_url:
        body["callBackUrl"] = callback_url
    return body


def upscale_task_id(resolution: str, source_task_id: str) -> str:
    """The job's own id for an upscale of `source_task_id` ("4k:<taskId>")."""
    return f"{resolution}:{source_task_id}"


def split_upscale_id(task_id: str) -> tuple[str, str] | None:
    """("4k", "<taskId>") for a derived upscale id; None for a real kie task id."""
    resolution, sep, source = task_id.partition(":")
    return (resolution, source) if sep and resolution in UPSCALE_PATHS and source else None


def callback_task_id(mode: Mode, named: str | None) -> str | None:
    """The id a callback is about, as the job knows it: kie calls a 4K pass back under its source
    task's id, which an upscale job holds as "4k:<taskId>"."""
    resolution = UPSCALE_MODES.get(mode)
    return upscale_task_id(resolution, named) if named and resolution is not None else named


def result_urls(value: Any) -> list[str]:
    """`resultUrls` is documented as an array; some replies carry it as a JSON string."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                return re.findall(r"https?://[^\s\"',\]]+", text)
        elif text:
            return [text]
        else:
            return []
    if isinstance(value, list):
        return [item.strip() for item in value if isinstance(item, str) and item.strip()]
    return []


def as_int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _refusal(label: str, reason: str) -> str:
    """kie's 400/422 about a task: its content policy, else its own words."""
    if looks_like_policy(reason) or "rejected" in reason.lower():
        return _("The vendor rejected the prompt or images under its content policy: {reason}", reason=reason)
    if reason:
        return _("The vendor refused the request: {reason}", reason=reason)
    return KIE_CODE_MEANINGS[400]


def _generation_failed(label: str, reason: str) -> str:
    return failure_message(reason) if reason else KIE_CODE_MEANINGS[501]


def _codes(*codes: int) -> frozenset[str]:
    return frozenset(str(code) for code in codes)


# What kie's codes mean when it gives nothing else (a failed record may carry only `errorCode`).
KIE_CODE_MEANINGS: dict[int, str] = {
    400: _("The vendor refused the prompt or images: flagged under its content policy, or an image it "
           "could not fetch."),
    422: _("The vendor's checks rejected the request."),
    500: _("The vendor had an internal error while making this video."),
    501: _("The vendor's video generation failed."),
}

# kie's answers that are final for the task, in any phase and whatever the HTTP status beside the
# envelope's code (kie's pages; record-info answers 400/422 about a task, not about an outage).
# First match wins; answers not listed keep the generic handling (busy, auth, 5xx).
KIE_ANSWERS: tuple[KnownAnswer, ...] = (
    KnownAnswer(_codes(451), ErrorKind.FINAL, lambda label, reason: _(
        "The vendor could not download the attached images: {reason}", reason=reason or "-")),
    KnownAnswer(_codes(400), ErrorKind.FINAL, lambda label, reason: _(
        "The vendor could not download the attached images: {reason}", reason=reason),
        words=re.compile(r"fetch the image|download", re.IGNORECASE)),
    KnownAnswer(_codes(422), ErrorKind.FINAL, lambda label, reason: _(
        "The vendor keeps videos for 14 days only; this one is no longer there."),
        words=re.compile(r"14 days", re.IGNORECASE)),
    KnownAnswer(_codes(422), ErrorKind.FINAL, lambda label, reason: _(
        "The vendor has no record of this video's task."), words=re.compile(r"record is null", re.IGNORECASE)),
    KnownAnswer(_codes(400, 422), ErrorKind.FINAL, _refusal),
    # The 4K endpoint's failure ("The 4K version of this video is unavailable...").
    KnownAnswer(_codes(500), ErrorKind.FINAL, lambda label, reason: _(
        "The vendor cannot make a 4K version of this video."),
        words=re.compile(r"version of this video is unavailable", re.IGNORECASE)),
    KnownAnswer(_codes(501), ErrorKind.FINAL, _generation_failed),
    KnownAnswer(_codes(505), ErrorKind.FINAL, lambda label, reason: _(
        "This kind of video is switched off at the vendor right now: {reason}", reason=reason or "-")),
)


def classify_kie_code(
    code: int | None, reason: str, phase: Phase, *, retry_after: float | None = None
) -> ProviderError:
    """A kie failure code (HTTP or body) as a ProviderError: the documented answers first."""
    reason = trim_reason(reason)
    known = known_answer(KIE_ANSWERS, (code,), reason, ProviderName.KIE, status=code, retry_after=retry_after)
    if known is not None:
        return soften_for_upload(known, phase)
    if phase is Phase.POLL:
        return ProviderError(
            ErrorKind.RETRYABLE, _("{vendor} answered code {code}; asking again later.", vendor=_LABEL, code=code),
            retry_after=retry_after, status_code=code, detail=reason,
        )
    if code in (429, 455, 503):
        return ProviderError(
            ErrorKind.RETRYABLE,
            _("{vendor} is busy or in maintenance; the request will be sent again shortly.", vendor=_LABEL),
            retry_after=retry_after, status_code=code, detail=reason,
        )
    if code is not None and 400 <= code < 500 and code != 408:
        return soften_for_upload(final_error(ProviderName.KIE, code, reason), phase)
    error = ProviderError(
        ErrorKind.UNCERTAIN, _("{vendor} failed while handling the request (code {code}).", vendor=_LABEL, code=code),
        retry_after=retry_after, status_code=code, detail=reason,
    )
    return soften_for_upload(error, phase)


def failure_sentence(reason: str, code: int | None) -> str:
    """A failed task's sentence: the vendor's words, else what its code documents (never a bare code)."""
    if reason.strip() or code not in KIE_CODE_MEANINGS:
        return failure_message(reason)
    return KIE_CODE_MEANINGS[code]


class _Record(BaseModel):
    """The parts of record-info the client needs."""

    success_flag: int | None
    urls: list[str]
    resolution: str = ""
    fallback: bool = False
    complete_time: float | None = None
    took: float | None = None  # the vendor's completeTime - createTime
    error: str = ""
    error_code: int | None = None


class KieClient(VendorClient):
    """kie.ai's Veo 3.1 API, plus its file host (`ImageHost`)."""

    name = ProviderName.KIE

    def __init__(
        self, base_url: str, api_key: SecretStr, settings: Settings, clock: Clock,
        *, upload_base_url: str | None = None, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, settings, clock, transport=transport)
        self._upload_base_url = (upload_base_url or settings.kie_upload_base_url).rstrip("/")
        # When record-info lacks completeTime: when this process first saw the task succeed.
        self._first_success_seen: dict[str, float] = {}

    # --- envelope --------------------------------------------------------------------------------
    def _envelope(self, response: httpx.Response, phase: Phase) -> dict[str, Any]:
        """The `data` of a good envelope, or the classified error."""
        payload = json_or_none(response)
        retry_after = parse_retry_after(response.headers.get("Retry-After"), self._clock.now())
        code = as_int(payload.get("code")) if isinstance(payload, dict) else None
        if code is not None and code != 200:  # the envelope's code is the real status, whatever the HTTP one
            raise classify_kie_code(code, error_text(payload), phase, retry_after=retry_after)
        if not response.is_success:
            reason = error_text(payload, fallback=plain_body_text(response))
            raise classify_kie_code(response.status_code, reason, phase, retry_after=retry_after)
        if not isinstance(payload, dict):
            raise unreadable_body(self.name, phase, response.status_code, "not JSON")
        data = payload.get("data")
        return data if isinstance(data, dict) else {}

    # --- submit ----------------------------------------------------------------------------------
    async def submit(self, job: JobSpec, *, callback_url: str | None = None) -> str:
        if job.mode is Mode.EXTEND:
            return await self._submit("/api/v1/veo/extend", self._parse_generate, build_extend_body(job, callback_url))
        resolution = UPSCALE_MODES.get(job.mode)
        if resolution is not None:
            return await self._start_upscale(resolution, str(job.params["source_task_id"]), callback_url)
        return await self._submit("/api/v1/veo/generate", self._parse_generate, build_kie_body(job, callback_url))

    async def _start_upscale(self, resolution: str, source: str, callback_url: str | None) -> str:
        """Ask for the upscale once (kie starts it on the first request) and name the job after it.

        A 4K request costs credits at kie, so it is a submit (never resent when unsure); 1080p is a
        GET, safe to repeat. "Processing" answers are fine here: a request made before already runs."""
        phase = Phase.SUBMIT if resolution == "4k" else Phase.POLL
        await self._upscale(resolution, source, phase, callback_url=callback_url, operation=f"submit_{resolution}")
        return upscale_task_id(resolution, source)

    async def _upscale(
        self, resolution: str, source: str, phase: Phase, *, callback_url: str | None = None,
        operation: str = "poll_1080p",
    ) -> str | None:
        """One request to an upscale endpoint: the file's URL, or None while it is being made."""
        method, path = UPSCALE_PATHS[resolution]
        request: dict[str, Any] = {"taskId": source, "index": 0}
        if callback_url:
            request["callBackUrl"] = callback_url
        where = {"params": request} if method == "GET" else {"json": request}
        return await self._http.call(
            operation, phase, method, path, lambda response: self._parse_upscale(response, phase), **where)

    def _parse_generate(self, response: httpx.Response) -> str:
        data = self._envelope(response, Phase.SUBMIT)
        task_id = first_text(data.get("taskId"), data.get("task_id"))
        if not task_id:
            raise unreadable_body(self.name, Phase.SUBMIT, response.status_code, "no task id")
        return task_id.strip()

    # --- poll ------------------------------------------------------------------------------------
    async def poll(self, task_id: str, job: JobSpec) -> PollResult:
        upscale = split_upscale_id(task_id)
        if upscale is not None:
            return await self._poll_upscale(*upscale)
        record = await self._poll("/api/v1/veo/record-info", self._parse_record, params={"taskId": task_id})
        flag = record.success_flag
        if flag in (2, 3):
            self._first_success_seen.pop(task_id, None)
            return PollResult(state=TaskState.FAILED, raw_status=f"successFlag={flag}",
                              error_message=failure_sentence(record.error, record.error_code),
                              vendor_seconds=record.took)
        if flag != 1:
            return PollResult(state=TaskState.RUNNING, raw_status="generating")
        if not record.urls:
            return PollResult(state=TaskState.FAILED, raw_status="success_without_url",
                              error_message=NO_LINK_MESSAGE)
        wants = job.resolution  # "720p", or the pass ordered with the video: "1080p" / "4k"
        made = record.resolution.lower()
        if wants not in UPGRADES or record.fallback or made.startswith(UPGRADES[wants].reported):
            self._first_success_seen.pop(task_id, None)
            return PollResult(state=TaskState.SUCCEEDED, raw_status="success", video_url=record.urls[0], progress=1.0,
                              vendor_seconds=record.took)
        return await self._upgrade(task_id, record, wants)

    def _forget_abandoned(self, now: float) -> None:
        """Drop sightings no poll will come back for (a job cancelled or timed out mid-upsample):
        any still wanted would have fallen back to 720p long before."""
        if len(self._first_success_seen) > FIRST_SEEN_PRUNE_AT:
            horizon = now - 3 * HD_GRACE_SECONDS
            for task_id in [t for t, seen in self._first_success_seen.items() if seen < horizon]:
                del self._first_success_seen[task_id]

    def _parse_record(self, response: httpx.Response) -> _Record:
        data = self._envelope(response, Phase.POLL)
        if not data:
            raise unreadable_body(self.name, Phase.POLL, response.status_code, "no data")
        reply = as_object(data.get("response"))
        return _Record(
            success_flag=as_int(data.get("successFlag")),
            urls=result_urls(reply.get("resultUrls")) or result_urls(data.get("resultUrls")),
            resolution=str(reply.get("resolution") or ""),
            fallback=bool(data.get("fallbackFlag")),
            complete_time=epoch_seconds(data.get("completeTime")),
            took=vendor_duration(data.get("createTime"), data.get("completeTime")),
            error=first_text(data.get("errorMessage")),
            error_code=as_int(data.get("errorCode")),
        )

    async def _poll_upscale(self, resolution: str, source: str) -> PollResult:
        """An upscale follow-up: ask its endpoint again; the file's URL ends the job."""
        url = await self._upscale(resolution, source, Phase.POLL, operation=f"poll_{resolution}")
        if url:
            return PollResult(state=TaskState.SUCCEEDED, raw_status=f"success_{resolution}", video_url=url,
                              progress=1.0)
        return PollResult(state=TaskState.RUNNING, raw_status=f"upscaling_{resolution}")

    async def _upgrade(self, task_id: str, record: _Record, resolution: str) -> PollResult:
        """Ask for the upscaled file; not ready = still RUNNING, until the grace period ends. Whatever
        happens the 720p video is delivered (saying so, without the pass's surcharge) rather than lost."""
        upgrade = UPGRADES[resolution]
        try:
            url = await self._upscale(resolution, task_id, Phase.POLL)
        except ProviderError as error:
            if error.kind is ErrorKind.FINAL:  # kie will never make it: the 720p video is the result now
                return self._lesser(task_id, record, upgrade, late=False)
            url = None  # a passing failure: ask again later
        if url:
            self._first_success_seen.pop(task_id, None)
            return PollResult(state=TaskState.SUCCEEDED, raw_status=f"success_{resolution}", video_url=url,
                              progress=1.0)
        now = self._clock.now()
        first_seen = self._first_success_seen.setdefault(task_id, now)
        self._forget_abandoned(now)
        completed = record.complete_time
        if completed is None or completed > now:
            # Missing, or in the future (a date string read in the wrong time zone): waiting on it
            # could outlast the job's timeout and lose the video, so count from our own first sighting.
            completed = first_seen
        if now >= completed + upgrade.grace_seconds:
            return self._lesser(task_id, record, upgrade, late=True)
        # Still waiting for the pass, but the 720p file exists: the poller delivers it if the job's
        # deadline comes before the upscaled file does.
        return PollResult(state=TaskState.RUNNING, raw_status=f"upsampling_{resolution}", finishing=True,
                          video_url=record.urls[0])

    def _lesser(self, task_id: str, record: _Record, upgrade: Upgrade, *, late: bool) -> PollResult:
        """The 720p video as the result of a job that ordered a pass kie did not deliver."""
        self._first_success_seen.pop(task_id, None)
        return PollResult(state=TaskState.SUCCEEDED, raw_status="success_720p_fallback", video_url=record.urls[0],
                          progress=1.0, note=upgrade.late_note if late else upgrade.failed_note,
                          uncharged=(upgrade.cost_key,))

    def _parse_upscale(self, response: httpx.Response, phase: Phase) -> str | None:
        """The upscaled file's URL (1080p: `data.resultUrl`; 4K: `data.resultUrls`), or None while kie
        answers "processing" (expected for minutes, not an error)."""
        payload = json_or_none(response)
        if isinstance(payload, dict) and as_int(payload.get("code")) not in (200, None) \
                and _NOT_READY.search(error_text(payload)):
            return None
        data = self._envelope(response, phase)
        url = first_text(data.get("resultUrl"), data.get("result_url"), *result_urls(data.get("resultUrls")))
        return url.strip() or None

    # --- image hosting -----------------------------------------------------------------------------
    async def upload_image(self, data: bytes, filename: str, content_type: str) -> str:
        """Re-host an image on kie's file host (kept 3 days) and return its download URL."""
        safe_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename)[-80:] or "image"
        unique_name = f"{uuid.uuid4().hex[:12]}-{safe_name}"  # two members' "image.png" must not collide
        return await self._http.call(
            "upload", Phase.UPLOAD, "POST", f"{self._upload_base_url}/api/file-stream-upload",
            self._parse_upload,
            files={"file": (unique_name, data, content_type)},
            data={"uploadPath": UPLOAD_PATH, "fileName": unique_name},
        )

    def _parse_upload(self, response: httpx.Response) -> str:
        data = self._envelope(response, Phase.UPLOAD)
        url = first_text(data.get("downloadUrl"), data.get("fileUrl"))
        if not url:
            raise unreadable_body(self.name, Phase.UPLOAD, response.status_code, "no file URL")
        return url.strip()


def parse_kie_callback(payload: Any) -> tuple[str | None, PollResult]:
    """A kie completion callback as (task id, result). Record-info stays the source of truth:
    a success without URLs comes back RUNNING (poll to find out), and for 1080p jobs the URL here is
    the 720p one, so callers wanting 1080p should poll rather than deliver it."""
    if not isinstance(payload, dict):
        return None, PollResult(state=TaskState.RUNNING, raw_status="callback_unreadable")
    data = as_object(payload.get("data"))
    task_id = first_text(data.get("taskId"), data.get("task_id")) or None
    code = as_int(payload.get("code"))
    if code == 200:
        urls = result_urls(dig(data, "info", "resultUrls")) or result_urls(dig(data, "response", "resultUrls"))
        if urls:
            return task_id, PollResult(state=TaskState.SUCCEEDED, raw_status="callback_success",
                                       video_url=urls[0], progress=1.0)
        return task_id, PollResult(state=TaskState.RUNNING, raw_status="callback_without_url")
    if code is None:
        return task_id, PollResult(state=TaskState.RUNNING, raw_status="callback_unreadable")
    reason = first_text(payload.get("msg"), payload.get("message"))
    return task_id, PollResult(state=TaskState.FAILED, raw_status=f"callback_code={code}",
                               error_message=failure_sentence(reason, code))


def verify_kie_signature(
    task_id: str, timestamp: str, signature: str | None, key: str | bytes | SecretStr
) -> bool:
    """X-Webhook-Signature == base64(HMAC-SHA256(taskId + "." + timestamp, key)), compared in constant time."""
    if not signature or not task_id or not timestamp:
        return False
    if isinstance(key, SecretStr):
        key = key.get_secret_value()
    key_bytes = key.encode() if isinstance(key, str) else key
    if not key_bytes:
        return False
    digest = hmac.new(key_bytes, f"{task_id}.{timestamp}".encode(), hashlib.sha256).digest()
    expected = base64.b64encode(digest)
    return hmac.compare_digest(expected, signature.strip().encode())
