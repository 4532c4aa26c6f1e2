"""The aiohttp-backed httpx transport, against a real aiohttp server on loopback: what arrives, what
comes back, and which httpx error each way of failing becomes (the line between "never sent" and
"may have been sent" is what keeps a submit from being made twice)."""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from aiohttp import web

from bot.catalog import ProviderName
from bot.providers.base import ErrorKind
from bot.providers.http import Phase, classify_transport_error
from bot.providers.transport import AiohttpTransport
from fakes.loopback import serve


class Server:
    """Records every request; the path picks the behaviour."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.release = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append({"method": request.method, "path": request.path, "raw_path": request.raw_path,
                          "headers": dict(request.headers), "body": body})
        if request.path == "/gzip":
            return web.Response(body=gzip.compress(b'{"ok": true}'),
                                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})
        if request.path == "/reset":
            assert request.transport is not None
            request.transport.abort()  # the request arrived; no answer ever comes
            return web.Response()
        if request.path == "/slow":
            await self.release.wait()
        return web.json_response({"echo": body.decode() or None}, status=201 if request.method == "POST" else 200,
                                 headers={"X-Reply": "yes"})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        port = await serve(self.runner)
        self.base_url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        self.release.set()
        if self.runner is not None:
            await self.runner.cleanup()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    running = Server()
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


def client_for(base_url: str, *, max_connections: int = 8, **timeouts: float) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, headers={"Authorization": "Bearer k3y"},
                             timeout=httpx.Timeout(5.0, **timeouts),
                             transport=AiohttpTransport(max_connections=max_connections))


async def test_a_request_arrives_as_httpx_built_it_and_the_answer_comes_back_whole(server: Server) -> None:
    async with client_for(server.base_url) as client:
        answer = await client.post("/api/v1/veo/generate", params={"taskId": "veo3.1-fast:17 a/b"},
                                   json={"prompt": "a fox"})
    assert answer.status_code == 201 and answer.reason_phrase == "Created"
    assert answer.headers["X-Reply"] == "yes" and answer.json() == {"echo": '{"prompt":"a fox"}'}
    seen = server.seen[0]
    assert (seen["method"], seen["path"]) == ("POST", "/api/v1/veo/generate")
    assert seen["raw_path"] == answer.request.url.raw_path.decode()  # httpx's encoding, not redone
    assert seen["raw_path"].endswith("taskId=veo3.1-fast%3A17+a%2Fb")
    assert seen["headers"]["Authorization"] == "Bearer k3y"
    assert seen["headers"]["Content-Type"] == "application/json"
    assert seen["headers"]["Content-Length"] == str(len(seen["body"]))
    assert json.loads(seen["body"]) == {"prompt": "a fox"}


async def test_compressed_answers_are_decoded_once(server: Server) -> None:
    async with client_for(server.base_url) as client:
        answer = await client.get("/gzip")
    assert answer.json() == {"ok": True}
    assert "gzip" in server.seen[0]["headers"]["Accept-Encoding"]  # httpx's header, sent as is


async def test_a_dropped_connection_is_one_request_and_may_have_been_sent(server: Server) -> None:
    async with client_for(server.base_url) as client:
        await client.get("/warm")  # the next request reuses this kept-alive connection
        with pytest.raises(httpx.TransportError) as caught:
            await client.get("/reset")
    assert [seen["path"] for seen in server.seen] == ["/warm", "/reset"]  # not resent behind our back
    assert not isinstance(caught.value, (httpx.ConnectError, httpx.ConnectTimeout))
    assert classify_transport_error(ProviderName.KIE, Phase.SUBMIT, caught.value).kind is ErrorKind.UNCERTAIN
    assert classify_transport_error(ProviderName.KIE, Phase.POLL, caught.value).kind is ErrorKind.RETRYABLE


async def test_nobody_listening_is_a_connect_error_so_never_sent() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again before the request: nothing listens there
    async with client_for(f"http://127.0.0.1:{port}") as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.post("/create", json={})
    assert classify_transport_error(ProviderName.KIE, Phase.SUBMIT, caught.value).kind is ErrorKind.RETRYABLE


async def test_a_slow_answer_is_a_read_timeout(server: Server) -> None:
    async with client_for(server.base_url, read=0.2) as client:
        with pytest.raises(httpx.ReadTimeout) as caught:
            await client.post("/slow", json={})
    assert classify_transport_error(ProviderName.KIE, Phase.SUBMIT, caught.value).kind is ErrorKind.UNCERTAIN


async def test_waiting_too_long_for_a_pooled_connection_is_a_connect_timeout(server: Server) -> None:
    async with client_for(server.base_url, max_connections=1, connect=0.2, pool=0.0) as client:
        busy = asyncio.create_task(client.get("/slow"))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.ConnectTimeout) as caught:
            await client.post("/create", json={})
        server.release.set()
        assert (await busy).status_code == 200
    assert "/create" not in [seen["path"] for seen in server.seen]
    assert classify_transport_error(ProviderName.KIE, Phase.SUBMIT, caught.value).kind is ErrorKind.RETRYABLE


async def test_the_environment_names_the_proxy_once_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("https_proxy", "no_proxy", "HTTPS_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    transport = AiohttpTransport(max_connections=1)
    assert transport._proxy_for(httpx.URL("https://api.kie.ai/x")) == "http://proxy.internal:3128"
    assert transport._proxy_for(httpx.URL("https://direct.example/x")) is None
    monkeypatch.delenv("HTTPS_PROXY")
    assert transport._proxy_for(httpx.URL("https://api.kie.ai/y")) == "http://proxy.internal:3128"  # cached
    assert AiohttpTransport(max_connections=1, trust_env=False)._proxy_for(httpx.URL("https://api.kie.ai/")) is None


async def test_a_failed_tls_handshake_is_a_connect_error_so_never_sent(server: Server) -> None:
    tls_url = server.base_url.replace("http://", "https://")  # the server speaks plain HTTP: no handshake
    async with client_for(tls_url) as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.post("/create", json={})
    assert server.seen == []
    assert classify_transport_error(ProviderName.KIE, Phase.SUBMIT, caught.value).kind is ErrorKind.RETRYABLE
