"""The buttons (Again, Remix, Extend, 1080p, 4K, Cancel), their modals, the **Make a video** message
command and `/help`.

Thin: the click's job, checks and idempotency are `bot.jobs.actions.JobActions` and `JobService`;
the card and thread are posted by the generate cog, exactly as for a slash command. A click is
answered within Discord's 3 seconds (a deferral or a modal), and every "no" is private, in the
clicker's language.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.catalog import Family, ImageRole, Mode, ModelSpec, models_for
from bot.errors import Refusal
from bot.help import help_text
from bot.i18n import _, translate
from bot.jobs.actions import PROMPT_ACTIONS, JobActions
from bot.jobs.cards import CANCEL, EXTEND
from bot.validation import GenerationRequest, ImageInput, InputError, JobSpec
from cogs.errors import describe, send_ephemeral, unwrap
from cogs.generate import GenerateCog, requester_from
from cogs.interaction import member_role_ids
from cogs.jobs import is_moderator

if TYPE_CHECKING:
    from bot.discord_bot import FramecastBot
    from bot.services import Services
    from bot.jobs.models import JobRecord

log = logging.getLogger(__name__)
_NO_IMAGE = _("That message has no PNG, JPEG or WebP image to start a video from. "
              "Use **Make a video** on a message with an image attached.")

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MODAL_TITLE_MAX = 45
# Forms are stateless: the form's id says what it is for and its fields have fixed ids, so a submit is
# answered the same way whether this process opened the form or a restart came in between (discord.py
# keeps open modals in memory only; ours are never left there, see `_stateless`).
PROMPT_MODAL_ID = re.compile(r"fc-modal:(?P<action>remix|extend):(?P<job_id>[0-9]{1,20}):[0-9a-f]+")
MAKE_MODAL_ID = re.compile(r"fc-make:(?P<message_id>[0-9]{1,20}):[0-9a-f]+")
MODAL_PREFIXES = ("fc-modal:", "fc-make:")
PROMPT_FIELD, MODEL_FIELD = "fc-prompt", "fc-model"
TEXT_INPUT_MAX = 4000
SELECT_OPTIONS_MAX = 25


def first_image(message: discord.Message) -> discord.Attachment | None:
    """The message's first PNG, JPEG or WebP attachment (declared type, else file name)."""
    for attachment in message.attachments:
        kind = (attachment.content_type or "").split(";")[0].strip().lower()
        if kind in IMAGE_TYPES or (not kind and attachment.filename.lower().endswith(IMAGE_SUFFIXES)):
            return attachment
    return None


def frame_models(providers: set[Any]) -> list[ModelSpec]:
    """Configured models that start from a first frame, cheapest first within each family."""
    models = [m for family in Family for m in models_for(family, providers) if Mode.FRAMES in m.modes]
    return models[:SELECT_OPTIONS_MAX]


def request_for(model: ModelSpec, prompt: str, image: discord.Attachment) -> GenerationRequest:
    """A slash command's request for `model` with `image` as the first frame."""
    frame = ImageInput(role=ImageRole.FIRST_FRAME, filename=image.filename, url=image.url,
                       attachment_id=image.id, content_type=image.content_type, size=image.size)
    choice: dict[str, Any] = {}
    if model.family is Family.VEO:
        choice["model"] = model.key
    elif model.family is Family.KLING:
        choice.update(model=model.tier, audio=bool(model.audio))
    return GenerationRequest(family=model.family, prompt=prompt, images={ImageRole.FIRST_FRAME: frame}, **choice)


def _stateless(modal: discord.ui.Modal) -> discord.ui.Modal:
    """A form discord.py does not keep: stopped before it is sent, so its submit reaches only
    `ActionsCog.on_interaction`, which reads everything from the ids, restart or not."""
    modal.stop()
    return modal


