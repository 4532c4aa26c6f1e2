"""The job row as the rest of the bot sees it: `JobRecord`, plus the status words.

The database row is the source of truth; `JobRecord` is an immutable snapshot of one row so no
caller can mutate state behind the repository's back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from bot.catalog import Family, Mode, ProviderName, get_model
from bot.i18n import Text, _, from_json
from bot.settings import Settings
from bot.validation import JobSpec


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTING = "submitting"
    RUNNING = "running"
    UNCERTAIN = "uncertain"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES

    @property
    def word(self) -> Text:
        """The status as members read it ("generating", "timed out"), in their language."""
        return _STATUS_WORDS[self]

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES


ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.SUBMITTING, JobStatus.RUNNING, JobStatus.UNCERTAIN})
_STATUS_WORDS: dict[JobStatus, Text] = {
    JobStatus.QUEUED: _("queued"), JobStatus.SUBMITTING: _("submitting"), JobStatus.RUNNING: _("generating"),
    JobStatus.UNCERTAIN: _("checking with the vendor"), JobStatus.SUCCEEDED: _("done"),
    JobStatus.FAILED: _("failed"), JobStatus.TIMED_OUT: _("timed out"), JobStatus.CANCELLED: _("cancelled"),
}

TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMED_OUT, JobStatus.CANCELLED})
# Jobs that occupy a vendor slot (count against Settings.provider_max_in_flight).
IN_FLIGHT_STATUSES = frozenset({JobStatus.SUBMITTING, JobStatus.RUNNING, JobStatus.UNCERTAIN})


def deadline_for(settings: Settings, model_key: str, start: float, mode: str = "") -> float:
    """When a job started at `start` is given up: JOB_TIMEOUT_SECONDS, else the max runtime of its kind
    (a follow-up's own, e.g. a 4K pass, else the model's)."""
    limit = settings.job_timeout_seconds or get_model(model_key).timing_for(mode).max_runtime
    return start + limit


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"


@dataclass(frozen=True)
class JobRecord:
    """One `jobs` row."""

    id: int
    guild_id: int
    channel_id: int
    thread_id: int | None
    summary_message_id: int | None
    user_id: int
    family: Family
    model_key: str
    provider: ProviderName
    mode: Mode
    prompt: str
    request_json: str
    attachment_ids: str
    cost: int
    status: JobStatus
    provider_task_id: str | None
    raw_status: str | None
    video_url: str | None
    error_message: str | None
    created_at: float
    submitted_at: float | None
    vendor_done_at: float | None
    finished_at: float | None
    deadline_at: float | None
    next_due_at: float | None
    poll_count: int
    submit_attempts: int
    error_streak: int
    lease_owner: str | None
    lease_until: float | None
    delivery_state: DeliveryState
    delivery_attempts: int
    result_message_id: int | None
    delivered_at: float | None
    progress: float | None = None  # the vendor's last progress reading while running (0..1)
    locale: str | None = None  # the requester's Discord locale (public card and result language)
    guild_locale: str | None = None  # the server's locale, the fallback
    cancelled_by: int | None = None  # who cancelled it: the requester or a moderator
    parent_job_id: int | None = None  # the job whose button made this one
    follow_up: str | None = None  # which button: again, remix, extend, 1080p, 4k
    request_key: str | None = None  # the click that asked for it (one job per click)
    error_text: str | None = None  # error_message as a message id and parameters (bot.i18n.to_json)

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        """A `jobs` row from storage (any row type that reads columns by name)."""
        data = {name: row[name] for name in _FIELD_NAMES}
        data["family"] = Family(data["family"])
        data["provider"] = ProviderName(data["provider"])
        data["mode"] = Mode(data["mode"])
        data["status"] = JobStatus(data["status"])
        data["delivery_state"] = DeliveryState(data["delivery_state"])
        return cls(**data)

    @property
    def spec(self) -> JobSpec:
        """The validated request this job was created from."""
        return JobSpec.model_validate_json(self.request_json)

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def is_active(self) -> bool:
        return self.status.is_active

    @property
    def reason(self) -> str | None:
        """Why the job ended: the sentence the bot stored as a `Text` (so `translate` renders it in each
        reader's language), else the stored words as they are."""
        return from_json(self.error_text) or self.error_message

    @property
    def reader_locale(self) -> str | None:
        """The language public messages about this job are written in."""
        return self.locale or self.guild_locale

    @property
    def destination_channel_id(self) -> int:
        """Where the result goes first: the job's thread if it has one, else its channel."""
        return self.thread_id or self.channel_id


_FIELD_NAMES = tuple(f.name for f in fields(JobRecord))
JOB_COLUMNS = _FIELD_NAMES


@dataclass(frozen=True)
class KindHistory:
    """What the poll schedule plans one kind of job from (bot/jobs/schedule.py): how often it is ordered,
    when its jobs end, and what its successes cost."""

    model_key: str
    mode: str
    jobs: int  # among the server's latest submitted jobs
    durations: Sequence[float]  # submit-to-done of its latest successes
    failures: Sequence[float] = ()  # submit-to-done of its vendor's latest failures...
    finished: int | None = None  # ...among this many of the vendor's finished jobs (None: successes + failures)
    costed_jobs: int = 0  # successes the two figures below are read from
    mean_requests: float = 0.0
    progress_share: float = 0.0  # share of them that reported progress
