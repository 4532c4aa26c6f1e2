"""The three vendor fakes in their own process, on the benchmark's simulated clock.

Keeping the vendors out of the bot's process means the bot's event loop, CPU seconds and peak RSS
are the bot's own. The simulated clock is one float in shared memory written by the bot process
(`SharedClock`) and read here (`SharedNow`); the bot only advances it while no vendor request is in
flight, so a request sees a fixed time.

A small control server (loopback HTTP) lets the bot side fire kie.ai callbacks that are due, read
every task at the end, and read this process's CPU time. Started by benchmarks/scenario.py:

    python benchmarks/vendor_process.py --shm NAME --seed N --api-key K --hmac-key H
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import resource
import struct
import sys
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import random  # noqa: E402

import httpx  # noqa: E402
from aiohttp import web  # noqa: E402

from benchmarks.workload import FAILURE_MIXES, make_plan  # noqa: E402
from bot.clock import FakeClock  # noqa: E402
from fakes.vendors import FakeKieVendor, FakeKlingVendor, FakeUnifiedVendor, FakeVendor  # noqa: E402

CALLBACK_CONCURRENCY = 64


class SharedClock(FakeClock):
    """The bot side's FakeClock, mirrored into shared memory on every advance."""

    def __init__(self, start: float) -> None:
        super().__init__(start)
        self.memory = shared_memory.SharedMemory(create=True, size=8)
        struct.pack_into("d", self.memory.buf, 0, start)

    def advance(self, seconds: float) -> None:
        super().advance(seconds)
        struct.pack_into("d", self.memory.buf, 0, self.now())

    def close(self) -> None:
        self.memory.close()
        self.memory.unlink()


class SharedNow:
    """The vendor side's view of the simulated clock (read-only)."""

    def __init__(self, name: str) -> None:
        self.memory = shared_memory.SharedMemory(name=name)
        # Only the creator unlinks it; without this the child's resource tracker would too.
        resource_tracker.unregister(self.memory._name, "shared_memory")  # type: ignore[attr-defined]

    def now(self) -> float:
        return struct.unpack_from("d", self.memory.buf, 0)[0]


class Vendors:
    def __init__(self, clock: SharedNow, seed: int, api_key: str, hmac_key: str, sigma: float,
                 failures: str = "realistic") -> None:
        plan = make_plan(random.Random(seed + 1), sigma, failures)
        self.clock = clock
        self.kie = FakeKieVendor(api_key=api_key, clock=clock, plan=plan, callback_key=hmac_key,
                                 auto_callbacks=False)
        self.all: dict[str, FakeVendor] = {
            "kie": self.kie,
            "kkiai": FakeUnifiedVendor(api_key=api_key, clock=clock, plan=plan),
            "kling": FakeKlingVendor(api_key=api_key, clock=clock, plan=plan),
        }
        self._due: list[tuple[float, str]] = []
        self._seen = 0

    async def fire(self, request: web.Request) -> web.Response:
        """Send every kie callback due by now (concurrently); answer with the next due time."""
        tasks = self.kie.tasks
        for task in list(tasks.values())[self._seen:]:
            if task.callback_url:
                heapq.heappush(self._due, (task.finishes_at, task.id))
        self._seen = len(tasks)
        now = self.clock.now()
        due = []
        while self._due and self._due[0][0] <= now:
            task = tasks[heapq.heappop(self._due)[1]]
            if not task.callback_sent:
                task.callback_sent = True
                due.append(task)
        gate = asyncio.Semaphore(CALLBACK_CONCURRENCY)

        async def send(task: Any) -> None:
            async with gate:
                await self.kie._send_callback(task)  # the fake's own signed POST

        await asyncio.gather(*(send(task) for task in due))
        return web.json_response({"fired": len(due), "next_due": self._due[0][0] if self._due else None})

    async def tasks(self, request: web.Request) -> web.Response:
        rows = [[name, task.id, task.finishes_at, task.status_calls, task.hd_calls, str(task.body.get("model", ""))]
                for name, vendor in self.all.items() for task in vendor.tasks.values()]
        return web.json_response(rows)

    async def set_latency(self, request: web.Request) -> web.Response:
        """Every vendor answers after this many seconds (real time, +-30%) until told otherwise."""
        seconds = float((await request.json())["seconds"])
        for vendor in self.all.values():
            vendor.latency = seconds
        return web.json_response({"latency": seconds})

    async def usage(self, request: web.Request) -> web.Response:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return web.json_response({"cpu_seconds": usage.ru_utime + usage.ru_stime,
                                  "peak_rss_mb": usage.ru_maxrss / 1024.0})


async def serve(args: argparse.Namespace) -> None:
    vendors = Vendors(SharedNow(args.shm), args.seed, args.api_key, args.hmac_key, args.sigma, args.failures)
    urls = {name: await vendor.start() for name, vendor in vendors.all.items()}
    vendors.kie._callback_http = httpx.AsyncClient(timeout=30.0, limits=httpx.Limits(max_connections=CALLBACK_CONCURRENCY))
    stop = asyncio.Event()
    app = web.Application()
    app.router.add_post("/fire", vendors.fire)
    app.router.add_get("/tasks", vendors.tasks)
    app.router.add_get("/usage", vendors.usage)
    app.router.add_post("/latency", vendors.set_latency)

    async def on_stop(request: web.Request) -> web.Response:
        stop.set()
        return web.json_response({"ok": True})

    app.router.add_post("/stop", on_stop)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(json.dumps({"vendors": urls, "control": f"http://127.0.0.1:{port}"}), flush=True)
    await stop.wait()
    await vendors.kie._callback_http.aclose()
    for vendor in vendors.all.values():
        await vendor.stop()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shm", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--hmac-key", required=True)
    parser.add_argument("--sigma", type=float, required=True)
    parser.add_argument("--failures", choices=sorted(FAILURE_MIXES), default="realistic")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
