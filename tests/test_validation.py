"""The capability table decides every request: valid ones become JobSpecs, invalid ones name the option."""

from __future__ import annotations

from typing import Any

import pytest

from bot.catalog import (
    COST_KEYS, MODELS, Family, FollowUp, ImageRole, Mode, ProviderName, default_model, families_available, get_model,
    calls_back,
    timing_for,
)
from bot.validation import (
    GenerationRequest, ImageInput, InputError, JobSpec, build_follow_up, follow_ups_for, validate_request,
)

ALL = {ProviderName.KKIAI, ProviderName.KIE, ProviderName.KLING}


def image(role: ImageRole) -> ImageInput:
    return ImageInput(role=role, filename=f"{role.value}.png", url=f"https://cdn.test/{role.value}.png",
                      attachment_id=hash(role) % 10_000, content_type="image/png", size=1000)


def request(family: Family, *roles: ImageRole, prompt: str = "a red fox in the snow", **options: Any) -> GenerationRequest:
    return GenerationRequest(family=family, prompt=prompt, images={r: image(r) for r in roles}, **options)


F, L = ImageRole.FIRST_FRAME, ImageRole.LAST_FRAME
R1, R2, R3 = ImageRole.REFERENCE_1, ImageRole.REFERENCE_2, ImageRole.REFERENCE_3


@pytest.mark.parametrize(
    ("req", "providers", "expected_model", "expected_mode"),
    [
        (request(Family.VEO), ALL, "veo-fast-kie", Mode.TEXT),  # Lite is cheaper, but only ever picked by name
        (request(Family.VEO, R1, R2, aspect_ratio="9:16", model="veo-lite-kie"), ALL, "veo-lite-kie", Mode.REFERENCE),
        (request(Family.VEO), {ProviderName.KKIAI}, "veo-fast-kkiai", Mode.TEXT),
        (request(Family.VEO, F, L, model="veo-quality-kkiai"), ALL, "veo-quality-kkiai", Mode.FRAMES),
        (request(Family.VEO, R1, R2, R3, model="veo-fast-kie"), ALL, "veo-fast-kie", Mode.REFERENCE),
        (request(Family.SORA, F, duration=15, orientation="portrait"), ALL, "sora-2", Mode.FRAMES),
        (request(Family.KLING, model="pro", audio=True, duration=15), ALL, "kling-v3-pro-audio", Mode.TEXT),
        (request(Family.KLING, F, L), ALL, "kling-v3-std-silent", Mode.FRAMES),
    ],
)
def test_valid_requests_become_job_specs(req, providers, expected_model, expected_mode) -> None:
    spec = validate_request(req, providers, ProviderName.KIE)
    assert spec.model_key == expected_model
    assert spec.mode is expected_mode
    assert [i.role for i in spec.images] == sorted(req.images, key=list(ImageRole).index)


def test_defaults_are_filled_from_the_table() -> None:
    sora = validate_request(request(Family.SORA), ALL)
    assert sora.params == {"orientation": "landscape", "size": "small", "watermark": True, "duration": 10}
    kling_frames = validate_request(request(Family.KLING, F), ALL)
    assert "aspect_ratio" not in kling_frames.params  # the image decides the shape
    veo = validate_request(request(Family.VEO, seed=12345, upsample=True), ALL, ProviderName.KIE)
    assert veo.params == {"aspect_ratio": "16:9", "enhance_prompt": True, "upsample": True, "seed": 12345}


def test_upsample_values_come_from_the_table() -> None:
    uhd = validate_request(request(Family.VEO, model="veo-quality-kie", upsample="4k", aspect_ratio="9:16"), ALL)
    assert uhd.params == {"aspect_ratio": "9:16", "enhance_prompt": True, "resolution": "4k"}
    assert uhd.resolution == "4k" and uhd.cost_keys == ["veo-quality-kie", "4k"] and follow_ups_for(uhd) == []
    hd = validate_request(request(Family.VEO, model="veo-lite-kie", upsample="1080p", aspect_ratio="9:16"), ALL)
    assert hd.params["upsample"] is True and hd.cost_keys == ["veo-lite-kie", "1080p"]
    plain = validate_request(request(Family.VEO, model="veo-fast-kkiai", upsample=False), ALL)
    assert "upsample" not in plain.params and plain.resolution == "720p"


def test_multi_prompt_is_split_into_shots() -> None:
    spec = validate_request(request(Family.KLING, multi_prompt="wide shot | close up |  "), ALL)
    assert spec.params["multi_prompt"] == ["wide shot", "close up"]
    assert spec.params["shot_type"] == "customize"


