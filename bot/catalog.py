"""The capability table: one entry per model, the single source of what each model accepts.

Validation (`bot.validation`) reads only this table, so adding a model is a new `ModelSpec` here,
not new control flow. Facts come from `../shared/api-docs/`; where the vendor's pages disagree
with themselves we take the stricter reading and say so (see README "Model families").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import TypeVar

from pydantic import BaseModel, ConfigDict


_V = TypeVar("_V")
_N = TypeVar("_N", int, float)


class Family(StrEnum):
    VEO = "veo"
    SORA = "sora"
    KLING = "kling"


class ProviderName(StrEnum):
    KKIAI = "kkiai"  # unified /v1/video/create + /v1/video/query (Veo, Sora 2)
    KIE = "kie"  # kie.ai /api/v1/veo/* (Veo 3.1)
    KLING = "kling"  # OpenAI-style /v1/video/generations (Kling v3)


class Mode(StrEnum):
    TEXT = "text"  # prompt only
    FRAMES = "frames"  # first frame, optionally last frame
    REFERENCE = "reference"  # 1-3 reference ("material") images
    # Follow-ups of a finished video: jobs of their own, so the poll schedule learns their timing
    # apart from generations (an upscale takes minutes whatever the model).
    EXTEND = "extend"  # a continuation clip from the source video's last frame
    UPSCALE_1080P = "upscale_1080p"
    UPSCALE_4K = "upscale_4k"


class FollowUp(StrEnum):
    """What a member may ask of a finished video (the buttons under a result)."""

    EXTEND = "extend"
    UPSCALE_1080P = "1080p"
    UPSCALE_4K = "4k"


class ImageRole(StrEnum):
    FIRST_FRAME = "first_frame"
    LAST_FRAME = "last_frame"
    REFERENCE_1 = "reference_1"
    REFERENCE_2 = "reference_2"
    REFERENCE_3 = "reference_3"


REFERENCE_ROLES = (ImageRole.REFERENCE_1, ImageRole.REFERENCE_2, ImageRole.REFERENCE_3)


class ModeRule(BaseModel):
    """What a model accepts in one mode."""

    model_config = ConfigDict(frozen=True)

    min_images: int = 0
    max_images: int = 0
    aspect_ratios: tuple[str, ...] | None = None  # None: every aspect ratio of the model


class Timing(BaseModel):
    """How long the vendor usually takes, in seconds, and how its tasks fail: the poll schedule plans on
    this prior until a new server has history of its own, so it should say what one model and mode
    really take (a wide guess costs requests and late results until history replaces it)."""

    model_config = ConfigDict(frozen=True)

    p10: float
    p50: float
    p90: float
    max_runtime: float  # past this the job is ended as timed out
    # The failure prior: the share of tasks that fail, and the share of those refused soon after submit
    # (resellers retry a rejected request a few times first, so within `rejected_within` seconds); the
    # rest fail where the task would have finished (the output filter).
    failure_rate: float = 0.05
    rejected_share: float = 0.4
    rejected_within: tuple[float, float] = (5.0, 25.0)
    # A vendor that reports its progress as a share done paces its own jobs: the schedule polls just
    # after the finish that share points to, and the plan is only the fallback. Such a kind costs far
    # fewer requests than its plan, and a new server must know that before its own jobs tell it, or it
    # books the kind at the whole budget and leaves the other kinds short. None: not paced.
    paced_requests: float | None = None


class FollowUpKind(BaseModel):
    """How one follow-up is run and priced, whatever the model."""

    model_config = ConfigDict(frozen=True)

    mode: Mode
    cost_key: str  # priced like a model: a row of the cost table
    default_cost: int
    timing: Timing
    resolution: str | None = None  # what an upscale delivers
    calls_back: bool = True  # kie's 1080p endpoint takes no callBackUrl: such jobs are polled


class ModelSpec(BaseModel):
    """One model as a member can order it."""

    model_config = ConfigDict(frozen=True)

    key: str  # our stable id: stored with jobs, used in cost tables and command choices
    family: Family
    provider: ProviderName
    vendor_model: str  # the `model` string the vendor expects
    label: str
    tier: str  # fast / quality (veo), std / pro (kling), standard (sora)
    modes: dict[Mode, ModeRule]
    aspect_ratios: tuple[str, ...] = ()
    default_aspect_ratio: str | None = None
    aspect_ratio_text_only: bool = False  # kling: with a frame the video takes the image's shape
    durations: tuple[int, ...] = ()
    default_duration: int | None = None
    seed_range: tuple[int, int] | None = None
    supports_enhance: bool = False
    # The `upsample` values a generation may ask ("1080p", "4k"), each on these aspect ratios; empty: none.
    upscales: dict[str, tuple[str, ...]] = {}
    orientations: tuple[str, ...] = ()
    sizes: tuple[str, ...] = ()
    supports_watermark: bool = False
    audio: bool | None = None  # kling: the model id carries audio on/off
    supports_negative_prompt: bool = False
    cfg_scale_range: tuple[float, float] | None = None
    shot_types: tuple[str, ...] = ()
    max_shots: int = 0  # multi-shot prompts; 0 = not supported
    max_prompt_chars: int = 2000
    # Whether a member who names no model may get this one (the default is the cheapest of these):
    # a new, cheaper tier should not quietly replace what servers have priced and members know.
    default_candidate: bool = True
    # Follow-ups a finished video of this model may get, each on these aspect ratios (None: all).
    follow_ups: dict[FollowUp, tuple[str, ...] | None] = {}
    default_cost: int
    timing: Timing

    def timing_for(self, mode: Mode | str) -> Timing:
        """The poll schedule's prior for one kind of job: a follow-up's own, else the model's."""
        kind = FOLLOW_UP_BY_MODE.get(mode)
        return kind.timing if kind is not None else self.timing


