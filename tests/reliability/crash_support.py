"""Helpers for the crash tests: read the database from outside, restart the bot, check logs and invariants."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from pathlib import Path
from typing import Any

from storage.database import Database, open_database
from tests.e2e.harness import BotHarness
from tests.reliability.fault_fakes import result_messages
from tests.reliability.support import delivery_violations, ledger_violations, vendor_violations


def read_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    """A read from another connection, like an operator's sqlite3 shell (the bot may be running)."""
    connection = sqlite3.connect(path, timeout=10)
    connection.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in connection.execute(sql, params).fetchall()]
    finally:
        connection.close()


def postgres_url(harness: BotHarness) -> str | None:
    """The PostgreSQL database the bot runs on, when a test gave it one (else its SQLite file)."""
    url = harness.extra_env.get("DATABASE_URL", "")
    return url if url.startswith(("postgresql://", "postgres://")) else None


async def open_harness_database(harness: BotHarness) -> Database:
    url = postgres_url(harness)
    return await (open_database(url) if url else Database.open(harness.database_path))


async def rows(harness: BotHarness, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    if postgres_url(harness):
        database = await open_harness_database(harness)
        try:
            return [dict(row) for row in await database.fetchall(sql, params)]
        finally:
            await database.close()
    if not harness.database_path.exists():
        return []
    return await asyncio.to_thread(read_rows, harness.database_path, sql, params)


async def wait_for_row(harness: BotHarness, sql: str, what: str, params: tuple[Any, ...] = (),
                       timeout: float = 20.0) -> dict[str, Any]:
    """Poll the database (not the logs) until `sql` returns a row; fails with the bot's log."""
    found: list[dict[str, Any]] = []

    async def probe() -> None:
        while not found:
            try:
                found.extend(await rows(harness, sql, params))
            except sqlite3.OperationalError:  # the bot has not created the schema yet
                pass
            if not found:
                await asyncio.sleep(0.05)

    prober = asyncio.create_task(probe())
    try:
        await harness.wait_for(lambda: found or prober.done(), what, timeout=timeout)
    finally:
        prober.cancel()
    if not found:
        prober.result()  # re-raise what stopped the prober
    return found[0]


async def restart(harness: BotHarness) -> None:
    """Start the bot again without waiting for the gateway: the poller and the callback server come up
    before it (setup_hook), and they are all a crashed job needs."""
    await harness.start_bot(wait_ready=False)

    async def listening() -> bool:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", harness.http_port)
        except OSError:
            return False
        writer.close()
        return True

    deadline = time.monotonic() + 30
    while not await listening():
        if harness.process is not None and harness.process.returncode is not None:
            raise AssertionError(f"bot exited during restart:\n{harness.log_text()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"bot's HTTP server not up after restart:\n{harness.log_text()}")
        await asyncio.sleep(0.05)


_LOG_LINE = re.compile(r"^\S+ \S+ (WARNING|ERROR|CRITICAL)\s+(bot\.jobs\S*|bot\.publishing\S*): (.*)$")


def log_problems(harness: BotHarness, secrets: list[str]) -> list[str]:
    """Every bot process's stderr (SIGKILLed ones too): no secret, and job failures name their job."""
    problems: list[str] = []
    for path in sorted(harness.tmp_path.glob("bot-*.log")):
        text = path.read_text(errors="replace")
        problems += [f"{path.name}: a secret ({secret[:4]}...) is in the log" for secret in secrets if secret in text]
        for line in text.splitlines():
            match = _LOG_LINE.match(line)
            if match and not re.search(r"\bjob #?\d+", match.group(3), re.IGNORECASE):
                problems.append(f"{path.name}: failure without a job id: {line}")
    return problems


async def invariant_violations(harness: BotHarness) -> list[str]:
    """The credit, delivery and vendor promises, checked on the database and on the fakes."""
    database = await open_harness_database(harness)
    try:
        problems = [*await ledger_violations(database), *await delivery_violations(database),
                    *await vendor_violations(database, (harness.kie, harness.unified, harness.kling))]
        for job in await database.fetchall("SELECT id, result_message_id FROM jobs"):
            posted = result_messages(harness.discord, int(job["id"]))
            if len(posted) != 1:
                problems.append(f"job {job['id']}: {len(posted)} result messages in Discord")
            elif posted[0].id != job["result_message_id"]:
                problems.append(f"job {job['id']}: row names {job['result_message_id']}, Discord has {posted[0].id}")
        return problems
    finally:
        await database.close()
