"""Real bot processes (`python -m bot <role>`) beside the loopback fakes: a clean environment, a free
port, one process with its log in a file. Shared by the end-to-end and crash tests and the benchmark's
PostgreSQL mode (benchmarks/scale.py), which start the real entry point rather than the bot in-process.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from bot.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A port nothing listens on right now (the bot binds it moments later; loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_environment() -> dict[str, str]:
    """This process's environment without any Framecast setting, with the repo importable."""
    setting_names = {name.upper() for name in Settings.model_fields}
    env = {key: value for key, value in os.environ.items() if key.upper() not in setting_names}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class RoleProcess:
    """One extra bot process (a gateway or a worker): start, wait for a log line, SIGKILL or SIGTERM."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self._log_file: Any = None

    async def start(self, args: tuple[str, ...], *, cwd: Path, env: dict[str, str]) -> None:
        self._log_file = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", *args, cwd=str(cwd), env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=self._log_file, stderr=asyncio.subprocess.STDOUT)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait_for_log(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            assert self.process is not None
            if self.process.returncode is not None:
                raise AssertionError(f"{self.log_path.name}: exited {self.process.returncode} before logging "
                                     f"{text!r}:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.log_path.name}: no {text!r} after {timeout}s:\n{self.log_text()}")
            await asyncio.sleep(0.05)

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(sig)
        code = await asyncio.wait_for(self.process.wait(), timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return code
