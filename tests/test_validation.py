"""The capability table decides every request: valid ones become JobSpecs, invalid ones name the option."""

from __future__ import annotations

from typing import Any

import pytest

from bot.catalog import MODELS, Family, ImageRole, Mode, ProviderName, default_model, families_available
from bot.validation import GenerationRequest, ImageInput, InputError, validate_request

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
        (request(Family.VEO), ALL, "veo-fast-kie", Mode.TEXT),
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
    (request(Family.VEO, R1, aspect_ratio="9:16", model="veo-fast-kie"), ALL, "aspect_ratio", "`16:9`"),
    (request(Family.VEO, aspect_ratio="1:1"), ALL, "aspect_ratio", "`9:16`"),
    (request(Family.VEO, seed=9999), ALL, "seed", "10000 and 99999"),
    (request(Family.VEO, seed=100000), ALL, "seed", "10000 and 99999"),
    (request(Family.VEO, seed=12345, model="veo-fast-kkiai"), ALL, "seed", "not supported"),
    (request(Family.VEO, upsample=True, aspect_ratio="9:16", model="veo-fast-kie"), ALL, "upsample", "`16:9`"),
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
