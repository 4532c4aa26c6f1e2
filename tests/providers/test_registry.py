"""build_providers builds exactly the configured vendors."""

from __future__ import annotations

from bot.catalog import ProviderName
from bot.clock import FakeClock
from bot.providers.base import ProviderClient
from bot.providers.kie import KieClient
from bot.providers.registry import build_providers, close_providers, image_host
from bot.settings import Settings


async def test_only_configured_providers_are_built(fake_clock: FakeClock) -> None:
    settings = Settings(discord_token="t", kie_api_key="k1", kling_api_key="k2", kling_base_url="")
    providers = build_providers(settings, fake_clock)
    try:
        assert set(providers) == {ProviderName.KIE}  # kling has no base URL, kkiai no key
        assert isinstance(image_host(providers), KieClient)
    finally:
        await close_providers(providers)


async def test_all_three(fake_clock: FakeClock) -> None:
    settings = Settings(discord_token="t", kkiai_api_key="a", kie_api_key="b", kling_api_key="c",
                        kling_base_url="http://127.0.0.1:9")
    providers = build_providers(settings, fake_clock)
    try:
        assert set(providers) == set(ProviderName)
        for name, client in providers.items():
            assert isinstance(client, ProviderClient) and client.name is name
    finally:
        await close_providers(providers)


async def test_none_configured_means_no_image_host(fake_clock: FakeClock) -> None:
    providers = build_providers(Settings(discord_token="t"), fake_clock)
    assert providers == {} and image_host(providers) is None