BAD = [
    # (request, providers, option named in the error, words the message must contain)
    (request(Family.VEO, prompt="   "), ALL, "prompt", "write a prompt"),
    (request(Family.VEO, prompt="x" * 10_000), ALL, "prompt", "at most 2000"),
    (request(Family.KLING, prompt="x" * 2501), ALL, "prompt", "at most 2500"),
    (request(Family.VEO, L), ALL, "last_frame", "first_frame"),
    (request(Family.VEO, F, R1), ALL, "reference_1", "not both"),
    (request(Family.VEO, R1, model="veo-quality-kie"), ALL, "reference_1", "veo-fast-kie"),
    (request(Family.VEO, R1), {ProviderName.KKIAI}, "reference_1", "does not take reference"),
    (request(Family.VEO, R1, aspect_ratio="Auto", model="veo-fast-kie"), ALL, "aspect_ratio", "`16:9`, `9:16`"),
    (request(Family.VEO, aspect_ratio="1:1"), ALL, "aspect_ratio", "`9:16`"),
    (request(Family.VEO, seed=9999), ALL, "seed", "10000 and 99999"),
    (request(Family.VEO, seed=100000), ALL, "seed", "10000 and 99999"),
    (request(Family.VEO, seed=12345, model="veo-fast-kkiai"), ALL, "seed", "not supported"),
    (request(Family.VEO, upsample=True, aspect_ratio="Auto", model="veo-fast-kie"), ALL, "upsample", "`16:9`, `9:16`"),
    (request(Family.VEO, upsample="4k", model="veo-fast-kkiai"), ALL, "upsample", "`720p`, `1080p`"),
    (request(Family.VEO, upsample="8k", model="veo-quality-kie"), ALL, "upsample", "`4k`"),
    (request(Family.SORA, upsample="1080p"), ALL, "upsample", "not supported"),
    (request(Family.VEO, model="veo-fast-kie"), {ProviderName.KKIAI}, "model", "veo-fast-kkiai"),
    (request(Family.VEO, model="sora-2"), ALL, "model", "choose one of"),
    (request(Family.SORA, F, L), ALL, "last_frame", "first frame only"),
    (request(Family.SORA, duration=12), ALL, "duration", "`10`, `15`"),
    (request(Family.SORA, size="huge"), ALL, "size", "`small`"),
    (request(Family.SORA, aspect_ratio="16:9"), ALL, "aspect_ratio", "not supported"),
    (request(Family.KLING, duration=2), ALL, "duration", "3-15"),
    (request(Family.KLING, duration=16), ALL, "duration", "3-15"),
    (request(Family.KLING, cfg_scale=1.5), ALL, "cfg_scale", "between 0.0 and 1.0"),
    (request(Family.KLING, F, aspect_ratio="1:1"), ALL, "aspect_ratio", "text-only"),
    (request(Family.KLING, shot_type="dolly"), ALL, "shot_type", "`customize`"),
    (request(Family.KLING, multi_prompt="only one"), ALL, "multi_prompt", "2-6"),
    (request(Family.KLING, multi_prompt="|".join("s" * 7)), ALL, "multi_prompt", "2-6"),
    (request(Family.KLING, R1), ALL, "reference_1", "does not take reference"),
    (request(Family.KLING, model="ultra"), ALL, "model", "`std`"),
    (request(Family.KLING, seed=12345), ALL, "seed", "not supported"),
    (request(Family.SORA), {ProviderName.KIE}, "model", "no provider"),
]


@pytest.mark.parametrize(("req", "providers", "option", "words"), BAD)
def test_bad_requests_name_the_option(req, providers, option, words) -> None:
    with pytest.raises(InputError) as caught:
        validate_request(req, providers, ProviderName.KIE)
    assert caught.value.option == option
    assert words in caught.value.message


def test_every_model_has_a_usable_rule_set() -> None:
    for spec in MODELS:
        assert Mode.TEXT in spec.modes, spec.key
        assert spec.default_cost > 0
        assert spec.timing.p10 < spec.timing.p50 < spec.timing.p90 < spec.timing.max_runtime
        if spec.aspect_ratios:
            assert spec.default_aspect_ratio in spec.aspect_ratios


def test_families_follow_configured_providers() -> None:
    assert families_available({ProviderName.KIE}) == [Family.VEO]
    assert families_available({ProviderName.KKIAI}) == [Family.VEO, Family.SORA]
    assert families_available(set()) == []
    assert default_model(Family.VEO, ALL, ProviderName.KKIAI).key == "veo-fast-kkiai"


# --- follow-ups ---------------------------------------------------------------------------------------

def kie_video(**options: Any) -> JobSpec:
    return validate_request(request(Family.VEO, model="veo-fast-kie", **options), ALL)


