"""The Docker HEALTHCHECK (`python -m bot healthcheck`) and the settings precedence the image relies on."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

import bot.settings
from bot.healthcheck import health_url, healthcheck
from bot.settings import Settings
from tests.e2e.harness import free_port

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
async def healthz() -> AsyncIterator[tuple[int, dict[str, object]]]:
    """A /healthz that answers whatever `state` says, on a free loopback port."""
    state: dict[str, object] = {"status": 200}

    async def handle(request: web.Request) -> web.Response:
        body = {"ready": True, "healthy": state["status"] == 200, "role": "worker"}
        return web.json_response(body, status=int(state["status"]))  # type: ignore[call-overload]

    app = web.Application()
    app.router.add_get("/healthz", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield port, state
    finally:
        await runner.cleanup()


async def test_healthy_is_exit_0_and_a_503_is_one_line_exit_1(healthz: tuple[int, dict[str, object]]) -> None:
    port, state = healthz
    out = io.StringIO()
    assert await asyncio.to_thread(healthcheck, out, http_listen=f"0.0.0.0:{port}") == 0
    assert out.getvalue().startswith("healthy: ")
    state["status"] = 503
    out = io.StringIO()
    assert await asyncio.to_thread(healthcheck, out, http_listen=f":{port}") == 1
    assert out.getvalue().count("\n") == 1 and "answered HTTP 503" in out.getvalue()
    assert "healthy=false" in out.getvalue() and "Traceback" not in out.getvalue()


def test_nothing_listening_or_no_server_is_one_line_exit_1() -> None:
    out = io.StringIO()
    assert healthcheck(out, http_listen=f"127.0.0.1:{free_port()}") == 1
    assert out.getvalue().count("\n") == 1 and "did not answer" in out.getvalue()
    out = io.StringIO()
    assert healthcheck(out, http_listen="") == 1 and "HTTP_LISTEN is off" in out.getvalue()


def test_the_check_knocks_where_the_server_listens() -> None:
    assert health_url("0.0.0.0:8080") == "http://127.0.0.1:8080/healthz"
    assert health_url(":9000") == "http://127.0.0.1:9000/healthz"
    assert health_url("[::]:8080") == "http://[::1]:8080/healthz"
    assert health_url("10.0.0.5:81") == "http://10.0.0.5:81/healthz"


def _settings_from(env_file: Path, monkeypatch: pytest.MonkeyPatch, image_defaults: Path | None) -> Settings:
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setattr(bot.settings, "IMAGE_DEFAULTS_FILE", image_defaults or env_file.parent / "absent.env")
    return Settings(_env_file=env_file)  # type: ignore[call-arg]


def test_a_copied_env_example_works_in_the_image_and_on_a_bare_machine(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text((REPO / ".env.example").read_text().replace("DISCORD_TOKEN=", "DISCORD_TOKEN=tok", 1))
    bare = _settings_from(env_file, monkeypatch, None)
    assert bare.database_path == Path("data/bot.db") and bare.http_listen is None
    image = _settings_from(env_file, monkeypatch, REPO / "docker" / "defaults.env")
    assert image.database_path == Path("/data/bot.db") and image.http_listen == "0.0.0.0:8080"
    # `docker run --env-file .env` makes every blank line an empty variable: still the image's defaults.
    for line in env_file.read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(bot.settings, "IMAGE_DEFAULTS_FILE", REPO / "docker" / "defaults.env")
    from_env = Settings(_env_file=None)  # type: ignore[call-arg]
    assert from_env.database_path == Path("/data/bot.db") and from_env.http_listen == "0.0.0.0:8080"
    # An operator's own value wins over the image's, and `off` turns the server off.
    monkeypatch.setenv("HTTP_LISTEN", "off")
    monkeypatch.setenv("DATABASE_URL", "sqlite:////data/other.db")
    mine = Settings(_env_file=None)  # type: ignore[call-arg]
    assert mine.http_listen is None and mine.database_path == Path("/data/other.db")
