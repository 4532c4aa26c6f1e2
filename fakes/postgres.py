"""A throwaway PostgreSQL server from the system's binaries, for the test session and the benchmark.

`initdb` in a temp directory, `pg_ctl start` on a free loopback port, each test database copied
from a migrated template (`CREATE DATABASE ... TEMPLATE`, tens of milliseconds), all torn down
at the end. As root (a CI container) the server runs as the `postgres` user, as initdb demands.
Under CI=true a machine where no server can start fails the session loudly instead of skipping.
The tests run it without fsync (nothing in it outlives the session); the benchmark asks for a
`durable` one, as an operator runs it, so that commits cost what they cost in production.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import asyncpg

ADMIN_USER = "postgres"


def postgres_bindir() -> Path | None:
    """Where initdb and pg_ctl live: `pg_config --bindir`, Debian's versioned folder, or the PATH."""
    candidates: list[Path] = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)
    for folder in candidates:
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One server process; `url(db)` names a database on it."""

    def __init__(self, *, durable: bool = False, max_connections: int = 400, shared_buffers: str = "32MB",
                 preload: tuple[str, ...] = ()) -> None:
        bindir = postgres_bindir()
        if bindir is None:
            raise RuntimeError("no PostgreSQL binaries (initdb, pg_ctl) found; install postgresql")
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="framecast-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.durable = durable
        self.max_connections = max_connections
        self.shared_buffers = shared_buffers
        self.preload = preload  # shared_preload_libraries, e.g. pg_stat_statements for the benchmark
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses to run as root
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as, *args], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {done.stdout}\n{done.stderr}")

    def start(self) -> None:
        self._run(str(self.bindir / "initdb"), "-D", str(self.data), "-U", ADMIN_USER, "-A", "trust",
                  "-E", "UTF8", "--no-sync", "--locale=C")
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root}"
                   f" -c max_connections={self.max_connections} -c shared_buffers={self.shared_buffers}")
        if self.preload:
            options += f" -c shared_preload_libraries={','.join(self.preload)}"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options,
                  "-l", str(self.root / "server.log"), "-w", "-t", "60", "start")

    @property
    def pid(self) -> int | None:
        """The postmaster's process id (its first line of postmaster.pid), None when not running."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        try:
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{ADMIN_USER}@127.0.0.1:{self.port}/{database}"

    async def admin(self, statement: str) -> None:
        conn = await asyncpg.connect(self.url())
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    async def create_database(self, template: str | None = None) -> str:
        """A new, empty (or template-copied) database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        copy = f" TEMPLATE {template}" if template else ""
        await self.admin(f"CREATE DATABASE {name}{copy}")
        return name

    async def drop_database(self, name: str) -> None:
        await self.admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