def prompt_form(action: str, source: JobRecord, locale: str | None) -> discord.ui.Modal:
    """Remix (the prompt pre-filled, editable) and Extend (what happens next)."""
    title = _("Remix job #{id}", id=source.id) if action != EXTEND else _("Extend job #{id}", id=source.id)
    modal = discord.ui.Modal(title=translate(title, locale)[:MODAL_TITLE_MAX],
                             custom_id=f"fc-modal:{action}:{source.id}:{uuid.uuid4().hex[:8]}")
    limit = min(TEXT_INPUT_MAX, source.spec.spec.max_prompt_chars)
    modal.add_item(discord.ui.TextInput(
        label=translate(_("Prompt") if action != EXTEND else _("What happens next"), locale)[:45],
        custom_id=PROMPT_FIELD, style=discord.TextStyle.paragraph, max_length=limit, required=True,
        default=source.prompt[:limit] if action != EXTEND else None))
    return _stateless(modal)


def make_video_form(message_id: int, models: list[ModelSpec], locale: str | None) -> discord.ui.Modal:
    """**Make a video**: the prompt, and which configured model. The image stays on its message, whose
    id the form carries: the submit reads it from there again."""
    modal = discord.ui.Modal(title=translate(_("Make a video from this image"), locale)[:MODAL_TITLE_MAX],
                             custom_id=f"fc-make:{message_id}:{uuid.uuid4().hex[:8]}")
    prompt = discord.ui.TextInput[discord.ui.Modal](
        custom_id=PROMPT_FIELD, style=discord.TextStyle.paragraph,
        max_length=min(TEXT_INPUT_MAX, min(m.max_prompt_chars for m in models)), required=True)
    model = discord.ui.Select[discord.ui.Modal](
        custom_id=MODEL_FIELD, min_values=1, max_values=1,
        options=[discord.SelectOption(label=m.label[:100], value=m.key, default=i == 0) for i, m in enumerate(models)])
    modal.add_item(discord.ui.Label(text=translate(_("Prompt"), locale)[:45], component=prompt))
    modal.add_item(discord.ui.Label(text=translate(_("Model"), locale)[:45], component=model))
    return _stateless(modal)