_VEO_FRAMES = ModeRule(min_images=1, max_images=2)


def _typical(p50: float, max_runtime: float, paced_requests: float | None = None) -> Timing:
    """One model and mode's times: concentrated around their median, about +-35% for 95% of jobs (a
    log-normal spread of 0.15), as vendors' times for one model are; the models differ by median."""
    return Timing(p10=round(p50 * 0.825, 1), p50=p50, p90=round(p50 * 1.212, 1), max_runtime=max_runtime,
                  paced_requests=paced_requests)


_VEO_TIMING_FAST = _typical(150, 20 * 60)  # the unified API's veo3.1-fast
_VEO_TIMING_QUALITY = _typical(240, 30 * 60)  # ...and veo3.1-pro
_KIE_TIMING_FAST = _typical(140, 20 * 60)  # kie.ai's veo3_fast
_KIE_TIMING_QUALITY = _typical(230, 30 * 60)  # ...and veo3

# Cost table keys beyond model keys: a surcharge for 1080p output (veo upsample, sora "large"), and
# the follow-ups. kie.ai: 4K costs about two Fast generations extra; an extension is a Fast generation.
UPSAMPLE_COST_KEY = "1080p"
DEFAULT_UPSAMPLE_COST = 1
EXTEND_COST_KEY = "extend"
DEFAULT_EXTEND_COST = 2
UHD_COST_KEY = "4k"
DEFAULT_UHD_COST = 4

FOLLOW_UPS: dict[FollowUp, FollowUpKind] = {
    FollowUp.EXTEND: FollowUpKind(
        mode=Mode.EXTEND, cost_key=EXTEND_COST_KEY, default_cost=DEFAULT_EXTEND_COST, timing=_KIE_TIMING_FAST),
    # kie.ai: "1080P generation ... typically 1-3 minutes"; "4K ... typically ~5-10 minutes".
    FollowUp.UPSCALE_1080P: FollowUpKind(
        mode=Mode.UPSCALE_1080P, cost_key=UPSAMPLE_COST_KEY, default_cost=DEFAULT_UPSAMPLE_COST,
        timing=Timing(p10=60, p50=110, p90=180, max_runtime=15 * 60), resolution="1080p", calls_back=False),
    FollowUp.UPSCALE_4K: FollowUpKind(
        mode=Mode.UPSCALE_4K, cost_key=UHD_COST_KEY, default_cost=DEFAULT_UHD_COST,
        timing=Timing(p10=300, p50=420, p90=600, max_runtime=30 * 60), resolution="4k"),
}
# By Mode; keyed as str so a mode read back from the database ("extend") finds it too.
FOLLOW_UP_BY_MODE: dict[str, FollowUpKind] = {kind.mode: kind for kind in FOLLOW_UPS.values()}
FOLLOW_UP_OF_MODE: dict[str, FollowUp] = {kind.mode: action for action, kind in FOLLOW_UPS.items()}
GENERATION_MODES = (Mode.TEXT, Mode.FRAMES, Mode.REFERENCE)
# kie.ai's Veo 3.1 line: extend, 1080p and 4K on both aspect ratios (and on "Auto", which is one of them).
_KIE_FOLLOW_UPS: dict[FollowUp, tuple[str, ...] | None] = {
    FollowUp.EXTEND: None, FollowUp.UPSCALE_1080P: None, FollowUp.UPSCALE_4K: None,
}
_KIE_UPSCALES: dict[str, tuple[str, ...]] = {"1080p": ("16:9", "9:16"), "4k": ("16:9", "9:16")}
_KIE_REFERENCE = ModeRule(min_images=1, max_images=3, aspect_ratios=("16:9", "9:16"))
# Lite: kie's cheapest, "for high-concurrency batch generation"; assumed a little quicker than Fast.
_VEO_TIMING_LITE = _typical(120, 20 * 60)

