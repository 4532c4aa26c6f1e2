"""Check a member's request against the chosen model's capability table, before anything is spent.

Pure functions: no I/O, no Discord. A broken rule raises `InputError` naming the option and the
allowed values; the cog shows it ephemerally. The result, `JobSpec`, is what gets stored with the job
and what the provider clients turn into a vendor request body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.catalog import (
    FOLLOW_UP_BY_MODE,
    FOLLOW_UP_OF_MODE,
    FOLLOW_UPS,
    MODELS,
    MODELS_BY_KEY,
    REFERENCE_ROLES,
    UHD_COST_KEY,
    UPSAMPLE_COST_KEY,
    Family,
    FollowUp,
    ImageRole,
    Mode,
    ModeRule,
    ModelSpec,
    ProviderName,
    default_model,
    get_model,
)
from bot.i18n import Text, _, join


class InputError(ValueError):
    """A request the member can fix; `option` names the slash-command option at fault."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}")
        self.option = option
        self.message = message


class ImageInput(BaseModel):
    """An attached image as the command saw it (before download and re-hosting)."""

    role: ImageRole
    filename: str
    url: str
    attachment_id: int | None = None
    content_type: str | None = None
    size: int = 0


class GenerationRequest(BaseModel):
    """Every option of /veo, /sora and /kling; None means "not given"."""

    family: Family
    prompt: str
    model: str | None = None  # veo: a model key; kling: tier "std" / "pro"; sora: unused
    images: dict[ImageRole, ImageInput] = Field(default_factory=dict)
    aspect_ratio: str | None = None
    enhance_prompt: bool | None = None
    upsample: bool | str | None = None  # "1080p" / "4k" (True: 1080p, the historic form)
    seed: int | None = None
    orientation: str | None = None
    size: str | None = None
    duration: int | None = None
    watermark: bool | None = None
    audio: bool | None = None
    negative_prompt: str | None = None
    cfg_scale: float | None = None
    shot_type: str | None = None
    multi_prompt: str | None = None


