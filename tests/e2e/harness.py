"""Run the real bot (`python -m bot`) as a subprocess against the loopback Discord and vendor fakes.

Reused by the end-to-end test and the crash tests: start, wait until it is connected and its commands are
synced, SIGKILL or SIGTERM it, start it again on the same database.

    async with BotHarness(tmp_path) as harness:
        await harness.start_bot()
        await harness.discord.dispatch_interaction(harness.discord.slash_command("veo", {...}))
        ...
        await harness.kill()           # SIGKILL, like a crash
        await harness.start_bot()      # same database, same fakes

The subprocess runs in `tmp_path` (so no developer `.env` is read) with an environment stripped of every
Framecast setting, then given the harness's. Its stdout+stderr go to `tmp_path/bot-<n>.log`.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from fakes.discord_api import FakeDiscord
from fakes.processes import REPO_ROOT, RoleProcess, clean_environment, free_port
from fakes.vendors import FakeKieVendor, FakeKlingVendor, FakeUnifiedVendor

__all__ = ["KIE_KEY", "KIE_WEBHOOK_KEY", "KKIAI_KEY", "KLING_KEY", "READY_LOG_LINE", "REPO_ROOT", "BotHarness",
           "RoleProcess", "clean_environment", "free_port"]

READY_LOG_LINE = "gateway connected as"
KKIAI_KEY = "e2e-kkiai-key-0123456789"
KIE_KEY = "e2e-kie-key-0123456789"
KLING_KEY = "e2e-kling-key-0123456789"
KIE_WEBHOOK_KEY = "e2e-kie-webhook-hmac-key"


class BotHarness:
    """Fakes + one bot subprocess at a time. Vendor fakes run on the wall clock (real subprocess)."""

    def __init__(
        self,
        tmp_path: Path,
        *,
        vendor_duration: float = 1.0,
        extra_env: dict[str, str] | None = None,
        vendors: tuple[str, ...] = ("kie", "kkiai", "kling"),
    ) -> None:
        self.tmp_path = tmp_path
        self.discord = FakeDiscord()
        # kie.ai calls the bot back when a task finishes: that, not a blind poll, makes delivery quick.
        self.kie = FakeKieVendor(api_key=KIE_KEY, duration=vendor_duration, hd_delay=None,
                                 callback_key=KIE_WEBHOOK_KEY)
        self.unified = FakeUnifiedVendor(api_key=KKIAI_KEY, duration=vendor_duration)
        self.kling = FakeKlingVendor(api_key=KLING_KEY, duration=vendor_duration)
        self.vendors = vendors
        self.extra_env = dict(extra_env or {})
        self.database_path = tmp_path / "data" / "bot.db"
        self.http_port = free_port()
        self.process: asyncio.subprocess.Process | None = None
        self.runs = 0
        self.role_processes: list[RoleProcess] = []
        self.log_path: Path | None = None
        self._log_file: Any = None

    # --- fakes ---------------------------------------------------------------------------------------
    async def __aenter__(self) -> BotHarness:
        await self.discord.start()
        await self.kie.start()
        await self.unified.start()
        await self.kling.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            if self.process is not None and self.process.returncode is None:
                await self.kill()
            for extra in self.role_processes:
                await extra.stop(signal.SIGKILL)
        finally:
            self._close_log()
            for fake in (self.kie, self.unified, self.kling):
                await fake.stop()
            await self.discord.close()

    def env(self) -> dict[str, str]:
        """The subprocess environment: inherited basics, no stray Framecast settings, then ours."""
        env = clean_environment()
        env.update({
            "DISCORD_TOKEN": self.discord.token,
            "DISCORD_API_BASE": self.discord.api_base,
            "DISCORD_GUILD_IDS": str(self.discord.GUILD_ID),
            "DATABASE_URL": f"sqlite:///{self.database_path}",
            "POLL_MIN_INTERVAL_SECONDS": "0.2",
            "POLL_MAX_INTERVAL_SECONDS": "0.5",
            "HTTP_TIMEOUT_SECONDS": "5",
            "SUBMIT_TIMEOUT_SECONDS": "5",
            "LEASE_SECONDS": "5",
            "LOG_LEVEL": "INFO",
            "HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            "PUBLIC_BASE_URL": self.http_base_url,
            "KIE_WEBHOOK_HMAC_KEY": KIE_WEBHOOK_KEY,
        })
        if "kie" in self.vendors:
            env.update({"KIE_BASE_URL": self.kie.base_url, "KIE_UPLOAD_BASE_URL": self.kie.base_url,
                        "KIE_API_KEY": KIE_KEY, "VEO_PREFERRED_PROVIDER": "kie"})
        if "kkiai" in self.vendors:
            env.update({"KKIAI_BASE_URL": self.unified.base_url, "KKIAI_API_KEY": KKIAI_KEY})
        if "kling" in self.vendors:
            env.update({"KLING_BASE_URL": self.kling.base_url, "KLING_API_KEY": KLING_KEY})
        env.update(self.extra_env)
        return env

    @property
    def http_base_url(self) -> str:
        """The bot's operators' server (/healthz, /metrics, kie callbacks)."""
        return f"http://127.0.0.1:{self.http_port}"

    # --- the bot process ------------------------------------------------------------------------------
    async def start_bot(self, *, wait_ready: bool = True, timeout: float = 30.0,
                        env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
        """Spawn `python -m bot`; by default wait until commands are synced and the gateway is READY."""
        if self.process is not None and self.process.returncode is None:
            raise RuntimeError("the bot is already running; kill() or terminate() it first")
        self.runs += 1
        self._close_log()
        self.log_path = self.tmp_path / f"bot-{self.runs}.log"
        self._log_file = self.log_path.open("wb")
        self._ready_logs_seen = 0
        syncs_before = len(self.discord.requests_to("PUT", r"/applications/\d+/guilds/\d+/commands"))
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", cwd=str(self.tmp_path), env=env or self.env(),
            stdin=asyncio.subprocess.DEVNULL, stdout=self._log_file, stderr=asyncio.subprocess.STDOUT,
        )
        if wait_ready:
            await self.wait_ready(syncs_before, timeout=timeout)
        return self.process

    async def wait_ready(self, syncs_before: int = 0, timeout: float = 30.0) -> None:
        """Commands synced to the guild, and the bot logged that the gateway is connected (on_ready)."""
        def synced() -> bool:
            return len(self.discord.requests_to("PUT", r"/applications/\d+/guilds/\d+/commands")) > syncs_before
        await self._poll(lambda: synced() and READY_LOG_LINE in self.log_text(), timeout, "READY")

    async def _poll(self, condition: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process is not None and self.process.returncode is not None:
                raise AssertionError(f"bot exited with {self.process.returncode} while waiting for {what}:\n"
                                     f"--- bot log ---\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n"
                                     f"--- bot log ---\n{self.log_text()}")
            await asyncio.sleep(0.05)

    async def wait_for(self, predicate: Any, what: str, timeout: float = 20.0) -> Any:
        """Poll `predicate` (over any fake's state) until truthy; fail with the bot's log on timeout or death."""
        result: list[Any] = []

        def check() -> bool:
            value = predicate()
            if value:
                result.append(value)
            return bool(value)
        await self._poll(check, timeout, what)
        return result[-1]

    async def wait_for_log(self, text: str, timeout: float = 15.0) -> None:
        await self._poll(lambda: text in self.log_text(), timeout, f"logging {text!r}")

    async def kill(self, timeout: float = 10.0) -> int:
        """SIGKILL and reap: no cleanup at all, like a crash or an OOM kill. Returns the exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
        return await self.wait_exit(timeout)

    async def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await self.wait_exit(timeout)

    async def wait_exit(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), timeout)

    def log_text(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    # --- more processes: `python -m bot gateway` / `worker` beside (or instead of) the main one -------
    async def spawn(self, *args: str, name: str, env: dict[str, str] | None = None) -> RoleProcess:
        """Start `python -m bot <args>` with this harness's environment (plus `env`); log in `<name>.log`."""
        full_env = {**self.env(), **(env or {})}
        process = RoleProcess(self.tmp_path / f"{name}.log")
        await process.start(args, cwd=self.tmp_path, env=full_env)
        self.role_processes.append(process)
        return process
