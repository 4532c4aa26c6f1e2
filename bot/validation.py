"""Check a member's request against the chosen model's capability table, before anything is spent.

Pure functions: no I/O, no Discord. A broken rule raises `InputError` naming the option and the
allowed values; the cog shows it ephemerally. The result, `JobSpec`, is what gets stored with the job
and what the provider clients turn into a vendor request body.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bot.catalog import (
    FOLLOW_UP_BY_MODE,
    FOLLOW_UP_OF_MODE,
    FOLLOW_UPS,
    MODELS_BY_KEY,
    REFERENCE_ROLES,
    UPSAMPLE_COST_KEY,
    Family,
    FollowUp,
    ImageRole,
    Mode,
    ModelSpec,
    ProviderName,
    default_model,
    get_model,
)
from bot.i18n import _


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
    upsample: bool | None = None
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
        keys = [self.model_key]
        if self.params.get("upsample") is True or self.params.get("size") == "large":
            keys.append(UPSAMPLE_COST_KEY)
        return keys

    def with_image_urls(self, urls: dict[ImageRole, str]) -> "JobSpec":
        """The same job with images re-hosted (e.g. on kie.ai's file host)."""
        images = [i.model_copy(update={"url": urls.get(i.role, i.url)}) for i in self.images]
        return self.model_copy(update={"images": images})


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
            raise InputError("model", f"choose one of {_choices(['std', 'pro'])}.")
        return MODELS_BY_KEY[key]
    if request.model:
        spec = MODELS_BY_KEY.get(request.model)
        allowed = [m.key for m in MODELS_BY_KEY.values() if m.family == family and m.provider in providers]
        if spec is None or spec.family != family or spec.provider not in providers:
            raise InputError("model", f"choose one of {_choices(allowed)}.")
        return spec
    spec = default_model(family, providers, preferred)
    if spec is None:
        raise InputError("model", f"no provider for /{family.value} is configured on this bot.")
    return spec


def infer_mode(images: dict[ImageRole, ImageInput]) -> Mode:
    """Veo's mode comes from which attachment options were used."""
    has_refs = any(role in images for role in REFERENCE_ROLES)
    has_frames = ImageRole.FIRST_FRAME in images or ImageRole.LAST_FRAME in images
    if has_refs and has_frames:
        raise InputError(
            "reference_1",
            "use either frames (`first_frame`/`last_frame`) or references (`reference_1`-`reference_3`), not both.",
        )
    if has_refs:
        return Mode.REFERENCE
    if ImageRole.LAST_FRAME in images and ImageRole.FIRST_FRAME not in images:
        raise InputError("last_frame", "a last frame needs a `first_frame` too.")
    return Mode.FRAMES if has_frames else Mode.TEXT


def _check_prompt(prompt: str, spec: ModelSpec) -> str:
    text = prompt.strip()
    if not text:
        raise InputError("prompt", "write a prompt describing the video.")
    if len(text) > spec.max_prompt_chars:
        raise InputError(
            "prompt", f"is {len(text)} characters; {spec.label} accepts at most {spec.max_prompt_chars}."
        )
    return text


def _require_supported(name: str, value: Any, supported: bool, spec: ModelSpec) -> None:
    if value is not None and not supported:
        raise InputError(name, f"is not supported by {spec.label}; leave it empty.")


def validate_request(
    request: GenerationRequest,
    providers: set[ProviderName],
    preferred: ProviderName | None = None,
) -> JobSpec:
    """Turn a request into a JobSpec or raise InputError; the whole capability check lives here."""
    spec = resolve_model(request, providers, preferred)
    prompt = _check_prompt(request.prompt, spec)
    mode = infer_mode(request.images)
    rule = spec.modes.get(mode)
    if rule is None:
        allowed_modes = [m.value for m in spec.modes]
        option = "reference_1" if mode is Mode.REFERENCE else "first_frame"
        hint = ""
        if mode is Mode.REFERENCE:
            ref_models = [m.key for m in MODELS_BY_KEY.values()
                          if m.family == spec.family and Mode.REFERENCE in m.modes and m.provider in providers]
            hint = f" Reference images work with: {_choices(ref_models)}." if ref_models else ""
        raise InputError(option, f"{spec.label} does not take {mode.value} mode (it takes {', '.join(allowed_modes)}).{hint}")
    if ImageRole.LAST_FRAME in request.images and rule.max_images < 2:
        raise InputError("last_frame", f"{spec.label} takes a first frame only.")
    count = len(request.images)
    if not rule.min_images <= count <= rule.max_images:
        raise InputError(
            "first_frame" if mode is Mode.FRAMES else "reference_1",
            f"{spec.label} takes {rule.min_images}-{rule.max_images} images in {mode.value} mode; you gave {count}.",
        )

    params: dict[str, Any] = {}

    # Aspect ratio (veo, kling).
    _require_supported("aspect_ratio", request.aspect_ratio, bool(spec.aspect_ratios), spec)
    if spec.aspect_ratios:
        if spec.aspect_ratio_text_only and mode is not Mode.TEXT:
            if request.aspect_ratio is not None:
                raise InputError("aspect_ratio", "applies to text-only videos; with a frame the video takes the image's shape. Leave it empty.")
        else:
            allowed = rule.aspect_ratios or spec.aspect_ratios
            ratio = request.aspect_ratio or (spec.default_aspect_ratio if spec.default_aspect_ratio in allowed else allowed[0])
            if ratio not in allowed:
                where = f" in {mode.value} mode" if rule.aspect_ratios else ""
                raise InputError("aspect_ratio", f"{spec.label} accepts {_choices(allowed)}{where}.")
            params["aspect_ratio"] = ratio

    # Veo extras.
    _require_supported("enhance_prompt", request.enhance_prompt, spec.supports_enhance, spec)
    if spec.supports_enhance:
        params["enhance_prompt"] = True if request.enhance_prompt is None else request.enhance_prompt
    _require_supported("upsample", request.upsample if request.upsample else None, bool(spec.upsample_aspect_ratios), spec)
    if request.upsample:
        ratio = params.get("aspect_ratio")
        if ratio not in spec.upsample_aspect_ratios:
            raise InputError("upsample", f"1080p on {spec.label} needs aspect_ratio {_choices(spec.upsample_aspect_ratios)}.")
        params["upsample"] = True
    _require_supported("seed", request.seed, spec.seed_range is not None, spec)
    if request.seed is not None and spec.seed_range is not None:
        low, high = spec.seed_range
        if not low <= request.seed <= high:
            raise InputError("seed", f"must be between {low} and {high}.")
        params["seed"] = request.seed

    # Sora.
    _require_supported("orientation", request.orientation, bool(spec.orientations), spec)
    if spec.orientations:
        value = request.orientation or spec.orientations[0]
        if value not in spec.orientations:
            raise InputError("orientation", f"choose {_choices(spec.orientations)}.")
        params["orientation"] = value
    _require_supported("size", request.size, bool(spec.sizes), spec)
    if spec.sizes:
        value = request.size or spec.sizes[0]
        if value not in spec.sizes:
            raise InputError("size", f"choose {_choices(spec.sizes)}.")
        params["size"] = value
    _require_supported("watermark", request.watermark, spec.supports_watermark, spec)
    if spec.supports_watermark:
        params["watermark"] = True if request.watermark is None else request.watermark

    # Duration (sora, kling).
    _require_supported("duration", request.duration, bool(spec.durations), spec)
    if spec.durations:
        value = request.duration if request.duration is not None else spec.default_duration
        if value not in spec.durations:
            shown = f"{spec.durations[0]}-{spec.durations[-1]}" if len(spec.durations) > 4 else _choices(spec.durations)
            raise InputError("duration", f"{spec.label} makes videos of {shown} seconds.")
        params["duration"] = value

    # Kling extras.
    _require_supported("negative_prompt", request.negative_prompt, spec.supports_negative_prompt, spec)
    if request.negative_prompt is not None and spec.supports_negative_prompt:
        negative = request.negative_prompt.strip()
        if len(negative) > spec.max_prompt_chars:
            raise InputError("negative_prompt", f"accepts at most {spec.max_prompt_chars} characters.")
        if negative:
            params["negative_prompt"] = negative
    _require_supported("cfg_scale", request.cfg_scale, spec.cfg_scale_range is not None, spec)
    if request.cfg_scale is not None and spec.cfg_scale_range is not None:
        low, high = spec.cfg_scale_range
        if not low <= request.cfg_scale <= high:
            raise InputError("cfg_scale", f"must be between {low} and {high}.")
        params["cfg_scale"] = request.cfg_scale
    _require_supported("shot_type", request.shot_type, bool(spec.shot_types), spec)
    if request.shot_type is not None and spec.shot_types:
        if request.shot_type not in spec.shot_types:
            raise InputError("shot_type", f"choose {_choices(spec.shot_types)}.")
        params["shot_type"] = request.shot_type
    _require_supported("multi_prompt", request.multi_prompt, spec.max_shots > 0, spec)
    if request.multi_prompt is not None and spec.max_shots:
        shots = [s.strip() for s in request.multi_prompt.split("|") if s.strip()]
        if not 2 <= len(shots) <= spec.max_shots:
            raise InputError("multi_prompt", f"give 2-{spec.max_shots} shot prompts separated by `|`; you gave {len(shots)}.")
        if any(len(s) > spec.max_prompt_chars for s in shots):
            raise InputError("multi_prompt", f"each shot prompt accepts at most {spec.max_prompt_chars} characters.")
        params["multi_prompt"] = shots
        params.setdefault("shot_type", "customize")

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
