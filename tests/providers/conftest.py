"""Helpers for the provider tests: settings with short timeouts, and validated job specs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from bot.catalog import Family, ImageRole, ProviderName
from bot.metrics import REGISTRY
from bot.settings import Settings
from bot.validation import GenerationRequest, ImageInput, JobSpec, validate_request

API_KEY = "sk-test-secret-0123456789"


@pytest.fixture(autouse=True)
def _no_vendor_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Settings read the environment and `.env`: keep a developer's real keys out of these tests."""
    for name in list(os.environ):
        if name.upper().startswith(("KKIAI_", "KIE_", "KLING_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no `.env` here


@pytest.fixture
def settings() -> Settings:
    # Short submit timeout so a delayed fake trips it quickly; generous poll timeout.
    return Settings(discord_token="t", http_timeout_seconds=5.0, submit_timeout_seconds=0.5,
                    provider_max_in_flight=4)


def image(role: ImageRole, n: int = 1) -> ImageInput:
    return ImageInput(role=role, filename=f"{role.value}.png", url=f"https://cdn.example/{role.value}-{n}.png")


def spec(family: Family, provider: ProviderName, prompt: str = "a red fox in the snow",
         images: tuple[ImageRole, ...] = (), **options: Any) -> JobSpec:
    """A JobSpec as validation would produce it for these options."""
    request = GenerationRequest(
        family=family, prompt=prompt, images={role: image(role) for role in images}, **options,
    )
    return validate_request(request, {provider}, provider)


def requests_count(provider: ProviderName, operation: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "framecast_vendor_requests_total",
        {"provider": provider.value, "operation": operation, "outcome": outcome},
    )
    return value or 0.0