class JobImage(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: ImageRole
    url: str
    attachment_id: int | None = None
    filename: str = ""


class JobSpec(BaseModel):
    """A validated request: stored as the job's `request_json`, read by the provider clients."""

    family: Family
    model_key: str
    provider: ProviderName
    vendor_model: str
    mode: Mode
    prompt: str
    images: list[JobImage] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec:
        return get_model(self.model_key)

    def image(self, role: ImageRole) -> JobImage | None:
        return next((i for i in self.images if i.role == role), None)

    @property
    def reference_images(self) -> list[JobImage]:
        return [i for i in self.images if i.role in REFERENCE_ROLES]

    @property
    def follow_up(self) -> FollowUp | None:
        """The follow-up this job is (extend, 1080p, 4K), or None for a generation."""
        return FOLLOW_UP_OF_MODE.get(self.mode)

    @property
    def resolution(self) -> str:
        """What the delivered video is: "720p", "1080p" or "4k" (an upscale's target, or the 1080p pass)."""
        if self.params.get("resolution"):
            return str(self.params["resolution"])
        return "1080p" if self.params.get("upsample") is True else "720p"

    @property
    def cost_keys(self) -> list[str]:
        """The cost-table rows this job is charged: its follow-up's own, or the model plus surcharges."""
        kind = FOLLOW_UP_BY_MODE.get(self.mode)
        if kind is not None:
            return [kind.cost_key]
        return [self.model_key, *self.pass_cost_keys]

    @property
    def pass_cost_keys(self) -> list[str]:
        """The surcharges of a generation's resolution pass (1080p / 4K, or Sora "large")."""
        if self.mode in FOLLOW_UP_BY_MODE:
            return []
        if self.params.get("upsample") is True or self.params.get("size") == "large":
            return [UPSAMPLE_COST_KEY]
        return [UHD_COST_KEY] if self.params.get("resolution") == "4k" else []

    def with_image_urls(self, urls: dict[ImageRole, str]) -> "JobSpec":
        """The same job with images re-hosted (e.g. on kie.ai's file host)."""
        images = [i.model_copy(update={"url": urls.get(i.role, i.url)}) for i in self.images]
        return self.model_copy(update={"images": images})


def mode_name(mode: Mode) -> Text:
    """A mode as members read it, in their language."""
    return _MODE_NAMES.get(mode) or Text(mode.value)


_MODE_NAMES: dict[Mode, Text] = {
    Mode.TEXT: _("text"), Mode.FRAMES: _("frames"), Mode.REFERENCE: _("reference"), Mode.EXTEND: _("extend"),
    Mode.UPSCALE_1080P: _("1080p upscale"), Mode.UPSCALE_4K: _("4K upscale"),
}


def _choices(values: tuple[Any, ...] | list[Any]) -> str:
    return ", ".join(f"`{v}`" for v in values)


def resolve_model(
    request: GenerationRequest, providers: set[ProviderName], preferred: ProviderName | None
) -> ModelSpec:
    """Pick the ModelSpec the options ask for, among configured providers."""
    family = request.family
    if family is Family.KLING:
        tier = request.model or "std"
        audio = bool(request.audio) if request.audio is not None else False
        key = f"kling-v3-{tier}-{'audio' if audio else 'silent'}"
        if key not in MODELS_BY_KEY:
            raise InputError("model", _("choose one of {choices}.", choices=_choices(["std", "pro"])))
        return MODELS_BY_KEY[key]
    if request.model:
        spec = MODELS_BY_KEY.get(request.model)
        allowed = [m.key for m in MODELS_BY_KEY.values() if m.family == family and m.provider in providers]
        if spec is None or spec.family != family or spec.provider not in providers:
            raise InputError("model", _("choose one of {choices}.", choices=_choices(allowed)))
        return spec
    spec = default_model(family, providers, preferred)
    if spec is None:
        raise InputError("model", _("no provider for /{family} is configured on this bot.", family=family.value))
    return spec


def infer_mode(images: dict[ImageRole, ImageInput]) -> Mode:
    """Veo's mode comes from which attachment options were used."""
    has_refs = any(role in images for role in REFERENCE_ROLES)
    has_frames = ImageRole.FIRST_FRAME in images or ImageRole.LAST_FRAME in images
    if has_refs and has_frames:
        raise InputError("reference_1", _(
            "use either frames (`first_frame`/`last_frame`) or references (`reference_1`-`reference_3`), not both."))
    if has_refs:
        return Mode.REFERENCE
    if ImageRole.LAST_FRAME in images and ImageRole.FIRST_FRAME not in images:
        raise InputError("last_frame", _("a last frame needs a `first_frame` too."))
    return Mode.FRAMES if has_frames else Mode.TEXT


def _check_prompt(prompt: str, spec: ModelSpec) -> str:
    text = prompt.strip()
    if not text:
        raise InputError("prompt", _("write a prompt describing the video."))
    if len(text) > spec.max_prompt_chars:
        raise InputError("prompt", _("is {count} characters; {model} accepts at most {limit}.",
                                     count=len(text), model=spec.label, limit=spec.max_prompt_chars))
    return text


def _mode_rule(spec: ModelSpec, mode: Mode, providers: set[ProviderName]) -> ModeRule:
    """The model's rule for this mode, or an InputError naming the models that take it."""
    rule = spec.modes.get(mode)
    if rule is not None:
        return rule
    option = "reference_1" if mode is Mode.REFERENCE else "first_frame"
    takers = [m.key for m in MODELS if m.family == spec.family and mode in m.modes and m.provider in providers]
    hint = _(" Models that take it: {models}.", models=_choices(takers)) if takers else ""
    raise InputError(option, _("{model} does not take {mode} mode (it takes {modes}).{hint}", model=spec.label,
                               mode=mode_name(mode), modes=join([mode_name(m) for m in spec.modes]), hint=hint))


def _check_images(images: dict[ImageRole, ImageInput], spec: ModelSpec, mode: Mode, rule: ModeRule) -> None:
    if ImageRole.LAST_FRAME in images and rule.max_images < 2:
        raise InputError("last_frame", _("{model} takes a first frame only.", model=spec.label))
    if not rule.min_images <= len(images) <= rule.max_images:
        raise InputError("first_frame" if mode is Mode.FRAMES else "reference_1", _(
            "{model} takes {low}-{high} images in {mode} mode; you gave {count}.", model=spec.label,
            low=rule.min_images, high=rule.max_images, mode=mode_name(mode), count=len(images)))


# --- the options, as a table ------------------------------------------------------------------------

@dataclass(frozen=True)
class Context:
    """What an option's check may look at: the model, the mode and its rule, the params so far."""

    spec: ModelSpec
    mode: Mode
    rule: ModeRule
    params: dict[str, Any]


@dataclass(frozen=True)
class Option:
    """One slash-command option (a GenerationRequest field): which models take it, and how its value
    (None when not given) becomes params or an InputError. Checked in table order."""

    name: str
    supported: Callable[[ModelSpec], bool]
    resolve: Callable[[Any, Context], dict[str, Any]]


def _one_of(name: str, value: Any, allowed: tuple[Any, ...], where: str = "") -> Any:
    if value not in allowed:
        raise InputError(name, _("choose {choices}{where}.", choices=_choices(allowed), where=where))
    return value


def _in_range(name: str, value: float, bounds: tuple[float, float] | None) -> float:
    assert bounds is not None  # the option is offered only where the model has a range
    low, high = bounds
    if not low <= value <= high:
        raise InputError(name, _("must be between {low} and {high}.", low=low, high=high))
    return value


def _aspect_ratio(value: str | None, ctx: Context) -> dict[str, Any]:
    spec, rule = ctx.spec, ctx.rule
    if spec.aspect_ratio_text_only and ctx.mode is not Mode.TEXT:
        if value is not None:
            raise InputError("aspect_ratio", _(
                "applies to text-only videos; with a frame the video takes the image's shape. Leave it empty."))
        return {}
    allowed = rule.aspect_ratios or spec.aspect_ratios
    ratio = value or (spec.default_aspect_ratio if spec.default_aspect_ratio in allowed else allowed[0])
    where = _(" in {mode} mode", mode=mode_name(ctx.mode)) if rule.aspect_ratios else ""
    return {"aspect_ratio": _one_of("aspect_ratio", ratio, allowed, where)}


def _upsample(value: bool | str | None, ctx: Context) -> dict[str, Any]:
    """`upsample`: a resolution ("1080p", "4k"; True means 1080p) on the aspect ratios the model has it."""
    resolution = "1080p" if value is True else value
    if resolution in (None, False, "720p"):
        return {}
    spec = ctx.spec
    ratios = spec.upscales.get(str(resolution))
    if ratios is None:
        raise InputError("upsample", _("{model} offers {choices}.", model=spec.label, choices=_choices(
            ["720p", *spec.upscales])))
    if ctx.params.get("aspect_ratio") not in ratios:
        raise InputError("upsample", _("{resolution} on {model} needs aspect_ratio {choices}.",
                                       resolution=resolution, model=spec.label, choices=_choices(ratios)))
    # 1080p keeps its historic param (the unified API's enable_upsample); 4K names its resolution.
    return {"upsample": True} if resolution == "1080p" else {"resolution": resolution}


def _duration(value: int | None, ctx: Context) -> dict[str, Any]:
    spec = ctx.spec
    chosen = value if value is not None else spec.default_duration
    if chosen not in spec.durations:
        shown = f"{spec.durations[0]}-{spec.durations[-1]}" if len(spec.durations) > 4 else _choices(spec.durations)
        raise InputError("duration", _("{model} makes videos of {durations} seconds.", model=spec.label,
                                       durations=shown))
    return {"duration": chosen}


def _negative_prompt(value: str | None, ctx: Context) -> dict[str, Any]:
    negative = (value or "").strip()
    if len(negative) > ctx.spec.max_prompt_chars:
        raise InputError("negative_prompt", _("accepts at most {limit} characters.", limit=ctx.spec.max_prompt_chars))
    return {"negative_prompt": negative} if negative else {}


def _multi_prompt(value: str | None, ctx: Context) -> dict[str, Any]:
    if value is None:
        return {}
    spec = ctx.spec
    shots = [s.strip() for s in value.split("|") if s.strip()]
    if not 2 <= len(shots) <= spec.max_shots:
        raise InputError("multi_prompt", _("give 2-{limit} shot prompts separated by `|`; you gave {count}.",
                                           limit=spec.max_shots, count=len(shots)))
    if any(len(s) > spec.max_prompt_chars for s in shots):
        raise InputError("multi_prompt", _("each shot prompt accepts at most {limit} characters.",
                                           limit=spec.max_prompt_chars))
    return {"multi_prompt": shots, "shot_type": ctx.params.get("shot_type", "customize")}


def _given(name: str, check: Callable[[Any, Context], Any]) -> Callable[[Any, Context], dict[str, Any]]:
    """An option that sets its param only when given (checked by `check`)."""
    return lambda value, ctx: {} if value is None else {name: check(value, ctx)}


def _defaulted(name: str, default: Callable[[ModelSpec], Any],
               check: Callable[[Any, Context], Any] = lambda value, ctx: value,
               ) -> Callable[[Any, Context], dict[str, Any]]:
    """An option whose param is always set: the given value (checked), else the model's default."""
    return lambda value, ctx: {name: check(default(ctx.spec) if value is None else value, ctx)}


OPTIONS: tuple[Option, ...] = (
    Option("aspect_ratio", lambda m: bool(m.aspect_ratios), _aspect_ratio),
    Option("enhance_prompt", lambda m: m.supports_enhance, _defaulted("enhance_prompt", lambda m: True)),
    Option("upsample", lambda m: bool(m.upscales), _upsample),
    Option("seed", lambda m: m.seed_range is not None, _given(
        "seed", lambda v, ctx: _in_range("seed", v, ctx.spec.seed_range))),
    Option("orientation", lambda m: bool(m.orientations), _defaulted(
        "orientation", lambda m: m.orientations[0], lambda v, ctx: _one_of("orientation", v, ctx.spec.orientations))),
    Option("size", lambda m: bool(m.sizes), _defaulted(
        "size", lambda m: m.sizes[0], lambda v, ctx: _one_of("size", v, ctx.spec.sizes))),
    Option("watermark", lambda m: m.supports_watermark, _defaulted("watermark", lambda m: True)),
    Option("duration", lambda m: bool(m.durations), _duration),
    Option("negative_prompt", lambda m: m.supports_negative_prompt, _negative_prompt),
    Option("cfg_scale", lambda m: m.cfg_scale_range is not None, _given(
        "cfg_scale", lambda v, ctx: _in_range("cfg_scale", v, ctx.spec.cfg_scale_range))),
    Option("shot_type", lambda m: bool(m.shot_types), _given(
        "shot_type", lambda v, ctx: _one_of("shot_type", v, ctx.spec.shot_types))),
    Option("multi_prompt", lambda m: m.max_shots > 0, _multi_prompt),
)


def _given_value(request: GenerationRequest, name: str) -> Any:
    """The option's value, None when not given (`upsample=False` asks for nothing)."""
    value = getattr(request, name)
    return None if name == "upsample" and value is False else value


def validate_request(
    request: GenerationRequest,
    providers: set[ProviderName],
    preferred: ProviderName | None = None,
) -> JobSpec:
    """Turn a request into a JobSpec or raise InputError: the model's capability table decides, option by
    option (OPTIONS), so a new model is a catalog entry and a new option a row."""
    spec = resolve_model(request, providers, preferred)
    prompt = _check_prompt(request.prompt, spec)
    mode = infer_mode(request.images)
    rule = _mode_rule(spec, mode, providers)
    _check_images(request.images, spec, mode, rule)
    params: dict[str, Any] = {}
    for option in OPTIONS:
        value = _given_value(request, option.name)
        if not option.supported(spec):
            if value is not None:
                raise InputError(option.name, _("is not supported by {model}; leave it empty.", model=spec.label))
            continue
        params.update(option.resolve(value, Context(spec, mode, rule, params)))
    images = [
        JobImage(role=role, url=image.url, attachment_id=image.attachment_id, filename=image.filename)
        for role, image in sorted(request.images.items(), key=lambda item: list(ImageRole).index(item[0]))
    ]
    return JobSpec(
        family=spec.family, model_key=spec.key, provider=spec.provider, vendor_model=spec.vendor_model,
        mode=mode, prompt=prompt, images=images, params=params,
    )


# --- follow-ups of a finished video -----------------------------------------------------------------

_RESOLUTION_RANK = {"720p": 0, "1080p": 1, "4k": 2}


def _follow_up_refusal(spec: JobSpec, action: FollowUp) -> str | None:
    """Why `action` is not offered on a finished job of `spec`, or None when it is."""
    model = spec.spec
    if action not in model.follow_ups:
        return _("{model} videos cannot get this follow-up.", model=model.label)
    ratios = model.follow_ups[action]
    if ratios is not None and spec.params.get("aspect_ratio") not in ratios:
        return _("This follow-up needs a video in {ratios}.", ratios=_choices(ratios))
    current = _RESOLUTION_RANK.get(spec.resolution, 0)
    target = FOLLOW_UPS[action].resolution
    if target is None:  # extend: kie.ai cannot extend a video once it has been upscaled
        return None if current == 0 else _("An upscaled video cannot be extended; extend the original instead.")
    if _RESOLUTION_RANK[target] <= current:
        return _("This video is already in {resolution} or better.", resolution=target)
    return None


def follow_ups_for(spec: JobSpec) -> list[FollowUp]:
    """What a finished job of this spec may get next (the buttons under its result)."""
    return [action for action in FollowUp if _follow_up_refusal(spec, action) is None]


def build_follow_up(
    source: JobSpec, source_task_id: str, action: FollowUp, prompt: str | None = None
) -> JobSpec:
    """The job that runs `action` on a finished job (`source_task_id`: its provider task id).

    Same model and provider; the follow-up's own mode (timed and priced on its own). Upscales always
    start from the generation's task (an upscale of an upscale names the original), since that is
    what the vendor upscales. Raises InputError when the action is not allowed on this video."""
    refusal = _follow_up_refusal(source, action)
    if refusal is not None:
        raise InputError("action", refusal)
    kind = FOLLOW_UPS[action]
    task_id = source_task_id
    source_kind = FOLLOW_UP_BY_MODE.get(source.mode)
    if source_kind is not None and source_kind.resolution is not None:  # an upscale's task is a derived id
        task_id = str(source.params.get("source_task_id") or source_task_id)
    params: dict[str, Any] = {"source_task_id": task_id}
    if "aspect_ratio" in source.params:
        params["aspect_ratio"] = source.params["aspect_ratio"]
    if kind.resolution is not None:
        params["resolution"] = kind.resolution
        text = source.prompt
    else:
        text = _check_prompt(prompt if prompt is not None else source.prompt, source.spec)
    return JobSpec(
        family=source.family, model_key=source.model_key, provider=source.provider,
        vendor_model=source.vendor_model, mode=kind.mode, prompt=text, params=params,
    )
