"""`/veo`, `/sora`, `/kling`: parse options, defer, hand the request to the job service, show the outcome.

Thin on purpose: validation lives in `bot.validation` (through `JobService.validate`), policy and credits
in `JobService.precheck`/`create_job`, file checks in `bot.attachments`. Errors are not caught here; they
propagate to the one tree error handler (`cogs/errors.py`), which turns `InputError`, `Refusal`,
`AttachmentError` and the rest into one ephemeral message. A command is registered only when a provider
for its family is configured, so members never see a command that cannot work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Optional

import discord
import httpx
from discord import app_commands
from discord.ext import commands

from bot.discord_bot import FramecastBot
from bot.services import Services
from bot.attachments import AttachmentError, AttachmentProcessor
from bot.catalog import (
    Family,
    ImageRole,
    ModelSpec,
    ProviderName,
    duration_range,
    families_available,
    models_for,
    option_range,
    option_values,
)
from bot.i18n import _, translate
from bot.jobs.cards import describe_options  # noqa: F401  (re-exported: cogs.jobs imports it from here)
from bot.jobs.service import Requester
from bot.providers.registry import image_host
from bot.publishing.components import button_view, card_embed
from bot.publishing.render import thread_name
from bot.validation import GenerationRequest, ImageInput, InputError, JobSpec
from cogs.interaction import member_role_ids, require_guild

if TYPE_CHECKING:
    from bot.discord_bot import FramecastBot
    from bot.jobs.models import JobRecord
    from bot.services import Services

log = logging.getLogger(__name__)

COOLDOWN_RATE = 1
COOLDOWN_SECONDS = 5.0
SUMMARY_PROMPT_CHARS = 1500  # keeps the public summary under Discord's 2000-character limit

Attachment = Optional[discord.Attachment]


def member_cooldown_key(interaction: discord.Interaction) -> tuple[int | None, int]:
    return (interaction.guild_id, interaction.user.id)


class MemberCooldowns:
    """The per-member cooldown of the generation commands, with a way to give a slot back.

    A member whose request is refused for something they can fix (a wrong option, a bad file) should
    be able to resend at once; discord.py's own cooldown check keeps its buckets out of reach, so this
    hands it the buckets (`dynamic_cooldown`) and keeps a reference to reset them.
    """

    def __init__(self, rate: int = COOLDOWN_RATE, per: float = COOLDOWN_SECONDS) -> None:
        self.rate = rate
        self.per = per
        self._buckets: dict[tuple[int | None, int], app_commands.Cooldown] = {}

    def bucket_for(self, interaction: discord.Interaction) -> app_commands.Cooldown:
        """Called by discord.py when it has no live bucket for this member: a fresh one, remembered."""
        now = interaction.created_at.timestamp()
        for key in [k for k, b in self._buckets.items() if now > b._last + b.per]:
            del self._buckets[key]  # the same expiry discord.py applies to its own mapping
        bucket = app_commands.Cooldown(self.rate, self.per)
        self._buckets[member_cooldown_key(interaction)] = bucket
        return bucket

    def hit(self, interaction: discord.Interaction) -> None:
        """The same cooldown for a button or modal (they do not pass through the command's checks)."""
        key = member_cooldown_key(interaction)
        now = interaction.created_at.timestamp()
        bucket = self._buckets.get(key)
        if bucket is None or now > bucket._last + bucket.per:
            bucket = self.bucket_for(interaction)
        retry_after = bucket.update_rate_limit(now)
        if retry_after:
            raise app_commands.CommandOnCooldown(bucket, retry_after)

    def forgive(self, interaction: discord.Interaction) -> None:
        bucket = self._buckets.get(member_cooldown_key(interaction))
        if bucket is not None:
            bucket.reset()

    def checks(self, func: Any) -> Any:
        """The checks every generation command carries: guild only and this per-member cooldown."""
        func = app_commands.checks.dynamic_cooldown(self.bucket_for, key=member_cooldown_key)(func)
        func = app_commands.check(require_guild)(func)
        return app_commands.guild_only()(func)


def catalog_ranges(**ranges: tuple[int, int] | tuple[float, float] | None) -> Callable[[Any], Any]:
    """Give numeric options the min/max the catalog's models allow (`option_range`), so a new model or
    a changed range is one catalog entry. Applied first (lowest), before `app_commands.command` reads
    the signature; an option no configured model takes keeps no bounds (validation refuses it)."""

    def apply(func: Any) -> Any:
        for name, bounds in ranges.items():
            if bounds is None:
                continue
            low, high = bounds
            kind: type = float if isinstance(low, float) or isinstance(high, float) else int
            func.__annotations__[name] = Optional[app_commands.Range[kind, low, high]]
        return func

    return apply


def image_inputs(**attachments: discord.Attachment | None) -> dict[ImageRole, ImageInput]:
    """`first_frame=<Attachment>` -> {ImageRole.FIRST_FRAME: ImageInput(...)}; missing options skipped."""
    return {
        ImageRole(role): ImageInput(
            role=ImageRole(role), filename=attachment.filename, url=attachment.url,
            attachment_id=attachment.id, content_type=attachment.content_type, size=attachment.size,
        )
        for role, attachment in attachments.items()
        if attachment is not None
    }


def requester_from(interaction: discord.Interaction) -> Requester:
    """Who asked and where, as plain ids for the services."""
    user = interaction.user
    channel = interaction.channel
    parent_id = getattr(channel, "parent_id", None) if isinstance(channel, discord.Thread) else None
    assert interaction.guild_id is not None and interaction.channel_id is not None
    return Requester(
        guild_id=interaction.guild_id, channel_id=interaction.channel_id, user_id=user.id,
        role_ids=member_role_ids(user), parent_channel_id=parent_id,
        display_name=getattr(user, "display_name", "") or user.name,
        locale=str(interaction.locale) if interaction.locale else None,
        guild_locale=str(interaction.guild_locale) if interaction.guild_locale else None,
    )


def quote(text: str) -> str:
    """The prompt as a Markdown quote, mentions defused (AllowedMentions.none() is the second guard)."""
    safe = discord.utils.escape_mentions(text)
    if len(safe) > SUMMARY_PROMPT_CHARS:
        safe = safe[:SUMMARY_PROMPT_CHARS].rstrip() + "…"
    return "\n".join(f"> {line}" if line else ">" for line in safe.splitlines() or [""])


class GenerateCog(commands.Cog):
    """Owns the three generation commands and the attachment processor they share."""

    def __init__(self, bot: FramecastBot, *, attachments: AttachmentProcessor | None = None) -> None:
        self.bot = bot
        self._attachments = attachments
        self._own_http: httpx.AsyncClient | None = None
        self._commands: list[app_commands.Command[Any, ..., Any]] = []
        self.cooldowns = MemberCooldowns()

    @property
    def services(self) -> Services:
        return self.bot.services

    async def cog_load(self) -> None:
        if self._attachments is None:
            settings = self.bot.settings
            self._own_http = httpx.AsyncClient(timeout=settings.http_timeout_seconds, follow_redirects=True)
            self._attachments = AttachmentProcessor(
                self._own_http, max_bytes=settings.max_attachment_bytes, image_hosts=_image_hosts(self.services),
            )
        providers: set[ProviderName] = set(self.services.jobs.available_providers())
        builders = {Family.VEO: self._veo_command, Family.SORA: self._sora_command, Family.KLING: self._kling_command}
        for family in families_available(providers):
            command = builders[family](providers)
            self.bot.tree.add_command(command, override=True)
            self._commands.append(command)
        log.info("generation commands registered: %s", ", ".join(c.name for c in self._commands) or "none")

    async def cog_unload(self) -> None:
        for command in self._commands:
            self.bot.tree.remove_command(command.name)
        self._commands.clear()
        if self._own_http is not None:
            await self._own_http.aclose()

    # --- the shared flow ----------------------------------------------------------------------------

    async def generate(self, interaction: discord.Interaction, request: GenerationRequest) -> None:
        """Defer, validate, precheck, verify files, create the job, post the summary and thread. (A
        *Make a video* form defers before it reads its image back from the message.)"""
        if not interaction.response.is_done():
            await interaction.response.defer(ephemeral=True, thinking=True)
        jobs = self.services.jobs
        requester = requester_from(interaction)
        try:
            spec: JobSpec = jobs.validate(request)
            await jobs.precheck(requester, spec)
            if request.images:
                assert self._attachments is not None
                urls = await self._attachments.prepare(request.images, spec.provider)
                spec = spec.with_image_urls(urls)
        except (InputError, AttachmentError):
            self.cooldowns.forgive(interaction)  # a fixable mistake: let the member resend at once
            raise
        job = await jobs.create_job(requester, spec)
        await self.announce(interaction, job)

    async def announce(self, interaction: discord.Interaction, job: "JobRecord", *, channel: Any = None,
                       thread_allowed: bool = True) -> None:
        """Post the job's card (and thread) and tell the member, privately and briefly, where it is.
        `channel`: where the card goes (a button's job: its source job's channel or thread)."""
        try:
            summary, thread = await self.post_card(job, channel or interaction.channel, thread_allowed=thread_allowed)
            text = _accepted_text(job, summary, thread)
        except Exception:
            # The job exists and holds credits: the member must hear that it was accepted, not
            # "nothing was charged". Its row already names this channel, so results still arrive.
            log.exception("job %s: accepted, but setting up its card/thread failed", job.id)
            text = _accepted_text(job, None, None)
        await interaction.edit_original_response(content=translate(text, str(interaction.locale)),
                                                 allowed_mentions=discord.AllowedMentions.none())

    async def post_card(
        self, job: "JobRecord", channel: Any, *, thread_allowed: bool
    ) -> tuple[discord.Message | None, discord.Thread | None]:
        """The public card with the bot token (the interaction token dies in 15 minutes), and a thread
        on it, both recorded on the job. Either may be impossible (no permission, command used in a
        thread): results then go to the channel or thread itself, so this never fails the job.

        The thread is recorded before it is asked for: a public thread on a message has the message's
        id, so a bot killed between Discord making the thread and the row naming it still posts the
        result there. If the thread is refused, the record is taken back."""
        record = self.services.jobs.attach_destination
        channel_id = job.channel_id
        target: Any = channel if isinstance(channel, discord.abc.Messageable) else None
        if target is None:
            target = self.bot.get_partial_messageable(channel_id, guild_id=job.guild_id)
        cards = self.services.cards
        card, position = await cards.render_new(job)
        try:
            summary = await target.send(embed=card_embed(card), view=button_view(card.buttons),
                                        allowed_mentions=discord.AllowedMentions.none())
        except (discord.Forbidden, discord.HTTPException) as exc:
            log.warning("job %s: could not post the card in channel %s: %s", job.id, channel_id, exc)
            return None, None
        await cards.record_posted(job, channel_id, summary.id, position)
        threaded = thread_allowed and isinstance(channel, discord.TextChannel)
        await record(job.id, channel_id=channel_id, thread_id=summary.id if threaded else job.thread_id,
                     summary_message_id=summary.id)
        if not threaded:
            return summary, None
        try:
            thread = await summary.create_thread(name=thread_name(job.id, job.family.value, job.prompt))
        except (discord.Forbidden, discord.HTTPException) as exc:
            log.info("job %s: no thread on the card (%s); results go to the channel", job.id, exc)
            await record(job.id, channel_id=channel_id, thread_id=None, summary_message_id=summary.id)
            return summary, None
        if thread.id != summary.id:  # not so on Discord today; the row follows Discord either way
            await record(job.id, channel_id=channel_id, thread_id=thread.id, summary_message_id=summary.id)
        return summary, thread

    # --- the commands -------------------------------------------------------------------------------

    def _veo_command(self, providers: set[ProviderName]) -> app_commands.Command[Any, ..., Any]:
        models = models_for(Family.VEO, providers)
        cog = self

        @app_commands.command(name="veo", description="Make a video with Google Veo 3.1")
        @app_commands.describe(
            prompt="What should happen in the video",
            first_frame="Image the video starts from (PNG, JPEG, WebP)",
            last_frame="Image the video ends on (needs first_frame)",
            reference_1="Reference image (reference mode; not with frames)",
            reference_2="Second reference image",
            reference_3="Third reference image",
            model="Which Veo model",
            aspect_ratio="Shape of the video",
            enhance_prompt="Let the model improve the prompt (default on)",
            upsample="Deliver in 1080p or 4K (costs extra; 4K takes 5-10 minutes more)",
            seed="Seed for reproducible results",
        )
        @app_commands.choices(
            model=[app_commands.Choice(name=m.label, value=m.key) for m in models],
            aspect_ratio=_choices(models, lambda m: m.aspect_ratios),
            upsample=_choices(models, lambda m: m.upscales),
        )
        @cog.cooldowns.checks
        @catalog_ranges(seed=option_range(models, lambda m: m.seed_range))
        async def veo(
            interaction: discord.Interaction,
            prompt: str,
            first_frame: Attachment = None,
            last_frame: Attachment = None,
            reference_1: Attachment = None,
            reference_2: Attachment = None,
            reference_3: Attachment = None,
            model: Optional[str] = None,
            aspect_ratio: Optional[str] = None,
            enhance_prompt: Optional[bool] = None,
            upsample: Optional[str] = None,
            seed: Optional[int] = None,
        ) -> None:
            images = image_inputs(first_frame=first_frame, last_frame=last_frame, reference_1=reference_1,
                                  reference_2=reference_2, reference_3=reference_3)
            await cog.generate(interaction, GenerationRequest(
                family=Family.VEO, prompt=prompt, model=model, images=images, aspect_ratio=aspect_ratio,
                enhance_prompt=enhance_prompt, upsample=upsample, seed=seed,
            ))

        return veo

    def _sora_command(self, providers: set[ProviderName]) -> app_commands.Command[Any, ..., Any]:
        models = models_for(Family.SORA, providers)
        cog = self

        @app_commands.command(name="sora", description="Make a video with OpenAI Sora 2")
        @app_commands.describe(
            prompt="What should happen in the video",
            first_frame="Image the video starts from (PNG, JPEG, WebP)",
            orientation="Landscape or portrait",
            size="small (720p) or large (1080p, costs extra)",
            duration="Length in seconds",
            watermark="Keep the Sora watermark (default on)",
        )
        @app_commands.choices(
            orientation=_choices(models, lambda m: m.orientations),
            size=_choices(models, lambda m: m.sizes),
            duration=_choices(models, lambda m: m.durations, "{} s"),
        )
        @cog.cooldowns.checks
        async def sora(
            interaction: discord.Interaction,
            prompt: str,
            first_frame: Attachment = None,
            orientation: Optional[str] = None,
            size: Optional[str] = None,
            duration: Optional[int] = None,
            watermark: Optional[bool] = None,
        ) -> None:
            await cog.generate(interaction, GenerationRequest(
                family=Family.SORA, prompt=prompt, images=image_inputs(first_frame=first_frame),
                orientation=orientation, size=size, duration=duration, watermark=watermark,
            ))

        return sora

    def _kling_command(self, providers: set[ProviderName]) -> app_commands.Command[Any, ..., Any]:
        models = models_for(Family.KLING, providers)
        cog = self

        @app_commands.command(name="kling", description="Make a video with Kling v3")
        @app_commands.describe(
            prompt="What should happen in the video",
            first_frame="Image the video starts from (PNG, JPEG, WebP)",
            last_frame="Image the video ends on (needs first_frame)",
            model="std (faster, cheaper) or pro",
            audio="Generate sound too (costs extra)",
            aspect_ratio="Shape of a text-only video (with a frame, the image decides)",
            duration="Length in seconds",
            negative_prompt="What to avoid",
            cfg_scale="How closely to follow the prompt",
            shot_type="customize (your shots) or intelligent (the model plans shots)",
            multi_prompt="Several shots, separated by |",
        )
        @app_commands.choices(
            model=_choices(models, lambda m: [m.tier]),
            aspect_ratio=_choices(models, lambda m: m.aspect_ratios),
            shot_type=_choices(models, lambda m: m.shot_types),
        )
        @cog.cooldowns.checks
        @catalog_ranges(duration=option_range(models, duration_range),
                        cfg_scale=option_range(models, lambda m: m.cfg_scale_range))
        async def kling(
            interaction: discord.Interaction,
            prompt: str,
            first_frame: Attachment = None,
            last_frame: Attachment = None,
            model: Optional[str] = None,
            audio: Optional[bool] = None,
            aspect_ratio: Optional[str] = None,
            duration: Optional[int] = None,
            negative_prompt: Optional[str] = None,
            cfg_scale: Optional[float] = None,
            shot_type: Optional[str] = None,
            multi_prompt: Optional[str] = None,
        ) -> None:
            await cog.generate(interaction, GenerationRequest(
                family=Family.KLING, prompt=prompt, model=model,
                images=image_inputs(first_frame=first_frame, last_frame=last_frame),
                audio=audio, aspect_ratio=aspect_ratio, duration=duration, negative_prompt=negative_prompt,
                cfg_scale=cfg_scale, shot_type=shot_type, multi_prompt=multi_prompt,
            ))

        return kling


def _choices(
    models: list[ModelSpec], values: Callable[[ModelSpec], Iterable[Any]], name: str = "{}"
) -> list[app_commands.Choice[Any]]:
    """An option's choices from the catalog: every value the configured models offer."""
    return [app_commands.Choice(name=name.format(v), value=v) for v in option_values(models, values)]


def _accepted_text(job: "JobRecord", summary: discord.Message | None, thread: discord.Thread | None) -> str:
    """Short on purpose: the card says everything else, and keeps saying it."""
    if summary is not None:
        return _("Job #{id} accepted: [see its card]({link}).", id=job.id, link=summary.jump_url)
    return _("Job #{id} accepted; the result will be posted in this channel (or sent to you directly if I "
             "cannot post here).", id=job.id)


def _image_hosts(services: Services) -> dict[ProviderName, Any]:
    """Providers that re-host images for themselves (kie.ai's file upload), by provider name."""
    host = image_host(services.providers)
    return {ProviderName.KIE: host} if host is not None else {}


async def setup(bot: FramecastBot) -> None:
    await bot.add_cog(GenerateCog(bot))
