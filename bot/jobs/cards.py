"""The job card: the public message a job's thread hangs on, kept telling the truth about the job.

Two halves, both Discord-agnostic:
- `render_card(job, context)` -> `Card`: the embed as plain data (title, description, fields, colour,
  buttons), in the reader's language, within Discord's embed limits;
- `CardKeeper`: a loop of its own (never the poller's, so a card edit never delays a result) that
  compares each open card's last shown state (`job_cards`, written after every edit) with its job
  and edits the cards that moved on. The comparison is the outbox: a bot killed between a job's end
  and its card's edit makes that edit after the restart. Progress comes from the poller's own polls
  (`jobs.progress`); the keeper never calls a vendor.

Edits: at every change of shown status, and for progress or queue position at most once every
`PROGRESS_EDIT_SECONDS`, at most `MAX_PROGRESS_EDITS` times per job; the final edit always happens.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bot.catalog import MODELS_BY_KEY, ProviderName
from bot.clock import Clock, sleep_or_wake
from bot.i18n import Joined, _, _n, join, option_name, translate
from bot.jobs.models import JobRecord, JobStatus
from bot.validation import JobSpec, mode_name
from storage.cards import CardStore

if TYPE_CHECKING:
    from bot.publishing.base import Publisher

log = logging.getLogger(__name__)

PROGRESS_EDIT_SECONDS = 15.0
MAX_PROGRESS_EDITS = 12
TICK_SECONDS = 2.0
BATCH = 200
EDIT_CONCURRENCY = 4
ESTIMATE_CACHE_SECONDS = 60.0
HISTORY_JOBS = 50

# Discord's embed limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000
PROMPT_MAX = 1500

COLOURS: dict[str, int] = {
    "queued": 0x95A5A6, "generating": 0x3498DB, "succeeded": 0x2ECC71,
    "failed": 0xE74C3C, "timed_out": 0xE67E22, "cancelled": 0x607D8B,
}

CANCEL, AGAIN, REMIX, EXTEND, UPSCALE_1080P, UPSCALE_4K = "cancel", "again", "remix", "extend", "1080p", "4k"
BUTTON_LABELS: dict[str, str] = {
    CANCEL: "Cancel", AGAIN: "Again", REMIX: "Remix", EXTEND: "Extend", UPSCALE_1080P: "1080p", UPSCALE_4K: "4K",
}


def card_status(status: JobStatus) -> str:
    """How a job status shows on its card (the same mapping as storage.cards.CARD_STATUS_SQL)."""
    if status is JobStatus.QUEUED:
        return "queued"
    if status.is_active:
        return "generating"
    return status.value


@dataclass(frozen=True)
class Button:
    """A persistent button: its custom id carries the action and the job (`fc:<action>:<job id>`)."""

    action: str
    job_id: int
    label: str
    disabled: bool = False

    @property
    def custom_id(self) -> str:
        return f"fc:{self.action}:{self.job_id}"


@dataclass(frozen=True)
class Card:
    title: str
    description: str
    colour: int
    fields: tuple[tuple[str, str], ...]
    footer: str
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class CardContext:
    """What the card says beyond the job row: where it waits, how long jobs like it take, the result link."""

    position: int | None = None
    waiting_for: str | None = None
    typical_seconds: float | None = None
    result_link: str | None = None


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def defuse(text: str) -> str:
    """User text in a card renders inert (embeds never ping; this keeps `@everyone` from even looking live)."""
    return text.replace("@", "@\u200b")


def describe_options(spec: JobSpec) -> Joined:
    """`mode: text · 16:9 · 8s · enhance_prompt: on` style summary of the chosen parameters (each piece
    rendered in the reader's language by `translate`)."""
    parts: list[str] = [_("mode: {mode}", mode=mode_name(spec.mode))]
    for name, value in spec.params.items():
        if name == "multi_prompt":
            parts.append(_n("{n} shot", "{n} shots", n=len(value)))
        elif name == "negative_prompt":
            parts.append(_("negative prompt"))
        elif isinstance(value, bool):
            parts.append(_("{option}: {state}", option=option_name(name), state=_("on") if value else _("off")))
        elif name == "duration":
            parts.append(_("{seconds}s", seconds=value))
        else:
            parts.append(_("{option}: {value}", option=option_name(name), value=defuse(str(value))))
    if spec.images:
        parts.append(_n("{n} image", "{n} images", n=len(spec.images)))
    return join(parts, " · ")


def model_label(model_key: str) -> str:
    spec = MODELS_BY_KEY.get(model_key)
    return spec.label if spec else model_key


def status_line(job: JobRecord, context: CardContext, locale: str | None) -> str:
    """The card's status, in the reader's language."""
    shown = card_status(job.status)
    if shown == "queued":
        text = _("Queued") if not context.position else _("Queued: number {position} in line",
                                                          position=context.position)
        line = translate(text, locale)
        if context.waiting_for:
            line += "\n" + translate(_("Waiting for {what}.", what=context.waiting_for), locale)
        return line
    if shown == "generating":
        started = int(job.submitted_at or job.created_at)
        lines = [translate(_("Generating, started <t:{started}:R>", started=started), locale)]
        if job.progress is not None:
            lines.append(translate(_("Progress: {percent}%", percent=round(job.progress * 100)), locale))
        if context.typical_seconds:
            minutes = max(1, round(context.typical_seconds / 60))
            lines.append(translate(_("Usually ready in about {minutes} min.", minutes=minutes), locale))
        return "\n".join(lines)
    return translate(_final_line(job, context, locale), locale)


def _final_line(job: JobRecord, context: CardContext, locale: str | None = None) -> str:
    if job.status is JobStatus.SUCCEEDED:
        return _("Done: [see the video]({link})", link=context.result_link) if context.result_link else _("Done")
    if job.status is JobStatus.FAILED:
        # A reason the bot wrote itself is a catalogued sentence: shown in the reader's language.
        reason = _cut(" ".join(translate(job.reason or "", locale).split()), 300).strip(" .") or None
        if reason:
            return _("Failed: {reason}. Nothing was charged.", reason=defuse(reason))
        return _("Failed; the vendor did not say why. Nothing was charged.")
    if job.status is JobStatus.TIMED_OUT:
        return _("Timed out: it took far longer than usual. Nothing was charged.")
    if job.cancelled_by:
        return _("Cancelled by <@{user}>. Nothing was charged.", user=job.cancelled_by)
    return _("Cancelled. Nothing was charged.")


def render_card(job: JobRecord, context: CardContext) -> Card:
    """The job's card as it should look now."""
    locale = job.reader_locale
    shown = card_status(job.status)
    title = translate(_("Job #{id} · /{family} · {model}", id=job.id, family=job.family.value,
                        model=model_label(job.model_key)), locale)
    prompt = defuse(_cut(job.prompt, PROMPT_MAX))
    description = "\n".join(f"> {line}" if line else ">" for line in prompt.splitlines() or [""])
    try:
        spec: JobSpec | None = job.spec
    except ValueError:
        spec = None
    fields: list[tuple[str, str]] = [(translate(_("Status"), locale), status_line(job, context, locale))]
    if spec is not None:
        fields.append((translate(_("Options"), locale), translate(describe_options(spec), locale)))
        if spec.images:
            names = ", ".join(defuse(i.filename or i.role.value) for i in spec.images)
            fields.append((translate(_("Images"), locale), names))
    fields.append((translate(_("Requested by"), locale), f"<@{job.user_id}>"))
    buttons: tuple[Button, ...] = ()
    if job.is_active:
        buttons = (Button(CANCEL, job.id, BUTTON_LABELS[CANCEL]),)
    footer = translate(_("Framecast · job #{id}", id=job.id), locale)
    return fit(Card(title=title, description=description, colour=COLOURS.get(shown, COLOURS["queued"]),
                    fields=tuple(fields), footer=footer, buttons=buttons))


def fit(card: Card) -> Card:
    """Cut every part to Discord's limits, the description last, so the total stays under 6000."""
    title = _cut(card.title, TITLE_MAX)
    fields = tuple((_cut(name, FIELD_NAME_MAX), _cut(value or "-", FIELD_VALUE_MAX)) for name, value in card.fields[:25])
    footer = _cut(card.footer, FOOTER_MAX)
    used = len(title) + len(footer) + sum(len(n) + len(v) for n, v in fields)
    description = _cut(card.description, max(1, min(DESCRIPTION_MAX, EMBED_TOTAL_MAX - used)))
    return Card(title=title, description=description, colour=card.colour, fields=fields, footer=footer,
                buttons=card.buttons)


def message_link(guild_id: int, channel_id: int, message_id: int) -> str:
    return f"https://discord.com/channels/{guild_id}/{channel_id}/{message_id}"


class CardKeeper:
    """Keeps every open card in step with its job; its own loop, separate from delivery."""

    def __init__(self, *, store: CardStore, repository: Any, clock: Clock, settings: Any,
                 publisher: Publisher) -> None:
        self.store = store
        self.repository = repository
        self.clock = clock
        self.settings = settings
        self.publisher = publisher
        self._estimates: dict[tuple[str, str], tuple[float, float | None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self.edits_made = 0

    # --- what a card needs to know ----------------------------------------------------------------
    async def context_for(self, job: JobRecord, position: int | None = None) -> CardContext:
        link = None
        if job.result_message_id:
            link = message_link(job.guild_id, job.destination_channel_id, job.result_message_id)
        waiting = None
        if job.status is JobStatus.QUEUED:
            if position is None:
                position = (await self.store.queue_positions([job.id])).get(job.id)
            waiting = await self.waiting_for(job)
        typical = await self.typical_seconds(job.model_key, job.mode.value) if job.is_active else None
        return CardContext(position=position, waiting_for=waiting, typical_seconds=typical, result_link=link)

    async def waiting_for(self, job: JobRecord) -> str:
        """What holds a queued job back: the vendor's cap of videos at a time, kie's submit window, or its turn."""
        locale = job.reader_locale
        window = 10.0
        in_flight, recent = await self.store.vendor_load(job.provider.value, self.clock.now() - window)
        if in_flight >= self.settings.provider_max_in_flight:
            return translate(_("a free slot at the vendor ({busy} videos are being made, the most it takes at once)",
                               busy=in_flight), locale)
        if job.provider is ProviderName.KIE and recent >= self.settings.kie_submits_per_10s:
            return translate(_("kie.ai's submit window (it takes {count} new videos every 10 seconds)",
                               count=self.settings.kie_submits_per_10s), locale)
        return translate(_("its turn; it starts in a moment"), locale)

    async def typical_seconds(self, model_key: str, mode: str) -> float | None:
        """Median submit-to-done time of the kind's latest successes, else the catalog's prior."""
        now = self.clock.now()
        cached = self._estimates.get((model_key, mode))
        if cached is not None and now - cached[0] < ESTIMATE_CACHE_SECONDS:
            return cached[1]
        durations = await self.repository.recent_durations(model_key, mode, HISTORY_JOBS)
        spec = MODELS_BY_KEY.get(model_key)
        value = statistics.median(durations) if len(durations) >= 3 else (spec.timing.p50 if spec else None)
        self._estimates[(model_key, mode)] = (now, value)
        return value

    async def render_new(self, job: JobRecord) -> tuple[Card, int | None]:
        """A new job's card, and the queue position it shows (stored, so a later edit knows if it moved)."""
        context = await self.context_for(job)
        return render_card(job, context), context.position

    async def record_posted(self, job: JobRecord, channel_id: int, message_id: int, card_position: int | None) -> None:
        await self.store.record(job.id, channel_id=channel_id, message_id=message_id,
                                status=card_status(job.status), position=card_position, now=self.clock.now())

    # --- the loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self._task is None or self._task.done():
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name="card-keeper")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        from storage.database import mark_background

        mark_background()  # members' commands go first on the database
        while not self._stopping:
            self._wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("card keeper tick failed")
            if self._stopping:
                break
            await self._idle()

    async def _idle(self) -> None:
        """Sleep a tick on the bot's clock (the benchmark's simulated one too), or until woken."""
        await sleep_or_wake(self.clock, self._wake, TICK_SECONDS)

    async def run_once(self) -> int:
        """Edit every card that needs it now; returns the number of edits made."""
        now = self.clock.now()
        rows = await self.store.due(now=now, progress_gap=PROGRESS_EDIT_SECONDS, max_edits=MAX_PROGRESS_EDITS,
                                    limit=BATCH)
        if not rows:
            return 0
        from storage.cards import CardRow

        pairs = [(JobRecord.from_row(row), CardRow.from_row(row)) for row in rows]
        positions = await self.store.queue_positions([j.id for j, _c in pairs if j.status is JobStatus.QUEUED])
        semaphore = asyncio.Semaphore(EDIT_CONCURRENCY)

        async def one(job: JobRecord, card: Any) -> int:
            async with semaphore:
                return await self._update(job, card, positions.get(job.id), now)

        done = await asyncio.gather(*(one(job, card) for job, card in pairs))
        return sum(done)

    async def _update(self, job: JobRecord, card: Any, position: int | None, now: float) -> int:
        shown = card_status(job.status)
        final = job.is_terminal
        state_change = shown != card.shown_status
        if not final and not state_change and shown == "queued" and position == card.shown_position:
            await self.store.touch(job.id, now)  # nothing to show; look again after the gap
            return 0
        view = render_card(job, await self.context_for(job, position))
        try:
            exists = await self.publisher.edit_card(job, card.channel_id, card.message_id, view)
        except Exception as error:  # noqa: BLE001 - retried next tick; the row still says what the card shows
            log.warning("job %s: card edit failed (%s); retrying", job.id, error)
            return 0
        if not exists:
            log.info("job %s: its card is gone; not re-made", job.id)
            await self.store.close(job.id)
            return 0
        await self.store.mark_shown(job.id, status=shown, progress=job.progress, position=position, now=now,
                                    final=final, counted=not state_change and not final)
        self.edits_made += 1
        return 1