MODELS: tuple[ModelSpec, ...] = (
    # --- Veo through the unified API -----------------------------------------------------------
    ModelSpec(
        key="veo-fast-kkiai", family=Family.VEO, provider=ProviderName.KKIAI,
        vendor_model="veo3.1-fast", label="Veo 3.1 Fast (unified API)", tier="fast",
        modes={Mode.TEXT: ModeRule(), Mode.FRAMES: _VEO_FRAMES},
        aspect_ratios=("16:9", "9:16"), default_aspect_ratio="16:9",
        supports_enhance=True, upscales={"1080p": ("16:9", "9:16")},
        default_cost=2, timing=_VEO_TIMING_FAST,
    ),
    ModelSpec(
        key="veo-quality-kkiai", family=Family.VEO, provider=ProviderName.KKIAI,
        vendor_model="veo3.1-pro", label="Veo 3.1 Quality (unified API)", tier="quality",
        modes={Mode.TEXT: ModeRule(), Mode.FRAMES: _VEO_FRAMES},
        aspect_ratios=("16:9", "9:16"), default_aspect_ratio="16:9",
        supports_enhance=True, upscales={"1080p": ("16:9", "9:16")},
        default_cost=4, timing=_VEO_TIMING_QUALITY,
    ),
    # --- Veo through kie.ai ------------------------------------------------------------------------
    # kie's current Veo 3.1 pages: Quality, Fast and Lite; REFERENCE_2_VIDEO on Fast and Lite, for
    # 16:9 and 9:16; 1080p and 4K (a pass after the video is made) for 16:9 and 9:16.
    ModelSpec(
        key="veo-fast-kie", family=Family.VEO, provider=ProviderName.KIE,
        vendor_model="veo3_fast", label="Veo 3.1 Fast (kie.ai)", tier="fast",
        modes={Mode.TEXT: ModeRule(), Mode.FRAMES: _VEO_FRAMES, Mode.REFERENCE: _KIE_REFERENCE},
        aspect_ratios=("16:9", "9:16", "Auto"), default_aspect_ratio="16:9",
        seed_range=(10000, 99999), supports_enhance=True, upscales=_KIE_UPSCALES,
        follow_ups=_KIE_FOLLOW_UPS, default_cost=2, timing=_KIE_TIMING_FAST,
    ),
    ModelSpec(
        key="veo-lite-kie", family=Family.VEO, provider=ProviderName.KIE,
        vendor_model="veo3_lite", label="Veo 3.1 Lite (kie.ai)", tier="lite",
        modes={Mode.TEXT: ModeRule(), Mode.FRAMES: _VEO_FRAMES, Mode.REFERENCE: _KIE_REFERENCE},
        aspect_ratios=("16:9", "9:16", "Auto"), default_aspect_ratio="16:9",
        seed_range=(10000, 99999), supports_enhance=True, upscales=_KIE_UPSCALES,
        follow_ups=_KIE_FOLLOW_UPS, default_candidate=False, default_cost=1, timing=_VEO_TIMING_LITE,
    ),
    ModelSpec(
        key="veo-quality-kie", family=Family.VEO, provider=ProviderName.KIE,
        vendor_model="veo3", label="Veo 3.1 Quality (kie.ai)", tier="quality",
        modes={Mode.TEXT: ModeRule(), Mode.FRAMES: _VEO_FRAMES},
        aspect_ratios=("16:9", "9:16", "Auto"), default_aspect_ratio="16:9",
        seed_range=(10000, 99999), supports_enhance=True, upscales=_KIE_UPSCALES,
        follow_ups=_KIE_FOLLOW_UPS, default_cost=4, timing=_KIE_TIMING_QUALITY,
    ),
    # --- Sora 2 through the unified API ------------------------------------------------------------
    ModelSpec(
        key="sora-2", family=Family.SORA, provider=ProviderName.KKIAI,
        vendor_model="sora-2", label="Sora 2", tier="standard",
        modes={Mode.TEXT: ModeRule(), Mode.FRAMES: ModeRule(min_images=1, max_images=1)},
        orientations=("landscape", "portrait"), sizes=("small", "large"),
        durations=(10, 15), default_duration=10, supports_watermark=True,
        default_cost=3, timing=_typical(280, 40 * 60),
    ),
)