def test_follow_ups_come_from_the_catalog() -> None:
    assert follow_ups_for(kie_video()) == [FollowUp.EXTEND, FollowUp.UPSCALE_1080P, FollowUp.UPSCALE_4K]
    assert follow_ups_for(kie_video(aspect_ratio="9:16")) == list(FollowUp)
    # Already 1080p: kie cannot extend it, and 1080p again would be nothing new.
    assert follow_ups_for(kie_video(upsample=True)) == [FollowUp.UPSCALE_4K]
    assert follow_ups_for(validate_request(request(Family.SORA), ALL)) == []
    assert follow_ups_for(validate_request(request(Family.VEO, model="veo-fast-kkiai"), ALL)) == []
    assert follow_ups_for(validate_request(request(Family.KLING), ALL)) == []


def test_build_follow_up_makes_a_job_on_the_same_provider() -> None:
    source = kie_video(aspect_ratio="9:16")
    extend = build_follow_up(source, "veo_task_1", FollowUp.EXTEND, prompt="  the fox jumps  ")
    assert (extend.provider, extend.model_key, extend.mode) == (ProviderName.KIE, "veo-fast-kie", Mode.EXTEND)
    assert extend.params == {"source_task_id": "veo_task_1", "aspect_ratio": "9:16"}
    assert extend.prompt == "the fox jumps" and extend.follow_up is FollowUp.EXTEND
    assert build_follow_up(source, "veo_task_1", FollowUp.EXTEND).prompt == source.prompt

    uhd = build_follow_up(source, "veo_task_1", FollowUp.UPSCALE_4K)
    assert uhd.mode is Mode.UPSCALE_4K and uhd.params["resolution"] == "4k" and uhd.resolution == "4k"
    assert uhd.cost_keys == ["4k"]
    hd = build_follow_up(source, "veo_task_1", FollowUp.UPSCALE_1080P)
    assert hd.mode is Mode.UPSCALE_1080P and hd.params["source_task_id"] == "veo_task_1"
    # From a 1080p follow-up only 4K is left, and it upscales the original task, not the derived id.
    assert follow_ups_for(hd) == [FollowUp.UPSCALE_4K]
    assert build_follow_up(hd, "1080p:veo_task_1", FollowUp.UPSCALE_4K).params["source_task_id"] == "veo_task_1"
    assert follow_ups_for(uhd) == []
    # An extension is a video of its own: it may be extended or upscaled in turn, from its own task.
    assert follow_ups_for(extend) == list(FollowUp)
    assert build_follow_up(extend, "veo_extend_2", FollowUp.UPSCALE_4K).params["source_task_id"] == "veo_extend_2"


@pytest.mark.parametrize(("source", "action", "words"), [
    (lambda: validate_request(request(Family.SORA), ALL), FollowUp.EXTEND, "Sora 2 videos cannot"),
    (lambda: kie_video(upsample=True), FollowUp.EXTEND, "upscaled video cannot be extended"),
    (lambda: kie_video(upsample=True), FollowUp.UPSCALE_1080P, "already in 1080p"),
])
def test_follow_ups_not_allowed_say_why(source: Any, action: FollowUp, words: str) -> None:
    with pytest.raises(InputError) as refused:
        build_follow_up(source(), "task", action)
    assert words in refused.value.message


def test_extend_prompt_is_checked_like_any_prompt() -> None:
    with pytest.raises(InputError) as refused:
        build_follow_up(kie_video(), "task", FollowUp.EXTEND, prompt="   ")
    assert refused.value.option == "prompt"


def test_follow_up_modes_have_their_own_timing_and_price() -> None:
    assert timing_for("veo-fast-kie", Mode.UPSCALE_4K).p50 > timing_for("veo-fast-kie", Mode.UPSCALE_1080P).p50
    assert timing_for("veo-quality-kie", Mode.EXTEND) == timing_for("veo-fast-kie", Mode.TEXT)
    assert timing_for("veo-quality-kie", "text") == get_model("veo-quality-kie").timing
    # A 4K pass on a Fast video may run past Fast's own limit: its deadline is the pass's.
    from bot.jobs.models import deadline_for
    from bot.settings import Settings
    settings = Settings(discord_token="t", job_timeout_seconds=None)
    assert deadline_for(settings, "veo-fast-kie", 0.0, Mode.UPSCALE_4K) == timing_for("veo-fast-kie", "upscale_4k").max_runtime
    assert deadline_for(settings, "veo-fast-kie", 0.0) == get_model("veo-fast-kie").timing.max_runtime
    assert {"1080p", "extend", "4k"} <= set(COST_KEYS)
    assert kie_video(upsample=True).cost_keys == ["veo-fast-kie", "1080p"]
    # kie's 1080p endpoint takes no callBackUrl: those jobs must be polled, not wait for a callback.
    assert not calls_back(Mode.UPSCALE_1080P) and calls_back(Mode.UPSCALE_4K) and calls_back("text")
