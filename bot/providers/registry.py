"""Build the vendor clients that the settings configure, and nothing else."""

from __future__ import annotations

from collections.abc import Mapping

from bot.catalog import ProviderName
from bot.clock import Clock, SystemClock
from bot.providers.base import ImageHost, ProviderClient
from bot.providers.kie import KieClient
from bot.providers.kling import KlingClient
from bot.providers.unified import UnifiedClient
from bot.settings import Settings


def build_providers(settings: Settings, clock: Clock | None = None) -> dict[ProviderName, ProviderClient]:
    """One client (one connection pool) per configured vendor. Close them with `close_providers`."""
    clock = clock or SystemClock()
    providers: dict[ProviderName, ProviderClient] = {}
    if settings.kkiai_configured and settings.kkiai_api_key is not None:
        providers[ProviderName.KKIAI] = UnifiedClient(settings.kkiai_base_url, settings.kkiai_api_key, settings, clock)
    if settings.kie_configured and settings.kie_api_key is not None:
        providers[ProviderName.KIE] = KieClient(
            settings.kie_base_url, settings.kie_api_key, settings, clock,
            upload_base_url=settings.kie_upload_base_url,
        )
    if settings.kling_configured and settings.kling_base_url and settings.kling_api_key is not None:
        providers[ProviderName.KLING] = KlingClient(settings.kling_base_url, settings.kling_api_key, settings, clock)
    return providers


def image_host(providers: Mapping[ProviderName, ProviderClient]) -> ImageHost | None:
    """The client that can re-host images (kie.ai's file host), when it is configured."""
    client = providers.get(ProviderName.KIE)
    return client if isinstance(client, KieClient) else None


async def close_providers(providers: Mapping[ProviderName, ProviderClient]) -> None:
    """Release every connection pool."""
    for client in providers.values():
        await client.aclose()