def _kling(tier: str, audio: bool, cost: int, timing: Timing) -> ModelSpec:
    sound = "audio" if audio else "silent"
    return ModelSpec(
        key=f"kling-v3-{tier}-{sound}", family=Family.KLING, provider=ProviderName.KLING,
        vendor_model=f"kling-v3-{tier}-{sound}",
        label=f"Kling v3 {tier.capitalize()} ({'with' if audio else 'no'} audio)", tier=tier,
        modes={Mode.TEXT: ModeRule(), Mode.FRAMES: ModeRule(min_images=1, max_images=2)},
        aspect_ratios=("16:9", "9:16", "1:1"), default_aspect_ratio="16:9",
        aspect_ratio_text_only=True, durations=tuple(range(3, 16)), default_duration=5,
        audio=audio, supports_negative_prompt=True, cfg_scale_range=(0.0, 1.0),
        shot_types=("customize", "intelligent"), max_shots=6, max_prompt_chars=2500,
        default_cost=cost, timing=timing,
    )


# Kling's gateway reports a percentage: an early check, a second reading to see it move, then a poll
# just after the finish it points to (and a check on the way for a far one). What that costs by the
# schedule's own walk over jobs like the priors: ~4 requests a std job, ~5.5 a pro job.
_KLING_PACED_STD, _KLING_PACED_PRO = 4.5, 5.5
MODELS += (
    _kling("std", False, 2, _typical(150, 30 * 60, _KLING_PACED_STD)),
    _kling("std", True, 3, _typical(160, 30 * 60, _KLING_PACED_STD)),
    _kling("pro", False, 4, _typical(230, 40 * 60, _KLING_PACED_PRO)),
    _kling("pro", True, 5, _typical(240, 40 * 60, _KLING_PACED_PRO)),
)

MODELS_BY_KEY: dict[str, ModelSpec] = {spec.key: spec for spec in MODELS}

SURCHARGE_COSTS: dict[str, int] = {
    UPSAMPLE_COST_KEY: DEFAULT_UPSAMPLE_COST, EXTEND_COST_KEY: DEFAULT_EXTEND_COST, UHD_COST_KEY: DEFAULT_UHD_COST,
}
COST_KEYS: tuple[str, ...] = tuple(MODELS_BY_KEY) + tuple(SURCHARGE_COSTS)


def get_model(key: str) -> ModelSpec:
    return MODELS_BY_KEY[key]


def default_cost(key: str) -> int:
    """A cost key's price when the server set none: a model's, or a surcharge's / follow-up's."""
    surcharge = SURCHARGE_COSTS.get(key)
    return surcharge if surcharge is not None else get_model(key).default_cost


def calls_back(mode: Mode | str) -> bool:
    """Whether the vendor reports a job of this mode by callback (when the bot can be called back)."""
    kind = FOLLOW_UP_BY_MODE.get(mode)
    return kind is None or kind.calls_back


def timing_for(model_key: str, mode: Mode | str) -> Timing:
    """The Timing prior of one kind of job (model and mode)."""
    return get_model(model_key).timing_for(mode)


def models_for(family: Family, providers: set[ProviderName] | None = None) -> list[ModelSpec]:
    """The family's models, limited to configured providers when given."""
    return [m for m in MODELS if m.family == family and (providers is None or m.provider in providers)]


def default_model(
    family: Family, providers: set[ProviderName], preferred: ProviderName | None = None
) -> ModelSpec | None:
    """The model used when the member picks none: the preferred provider's cheapest default candidate."""
    candidates = [m for m in models_for(family, providers) if m.default_candidate]
    if not candidates:
        return None
    if preferred is not None and any(m.provider == preferred for m in candidates):
        candidates = [m for m in candidates if m.provider == preferred]
    return min(candidates, key=lambda m: m.default_cost)


def option_values(models: Iterable[ModelSpec], values: Callable[[ModelSpec], Iterable[_V]]) -> list[_V]:
    """Every value the given models offer for one option, in catalog order, once each: the slash
    commands' choices, so a new model's values show up without touching the commands."""
    seen: list[_V] = []
    for model in models:
        seen.extend(value for value in values(model) if value not in seen)
    return seen


def option_range(
    models: Iterable[ModelSpec], bounds: Callable[[ModelSpec], tuple[_N, _N] | None]
) -> tuple[_N, _N] | None:
    """The widest range the given models allow for one numeric option (a slash command's min/max, so a
    model's range is its catalog entry); None when none of them takes it. Each model's own range is
    what validation checks."""
    ranges = [r for r in (bounds(m) for m in models) if r is not None]
    if not ranges:
        return None
    return min(low for low, _high in ranges), max(high for _low, high in ranges)


def duration_range(model: ModelSpec) -> tuple[int, int] | None:
    """A model's durations as a range (for a command that takes any whole number of seconds in it)."""
    return (min(model.durations), max(model.durations)) if model.durations else None


def families_available(providers: set[ProviderName]) -> list[Family]:
    """Families with at least one configured provider: only these register a command."""
    return [f for f in Family if models_for(f, providers)]
