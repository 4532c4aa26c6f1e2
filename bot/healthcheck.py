"""`python -m bot healthcheck`: the Docker HEALTHCHECK. Asks this process's own `/healthz`.

The address comes from HTTP_LISTEN, read the way the bot reads it (environment, `.env`, the image's
defaults), so the check follows the setting instead of assuming 127.0.0.1:8080. It prints one line
and exits 0 (healthy) or 1 (anything else): Docker shows that line in `docker inspect`, and a 503 is
an answer to report, not a traceback.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import TextIO

from pydantic import ValidationError

from bot.http_server import parse_listen
from bot.settings import Settings

TIMEOUT_SECONDS = 4.0


def health_url(http_listen: str) -> str:
    """Where this process's server answers: a wildcard bind (`0.0.0.0`, `::`, `:8080`) is asked on loopback."""
    host, port = parse_listen(http_listen)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def _read_listen() -> str | None:
    """HTTP_LISTEN as the bot reads it (the token is not needed to know where to knock)."""
    return Settings(discord_token="unused-by-the-healthcheck").http_listen  # type: ignore[arg-type]


def healthcheck(out: TextIO | None = None, *, http_listen: str | None = None) -> int:
    """0 when /healthz answers 200; 1 otherwise, with one line saying why."""
    out = out or sys.stdout
    try:
        listen = http_listen if http_listen is not None else _read_listen()
    except ValidationError as exc:
        print(f"unhealthy: the settings are invalid ({exc.error_count()} problem(s)); see the bot's own log", file=out)
        return 1
    if not listen:
        print("unhealthy: HTTP_LISTEN is off, so there is no /healthz to ask", file=out)
        return 1
    url = health_url(listen)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    except (OSError, ValueError) as exc:
        print(f"unhealthy: {url} did not answer ({type(exc).__name__}: {exc})", file=out)
        return 1
    if status == 200:
        print(f"healthy: {_summary(body)}", file=out)
        return 0
    print(f"unhealthy: {url} answered HTTP {status}: {_summary(body)}", file=out)
    return 1


def _summary(body: bytes) -> str:
    """`role=worker database_writable=true poller_alive=false`: the report on one line."""
    try:
        report = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace")
    if not isinstance(report, dict):
        return str(report)[:200]
    return " ".join(f"{key}={json.dumps(value)}" for key, value in report.items())