class ActionsCog(commands.Cog):
    """Handles every Framecast button (`bot.publishing.components.JobButton` hands clicks here)."""

    def __init__(self, bot: FramecastBot) -> None:
        self.bot = bot
        self.menu = app_commands.guild_only()(app_commands.ContextMenu(name="Make a video", callback=self.make_video))

    @property
    def services(self) -> Services:
        return self.bot.services

    @property
    def actions(self) -> JobActions:
        return JobActions(self.services.jobs)

    @property
    def generate(self) -> GenerateCog:
        cog = self.bot.get_cog("GenerateCog")
        if not isinstance(cog, GenerateCog):
            raise Refusal("not_available", _("Making videos is not available right now."))
        return cog

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self.menu, override=True)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self.menu.name, type=self.menu.type)

    # --- answers ----------------------------------------------------------------------------------
    async def fail(self, interaction: discord.Interaction, error: BaseException) -> None:
        """One private answer for anything that went wrong, as for a slash command."""
        real = unwrap(error) if isinstance(error, app_commands.AppCommandError) else error
        text = describe(real)
        if text is None:
            error_id = uuid.uuid4().hex[:8]
            log.error("error id %s in a button/modal (guild %s, user %s)", error_id, interaction.guild_id,
                      interaction.user.id, exc_info=(type(real), real, real.__traceback__))
            text = _("Something went wrong on our side (error id {id}); nothing was charged.", id=error_id)
        if isinstance(real, InputError):
            self.cooldowns_forgive(interaction)
        await send_ephemeral(interaction, translate(text, str(interaction.locale)))

    def cooldowns_forgive(self, interaction: discord.Interaction) -> None:
        cog = self.bot.get_cog("GenerateCog")
        if isinstance(cog, GenerateCog):
            cog.cooldowns.forgive(interaction)

    # --- buttons ----------------------------------------------------------------------------------
    async def on_button(self, interaction: discord.Interaction, action: str, job_id: int) -> None:
        try:
            if interaction.guild_id is None:
                raise app_commands.NoPrivateMessage()
            if action == CANCEL:
                await self.cancel(interaction, job_id)
                return
            source = await self.actions.source(interaction.guild_id, job_id)
            if action in PROMPT_ACTIONS:
                self.actions.spec_for(source, action, source.prompt)  # a plain "no" before the modal
                await interaction.response.send_modal(prompt_form(action, source, str(interaction.locale)))
                return
            await self.start(interaction, source, action)
        except Exception as error:  # noqa: BLE001 - every failure becomes the clicker's private answer
            await self.fail(interaction, error)

    async def cancel(self, interaction: discord.Interaction, job_id: int) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        assert interaction.guild_id is not None
        source = await self.actions.source(interaction.guild_id, job_id)
        moderator = source.user_id != interaction.user.id and await is_moderator(interaction, self.services)
        job = await self.actions.cancel(interaction.guild_id, job_id, interaction.user.id, moderator=moderator)
        self._wake_cards()
        await interaction.edit_original_response(
            content=translate(_("Job #{id} cancelled; its credits are released.", id=job.id), str(interaction.locale)))

    async def start(self, interaction: discord.Interaction, source: JobRecord, action: str, *,
                    prompt: str | None = None) -> None:
        """Again, Remix, Extend, 1080p, 4K: a job of the clicker's own, through the command's checks."""
        try:
            await interaction.response.defer(ephemeral=True, thinking=True)
            generate = self.generate
            generate.cooldowns.hit(interaction)
            requester = _replace_channel(requester_from(interaction), source.channel_id)
            started = await self.actions.start(requester, source, action, click_id=interaction.id, prompt=prompt)
            channel_id = source.thread_id if started.in_thread and source.thread_id else source.channel_id
            channel = self.bot.get_channel(channel_id) or self.bot.get_partial_messageable(
                channel_id, guild_id=source.guild_id)
            await generate.announce(interaction, started.job, channel=channel, thread_allowed=not started.in_thread)
        except Exception as error:  # noqa: BLE001 - every failure becomes the clicker's private answer
            await self.fail(interaction, error)

    def _wake_cards(self) -> None:
        self.services.cards.wake()

    @commands.Cog.listener()
    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Every Framecast form's submit, answered from its ids and values alone (see `_stateless`)."""
        if interaction.type is not discord.InteractionType.modal_submit:
            return
        data: Any = interaction.data or {}
        custom_id = str(data.get("custom_id", ""))
        if not custom_id.startswith(MODAL_PREFIXES):
            return
        values = _field_values(data.get("components", []))
        prompt_form_id, make_form_id = PROMPT_MODAL_ID.fullmatch(custom_id), MAKE_MODAL_ID.fullmatch(custom_id)
        if interaction.guild_id is None or (prompt_form_id is None and make_form_id is None):
            await send_ephemeral(interaction, translate(_("This form expired; please start again."),
                                                        str(interaction.locale)))
            return
        if make_form_id is not None:
            await self.make_video_submitted(interaction, int(make_form_id["message_id"]), values)
            return
        assert prompt_form_id is not None
        try:
            source = await self.actions.source(interaction.guild_id, int(prompt_form_id["job_id"]))
        except Exception as error:  # noqa: BLE001 - every failure becomes the member's private answer
            await self.fail(interaction, error)
            return
        await self.start(interaction, source, prompt_form_id["action"], prompt=str(values.get(PROMPT_FIELD, "")))

    # --- Make a video -----------------------------------------------------------------------------
    async def make_video(self, interaction: discord.Interaction, message: discord.Message) -> None:
        locale = str(interaction.locale)
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        if first_image(message) is None:
            raise Refusal("no_image", _NO_IMAGE)
        models = frame_models(self.services.jobs.available_providers())
        if not models:
            raise Refusal("not_available", _("No video model that starts from an image is configured here."))
        await interaction.response.send_modal(make_video_form(message.id, models, locale))

    async def make_video_submitted(self, interaction: discord.Interaction, message_id: int,
                                   values: dict[str, str | list[str]]) -> None:
        """The form's model and prompt, and the image read again from its message (it may have been
        edited or deleted since, and this process may not have seen it: a restart)."""
        try:
            chosen = values.get(MODEL_FIELD) or []
            key = chosen[0] if isinstance(chosen, list) and chosen else ""
            model = next((m for m in frame_models(self.services.jobs.available_providers()) if m.key == key), None)
            if model is None:
                raise Refusal("not_available", _("That model is not available any more; try again."))
            generate = self.generate
            generate.cooldowns.hit(interaction)
            await interaction.response.defer(ephemeral=True, thinking=True)
            image = first_image(await self._fetch_message(interaction, message_id))
            if image is None:
                raise Refusal("no_image", _NO_IMAGE)
            await generate.generate(interaction, request_for(model, str(values.get(PROMPT_FIELD, "")), image))
        except Exception as error:  # noqa: BLE001 - every failure becomes the member's private answer
            await self.fail(interaction, error)

    async def _fetch_message(self, interaction: discord.Interaction, message_id: int) -> discord.Message:
        assert interaction.channel_id is not None
        channel = self.bot.get_partial_messageable(interaction.channel_id, guild_id=interaction.guild_id)
        try:
            return await channel.fetch_message(message_id)
        except (discord.NotFound, discord.Forbidden) as error:
            raise Refusal("no_image", _("The message with the image is gone, or I may not read it; "
                                        "use **Make a video** on it again.")) from error

    # --- /help ------------------------------------------------------------------------------------
    @app_commands.command(name="help", description="What Framecast makes, what it costs here, and how to use it")
    @app_commands.guild_only()
    async def help(self, interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        if interaction.guild_id is None:
            raise app_commands.NoPrivateMessage()
        services = self.services
        providers = services.jobs.available_providers()
        models = [m for family in Family for m in models_for(family, providers)]
        costs = {m.key: await services.quota.cost_of(interaction.guild_id, _text_spec(m)) for m in models}
        roles = member_role_ids(interaction.user)
        balance = await services.quota.balance(interaction.guild_id, interaction.user.id, roles)
        text = help_text(models, costs, remaining=balance.remaining, budget=balance.budget,
                         active=balance.active_jobs, max_active=balance.max_concurrent,
                         locale=str(interaction.locale))
        await interaction.edit_original_response(content=text, allowed_mentions=discord.AllowedMentions.none())


def _field_values(components: list[dict[str, Any]]) -> dict[str, str | list[str]]:
    """A modal submit's values by field id (in action rows or labels): a text input's text, a select's
    chosen values."""
    values: dict[str, str | list[str]] = {}
    for row in components:
        for component in [row.get("component")] if row.get("type") == 18 else row.get("components", []):
            if not isinstance(component, dict) or "custom_id" not in component:
                continue
            if component.get("type") == 4:
                values[str(component["custom_id"])] = str(component.get("value", ""))
            else:
                values[str(component["custom_id"])] = [str(v) for v in component.get("values", [])]
    return values


def _text_spec(model: ModelSpec) -> JobSpec:
    """A plain text-to-video request of `model`: what one video of it costs at the least."""
    return JobSpec(family=model.family, model_key=model.key, provider=model.provider,
                   vendor_model=model.vendor_model, mode=Mode.TEXT, prompt="-")


def _replace_channel(requester: Any, channel_id: int) -> Any:
    """A click's job belongs to the source job's channel (its card goes there), checked as such."""
    from dataclasses import replace

    return replace(requester, channel_id=channel_id, parent_channel_id=None)


async def setup(bot: FramecastBot) -> None:
    await bot.add_cog(ActionsCog(bot))
