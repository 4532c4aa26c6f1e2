"""The one small interface every vendor client implements, and the words they share.

A client turns a `JobSpec` into the vendor's request, and the vendor's answers into `PollResult`
and `ProviderError`. The job service and poller only ever see these types, so a new vendor is a new
client class plus catalog entries, never new control flow.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, SkipValidation

from bot.catalog import ProviderName
from bot.i18n import _
from bot.validation import JobSpec


class TaskState(StrEnum):
    """A vendor task's state, normalised across every status string the vendors use."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class PollResult(BaseModel):
    state: TaskState
    raw_status: str = ""
    video_url: str | None = None  # SUCCEEDED: the video; RUNNING: a lesser one already made (kie 720p)
    # plain words, safe to show the member; SkipValidation keeps a bot.i18n Text as it is (pydantic would
    # make it a plain str), so the member reads it in their own language.
    error_message: SkipValidation[str | None] = None
    progress: float | None = None  # 0..1 where the vendor says
    # RUNNING in a last phase whose length progress cannot tell (kie's 1080p upsampling, 1-3 min
    # after the 720p file exists): polled sparsely, not extrapolated.
    finishing: bool = False
    # Terminal results: how long the task took by the vendor's own clock, where the vendor says
    # (finish - create). Recorded instead of the moment we looked, which is up to a poll gap late.
    vendor_seconds: float | None = None
    # SUCCEEDED with less than was ordered (a failed 1080p pass, its 720p video delivered): a sentence
    # for the member's result message, and the cost keys the delivered video did not earn.
    note: SkipValidation[str | None] = None
    uncharged: tuple[str, ...] = ()


# A finished task with no video link: the same sentence whichever vendor (or the poller) notices it.
NO_LINK_MESSAGE = _("The vendor said the video was done but sent no link to it.")


class ErrorKind(StrEnum):
    # The request provably never created a task (connection refused, 429, documented
    # "not created" codes): safe to send again later.
    RETRYABLE = "retryable"
    # The request may or may not have reached the vendor (timeout or reset after sending, 5xx):
    # never resend blindly; reconcile instead.
    UNCERTAIN = "uncertain"
    # The vendor refused for good (validation, content policy, auth, no credit): tell the member.
    FINAL = "final"


class ProviderError(Exception):
    """A failed vendor call, classified for the caller."""

    def __init__(
        self,
        kind: ErrorKind,
        user_message: str,
        *,
        retry_after: float | None = None,
        status_code: int | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(f"{kind.value}: {user_message}" + (f" ({detail})" if detail else ""))
        self.kind = kind
        self.user_message = user_message
        self.retry_after = retry_after
        self.status_code = status_code
        self.detail = detail

    @property
    def retryable(self) -> bool:
        return self.kind is ErrorKind.RETRYABLE


@runtime_checkable
class ProviderClient(Protocol):
    """One vendor API."""

    name: ProviderName

    async def submit(self, job: JobSpec, *, callback_url: str | None = None) -> str:
        """Create the vendor task and return its id (exactly as the vendor gave it)."""

    async def poll(self, task_id: str, job: JobSpec) -> PollResult:
        """Ask for the task's state once. Raises ProviderError; on a poll every kind but FINAL
        just means "ask again later"."""

    async def aclose(self) -> None:
        """Release the HTTP connection pool."""


class ImageHost(Protocol):
    """A vendor that re-hosts images so it can fetch them later (kie.ai's file upload)."""

    async def upload_image(self, data: bytes, filename: str, content_type: str) -> str:
        """Upload and return a URL the vendor can fetch for days."""
