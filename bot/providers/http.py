"""Shared HTTP plumbing for the vendor clients: one httpx pool per vendor, metrics, and the error
classification that keeps a job from ever being submitted twice.

The rule that matters: a submit that may have reached the vendor (timeout or reset after the request
was sent, a 5xx, an unreadable 2xx) is UNCERTAIN and must never be resent blindly; only failures that
provably created nothing (connection refused, 429, maintenance) are RETRYABLE. Polls are reads, so
every poll failure is RETRYABLE.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, TypeVar

import httpx
from pydantic import SecretStr

from bot.catalog import ProviderName
from bot.clock import Clock
from bot.i18n import Text, _
from bot.metrics import VENDOR_LATENCY, VENDOR_REQUESTS
from bot.providers.base import ErrorKind, ProviderError
from bot.providers.transport import AiohttpTransport
from bot.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_REASON_CHARS = 300

# How the member and the operators know each vendor.
VENDOR_LABELS: dict[ProviderName, str] = {
    ProviderName.KKIAI: "kkiai",
    ProviderName.KIE: "kie.ai",
    ProviderName.KLING: "Kling gateway",
}

# Words vendors use when a prompt or image is refused on content grounds.
_POLICY_WORDS = re.compile(
    r"content polic|unsafe|violat|moderation|sensitive|prohibited|safety|nsfw|flagged|"
    r"rejected by|has been rejected|your request was rejected|inappropriate|porn",
    re.IGNORECASE,
)


class Phase(StrEnum):
    """Why a request is made; decides how its failures are classified."""

    SUBMIT = "submit"  # creates something: never resend when unsure
    POLL = "poll"  # a read: always safe to repeat
    UPLOAD = "upload"  # re-hosting an image: a duplicate upload is harmless


def trim_reason(text: object, limit: int = MAX_REASON_CHARS) -> str:
    """Vendor text made fit for a Discord message: one line, at most `limit` characters."""
    if text is None:
        return ""
    cleaned = " ".join(str(text).split())
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned


def looks_like_policy(text: str) -> bool:
    return bool(text) and _POLICY_WORDS.search(text) is not None


def parse_retry_after(value: str | None, now: float) -> float | None:
    """`Retry-After` as seconds from now: either delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def json_or_none(response: httpx.Response) -> Any:
    """The body as JSON, or None when it is not JSON."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
        return None


def plain_body_text(response: httpx.Response) -> str:
    """A non-JSON error body worth showing: short plain text only, never an HTML page or JSON."""
    if response.status_code >= 500:
        return ""
    text = response.text.strip()
    if not text or text[0] in "<{[":
        return ""
    return trim_reason(text)


def unwrap_upstream(payload: Any) -> Any:
    """A gateway error relaying the upstream's own error body as a JSON *string* in `message` (new-api
    does, e.g. Kling's `{"code":1301,"message":"..."}`): that inner body, else the payload as it is."""
    if not isinstance(payload, dict):
        return payload
    for text in (payload.get("message"), dig(payload, "error", "message"), payload.get("msg")):
        inner = _json_text(text)
        if isinstance(inner, dict):
            return unwrap_upstream(inner)
    return payload


def _json_text(text: Any) -> Any:
    """`text` parsed as JSON when it is a string holding a JSON object or array, else None."""
    if not isinstance(text, str) or not text.strip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def first_text(*candidates: object) -> str:
    """The first candidate that is a non-empty string (or an object with a `message`)."""
    for candidate in candidates:
        if isinstance(candidate, dict):
            candidate = candidate.get("message") or candidate.get("msg")
        if isinstance(candidate, str) and candidate.strip():
            return candidate
    return ""


def as_object(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (a missing or null part of a reply)."""
    return value if isinstance(value, dict) else {}


def dig(payload: Any, *path: str | int) -> Any:
    """payload[a][b]... or None when any step is missing or of the wrong type."""
    node = payload
    for key in path:
        if isinstance(key, int):
            if not isinstance(node, list) or len(node) <= key:
                return None
            node = node[key]
        elif isinstance(node, dict):
            node = node.get(key)
        else:
            return None
    return node


def error_text(payload: Any, fallback: str = "") -> str:
    """A vendor's reason from the usual places in an error body, never a raw JSON dump (a JSON string
    relayed from upstream is unwrapped first)."""
    inner = _json_text(payload)
    payload = unwrap_upstream(inner if isinstance(inner, dict) else payload)
    if isinstance(payload, dict):
        found = first_text(
            payload.get("error"), payload.get("message"), payload.get("msg"),
            payload.get("detail"), payload.get("fail_reason"), dig(payload, "data", "fail_reason"),
        )
        if found:
            return trim_reason(found)
        return trim_reason(fallback)
    if isinstance(payload, str):
        return trim_reason(payload)
    return trim_reason(fallback)


def error_code(payload: Any) -> str:
    """An error body's code as text (new-api: `code`, or `error.code`; upstream bodies unwrapped)."""
    payload = unwrap_upstream(payload)
    if not isinstance(payload, dict):
        return ""
    for candidate in (dig(payload, "error", "code"), payload.get("code")):
        if isinstance(candidate, (str, int)) and not isinstance(candidate, bool) and str(candidate).strip():
            return str(candidate).strip()
    return ""


