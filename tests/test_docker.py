"""The Dockerfile and docker-compose.yml, read as Docker and Compose read them (no daemon runs here)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from bot.app import COMMANDS
from bot.runtime import Role

REPO = Path(__file__).resolve().parents[1]


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """(instruction, arguments) per stage, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_the_runtime_image_installs_a_wheel_and_runs_as_10001_with_data_on_a_volume() -> None:
    *_, runtime = dockerfile_stages()
    instructions = dict(runtime)
    assert instructions["USER"] == "10001"
    assert instructions["VOLUME"] == '["/data"]'
    runs = " ".join(arguments for instruction, arguments in runtime if instruction == "RUN")
    # No `pip install .` from a source tree: that is what leaves build/ and *.egg-info behind.
    assert "pip install /wheels/*.whl" in runs and "rm -rf /wheels" in runs and "pip install ." not in runs
    copies = [arguments for instruction, arguments in runtime if instruction == "COPY"]
    assert not any(re.match(r"(bot|cogs|storage)\b", c) for c in copies)
    assert "chown framecast /app /data" in runs and "--uid 10001" in runs
    assert "docker/defaults.env /etc/framecast/defaults.env" in copies


def test_the_healthcheck_follows_http_listen_instead_of_a_fixed_address() -> None:
    *_, runtime = dockerfile_stages()
    [healthcheck] = [arguments for instruction, arguments in runtime if instruction == "HEALTHCHECK"]
    assert "127.0.0.1:8080" not in healthcheck and "urlopen" not in healthcheck
    assert healthcheck.endswith('CMD ["framecast", "healthcheck"]')
    assert dict(runtime)["ENTRYPOINT"] == '["framecast"]' and dict(runtime)["CMD"] == '["all"]'
    assert "healthcheck" in COMMANDS


def test_the_image_defaults_file_names_the_volume_and_the_health_server() -> None:
    lines = dict(line.split("=", 1) for line in (REPO / "docker" / "defaults.env").read_text().splitlines()
                 if line and not line.startswith("#"))
    assert lines == {"DATABASE_URL": "sqlite:////data/bot.db", "HTTP_LISTEN": "0.0.0.0:8080"}


def test_compose_runs_postgres_one_gateway_and_two_workers_each_with_its_health_check() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "gateway", "worker"}
    assert services["postgres"]["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    for name, role, replicas in (("gateway", Role.GATEWAY, None), ("worker", Role.WORKER, 2)):
        service = services[name]
        assert service["command"] == [role.value]
        assert service["healthcheck"]["test"] == ["CMD", "framecast", "healthcheck"]
        assert service["environment"]["DATABASE_URL"].startswith("postgresql://")
        assert service["environment"]["HTTP_LISTEN"] == "0.0.0.0:8080"
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service.get("deploy", {}).get("replicas") == replicas
        assert service["env_file"] == ".env"


def test_compose_commands_are_the_entry_points_roles() -> None:
    for service in compose()["services"].values():
        if "command" in service:
            assert shlex.join(service["command"]) in COMMANDS
