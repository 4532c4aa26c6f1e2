"""Start an aiohttp app on loopback for a test and learn its port through aiohttp's public API."""

from __future__ import annotations

from typing import Any

from aiohttp import web


async def serve(runner: web.AppRunner, host: str = "127.0.0.1", port: int = 0, **site_options: Any) -> int:
    """Set up `runner`, listen on host:port (0: a free port) and return the port it is bound to."""
    await runner.setup()
    site = web.TCPSite(runner, host, port, **site_options)
    await site.start()
    return int(runner.addresses[-1][1])