@dataclass(frozen=True)
class KnownAnswer:
    """One answer a vendor documents, as a row of a client's table: what identifies it (an HTTP
    status, a body or error code, optionally words in the reason), whether it is final for the task
    (the job ends at once, and it is no outage: the breaker is not tripped) and the member's sentence."""

    codes: frozenset[str]  # matched against the HTTP status, the body code and the error code, as text
    kind: ErrorKind
    sentence: Callable[[str, str], str]  # (vendor label, vendor reason) -> the member's sentence
    words: re.Pattern[str] | None = None
    operator_note: str = ""  # logged as an error: something only the operator can fix

    def matches(self, codes: Sequence[int | str | None], reason: str) -> bool:
        if not any(str(code) in self.codes for code in codes if code is not None):
            return False
        return self.words is None or bool(self.words.search(reason))


def known_answer(
    table: Sequence[KnownAnswer], codes: Sequence[int | str | None], reason: str, provider: ProviderName,
    *, status: int | None = None, retry_after: float | None = None,
) -> ProviderError | None:
    """The first row of `table` that this answer matches, as a ProviderError; None when none does."""
    for row in table:
        if row.matches(codes, reason):
            label = VENDOR_LABELS.get(provider, str(provider))
            if row.operator_note:
                log.error("%s: %s (HTTP %s: %s)", label, row.operator_note, status, trim_reason(reason, 120))
            return ProviderError(row.kind, row.sentence(label, trim_reason(reason)), retry_after=retry_after,
                                 status_code=status, detail=trim_reason(reason))
    return None


# Answers of the new-api gateway (the Kling resellers, and unified APIs built on it), from its source.
GATEWAY_ANSWERS: tuple[KnownAnswer, ...] = (
    # An unknown task is HTTP 400 `task_not_exist` (not 404): final for that job, whatever the phase.
    KnownAnswer(frozenset({"task_not_exist"}), ErrorKind.FINAL, lambda label, reason: _(
        "{vendor} no longer knows this video's task, so it cannot finish.", vendor=label)),
    # HTTP 403 `insufficient_user_quota`: the operator's gateway account is empty, the key is fine.
    KnownAnswer(frozenset({"insufficient_user_quota"}), ErrorKind.FINAL, lambda label, reason: _(
        "The bot's {vendor} account is out of credit; tell the server owner.", vendor=label),
        operator_note="the gateway account behind the bot's API key is out of credit "
                      "(insufficient_user_quota): top it up"),
)


def final_error(
    provider: ProviderName, status: int | None, reason: str, *, policy: bool = False
) -> ProviderError:
    """A refusal the member must hear about, in a plain sentence."""
    label = VENDOR_LABELS.get(provider, str(provider))
    reason = trim_reason(reason)
    if status in (401, 403):
        message = _("The bot's {vendor} API key was refused; tell the server owner.", vendor=label)
    elif status == 402:
        message = _("The bot's {vendor} account is out of credit; tell the server owner.", vendor=label)
    elif (policy or looks_like_policy(reason)) and reason:
        message = _("The vendor rejected the prompt or images under its content policy: {reason}", reason=reason)
    elif policy or looks_like_policy(reason):
        message = _("The vendor rejected the prompt or images under its content policy.")
    elif reason:
        message = _("The vendor refused the request: {reason}", reason=reason)
    else:
        message = _("The vendor refused the request (HTTP {status}).", status=status)
    return ProviderError(ErrorKind.FINAL, message, status_code=status, detail=reason)


def classify_http_error(
    provider: ProviderName, phase: Phase, response: httpx.Response, now: float,
    *, reason: str | None = None,
) -> ProviderError:
    """Turn a non-2xx response into a ProviderError for the given phase."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    if reason is None:
        reason = error_text(json_or_none(response), fallback=plain_body_text(response))
    label = VENDOR_LABELS.get(provider, str(provider))
    if phase is Phase.POLL:
        return ProviderError(
            ErrorKind.RETRYABLE, _("{vendor} answered HTTP {status}; asking again later.", vendor=label, status=status),
            retry_after=retry_after, status_code=status, detail=reason,
        )
    if status in (429, 503):
        return ProviderError(
            ErrorKind.RETRYABLE, _("{vendor} is busy right now; the request will be sent again shortly.", vendor=label),
            retry_after=retry_after, status_code=status, detail=reason,
        )
    if 400 <= status < 500 and status != 408:
        error = final_error(provider, status, reason)
    else:  # 5xx and 408: the vendor may have acted on the request
        error = ProviderError(
            ErrorKind.UNCERTAIN, _("{vendor} failed while handling the request (HTTP {status}).", vendor=label, status=status),
            retry_after=retry_after, status_code=status, detail=reason,
        )
    return soften_for_upload(error, phase)


def soften_for_upload(error: ProviderError, phase: Phase) -> ProviderError:
    """Uploads may be repeated freely: an UNCERTAIN upload is just RETRYABLE."""
    if phase is Phase.UPLOAD and error.kind is ErrorKind.UNCERTAIN:
        return ProviderError(
            ErrorKind.RETRYABLE, error.user_message, retry_after=error.retry_after,
            status_code=error.status_code, detail=error.detail,
        )
    return error


def classify_transport_error(provider: ProviderName, phase: Phase, exc: httpx.TransportError) -> ProviderError:
    """A request that got no HTTP answer. Only failures before sending are safe to resend."""
    label = VENDOR_LABELS.get(provider, str(provider))
    detail = type(exc).__name__
    never_sent = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    if phase is Phase.POLL or never_sent:
        return ProviderError(
            ErrorKind.RETRYABLE, _("{vendor} could not be reached; trying again later.", vendor=label), detail=detail,
        )
    error = ProviderError(
        ErrorKind.UNCERTAIN, _("The connection to {vendor} broke after the request was sent.", vendor=label), detail=detail,
    )
    return soften_for_upload(error, phase)


def unreadable_body(provider: ProviderName, phase: Phase, status: int, what: str) -> ProviderError:
    """A 2xx we cannot use: on submit the task may exist, so UNCERTAIN."""
    label = VENDOR_LABELS.get(provider, str(provider))
    if phase is Phase.SUBMIT:
        return ProviderError(
            ErrorKind.UNCERTAIN, _("{vendor} answered but the reply could not be read ({what}).", vendor=label, what=what),
            status_code=status, detail=what,
        )
    return ProviderError(
        ErrorKind.RETRYABLE, _("{vendor} sent a reply that could not be read ({what}).", vendor=label, what=what),
        status_code=status, detail=what,
    )


def redacted(text: str, secret: str) -> str:
    """`text` with `secret` blanked out; a marked sentence stays marked (its parameters are redacted)."""
    if isinstance(text, Text):
        params = {name: redacted(value, secret) if isinstance(value, str) else value
                  for name, value in text.params.items()}
        return Text(text.msgid, params, text.msgid_plural, text.context)
    return text.replace(secret, "[REDACTED]")


class VendorHttp:
    """One httpx client per vendor (on aiohttp's pool: transport.py), with bearer auth, per-phase
    timeouts and metrics.

    `call` runs one request and hands the response to `parse`, which returns the value or raises
    ProviderError; transport failures are classified here. Every call records
    VENDOR_REQUESTS{provider, operation, outcome} and VENDOR_LATENCY.
    """

    def __init__(
        self,
        provider: ProviderName,
        base_url: str,
        api_key: SecretStr,
        settings: Settings,
        clock: Clock,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.clock = clock
        self._api_key = api_key.get_secret_value()
        self._poll_timeout = httpx.Timeout(settings.http_timeout_seconds)
        self._submit_timeout = httpx.Timeout(settings.submit_timeout_seconds)
        in_flight = max(1, settings.provider_max_in_flight)
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {api_key.get_secret_value()}",
                "Accept": "application/json",
                "User-Agent": "framecast/0.1",
            },
            timeout=self._poll_timeout,
            # Polls and submits share the pool: room for every in-flight job plus a few polls, never
            # more than the poller sends at once. aiohttp's pool, not httpx's: see transport.py.
            transport=transport or AiohttpTransport(
                max_connections=min(in_flight * 2 + 4, settings.poller_concurrency + 4)),
        )

    def timeout_for(self, phase: Phase) -> httpx.Timeout:
        return self._poll_timeout if phase is Phase.POLL else self._submit_timeout

    async def call(
        self,
        operation: str,
        phase: Phase,
        method: str,
        url: str,
        parse: Callable[[httpx.Response], T],
        **kwargs: Any,
    ) -> T:
        """Send one request and parse its answer; raises ProviderError, records metrics."""
        started = time.monotonic()
        outcome = "error"  # stays so only if something unforeseen (e.g. cancellation) escapes
        try:
            try:
                response = await self._client.request(
                    method, url, timeout=kwargs.pop("timeout", self.timeout_for(phase)), **kwargs
                )
            except httpx.TransportError as exc:
                raise classify_transport_error(self.provider, phase, exc) from exc
            log.debug("%s %s %s -> HTTP %s", self.provider, operation, method, response.status_code)
            try:
                result = parse(response)
            except ProviderError:
                raise
            except Exception as exc:  # a body shape nobody foresaw: never crash the caller
                log.warning("%s %s: unexpected reply shape (%s)", self.provider, operation, type(exc).__name__)
                raise unreadable_body(self.provider, phase, response.status_code, "unexpected shape") from exc
            outcome = "ok"
            return result
        except ProviderError as error:
            outcome = error.kind.value
            clean = self.without_key(error)
            log.info(
                "%s %s failed: %s (HTTP %s, %s)", self.provider, operation, clean.kind.value,
                clean.status_code, clean.detail[:120],
            )
            if clean is error:
                raise
            raise clean from None  # the original quotes our key; do not chain it
        finally:
            VENDOR_REQUESTS.labels(self.provider.value, operation, outcome).inc()
            VENDOR_LATENCY.labels(self.provider.value, operation).observe(time.monotonic() - started)

    def without_key(self, error: ProviderError) -> ProviderError:
        """A vendor that echoes our key in an error body must not put it in a member's message (or a log)."""
        key = self._api_key
        if len(key) < 4 or (key not in error.user_message and key not in error.detail):
            return error
        return ProviderError(
            error.kind, redacted(error.user_message, key), retry_after=error.retry_after,
            status_code=error.status_code, detail=error.detail.replace(key, "[REDACTED]"),
        )

    async def aclose(self) -> None:
        await self._client.aclose()


class VendorClient:
    """What the three vendor clients share: one `VendorHttp` pool, the clock, the submit and poll
    calls, the usual "2xx with a JSON object" check, and `aclose`. Subclasses set `name` and parse."""

    name: ProviderName
    # The vendor's documented answers (final or retryable, with their sentences), checked before the
    # generic classification by HTTP status.
    answers: tuple[KnownAnswer, ...] = ()

    def __init__(
        self, base_url: str, api_key: SecretStr, settings: Settings, clock: Clock,
        *, transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = VendorHttp(self.name, base_url, api_key, settings, clock, transport=transport)
        self._clock = clock

    async def _submit(self, path: str, parse: Callable[[httpx.Response], T], body: dict[str, Any]) -> T:
        """POST the create body: the one request that must never be resent when unsure."""
        return await self._http.call("submit", Phase.SUBMIT, "POST", path, parse, json=body)

    async def _poll(
        self, path: str, parse: Callable[[httpx.Response], T], *, operation: str = "poll", **kwargs: Any
    ) -> T:
        """GET the task's state (a read, safe to repeat); `operation` names it in the metrics."""
        return await self._http.call(operation, Phase.POLL, "GET", path, parse, **kwargs)

    def _json_object(self, response: httpx.Response, phase: Phase) -> dict[str, Any]:
        """The body of a successful answer, or the classified error: a documented answer first, then
        the HTTP status, then the shape."""
        payload = json_or_none(response)
        if not response.is_success:
            raise self._known_answer(response, payload) or classify_http_error(
                self.name, phase, response, self._clock.now())
        if not isinstance(payload, dict):
            raise unreadable_body(self.name, phase, response.status_code, "not JSON")
        return payload

    def _known_answer(self, response: httpx.Response, payload: Any) -> ProviderError | None:
        """The row of `answers` this response matches (by HTTP status or error code), as an error."""
        if not self.answers:
            return None
        return known_answer(
            self.answers, (response.status_code, error_code(payload)), error_text(payload), self.name,
            status=response.status_code,
            retry_after=parse_retry_after(response.headers.get("Retry-After"), self._clock.now()))

    async def aclose(self) -> None:
        await self._http.aclose()
