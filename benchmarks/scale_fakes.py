"""The loopback fakes of the benchmark's PostgreSQL mode (benchmarks/scale.py), each in a process of its own.

    python benchmarks/scale_fakes.py vendors --seed N --api-key K [--latency 0.25] [--duration-scale 1]
    python benchmarks/scale_fakes.py discord --channels 500

Their own processes, so that their CPU is not counted as the workers' (and is counted on its own),
and on the wall clock, since the workers are real processes on real time. Each prints one JSON line
(its URLs and its control server's), then serves until POST /stop on the control server.

- vendors: kie.ai, the unified API and Kling, with the workload's durations and outcomes
  (benchmarks/workload.py), each answering after `--latency` seconds (+-30%), as across the internet.
  Every request is counted per endpoint and per wall-clock second: status checks per second.
- discord: the REST API the workers deliver through, with `--channels` text channels in the guild
  (results go to many channels, as on real servers: discord.py queues requests per channel). The
  arrival instant of every result post (nonce `fc-job-<id>`) is kept: completion-to-notify.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import resource
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiohttp import web  # noqa: E402

from benchmarks.workload import FAILURE_MIXES, SIGMA, make_plan  # noqa: E402
from fakes.discord_api import FakeDiscord  # noqa: E402
from fakes.loopback import serve  # noqa: E402
from fakes.vendors import FakeKieVendor, FakeKlingVendor, FakeUnifiedVendor, FakeVendor, Outcome  # noqa: E402

FIRST_CHANNEL = FakeDiscord.CHANNEL_ID + 1000


def usage() -> dict[str, float]:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_seconds": own.ru_utime + own.ru_stime, "peak_rss_mb": own.ru_maxrss / 1024.0}


class Vendors:
    """The three vendor fakes on the wall clock, with a per-second request count."""

    def __init__(self, seed: int, api_key: str, sigma: float, failures: str, latency: float,
                 duration_scale: float = 1.0) -> None:
        workload = make_plan(random.Random(seed + 1), sigma, failures)

        def plan(body: dict[str, Any]) -> tuple[float, Outcome]:
            took, outcome = workload(body)
            return took * duration_scale, outcome

        # No callbacks: the workers run without PUBLIC_BASE_URL (several processes, no load balancer).
        self.all: dict[str, FakeVendor] = {
            "kie": FakeKieVendor(api_key=api_key, plan=plan, auto_callbacks=False),
            "kkiai": FakeUnifiedVendor(api_key=api_key, plan=plan),
            "kling": FakeKlingVendor(api_key=api_key, plan=plan),
        }
        for vendor in self.all.values():
            vendor.latency = latency
        self.series: list[tuple[float, dict[str, int]]] = []  # (second's end, requests per endpoint in it)

    def totals(self) -> Counter[str]:
        counts: Counter[str] = Counter()
        for vendor in self.all.values():
            counts.update(vendor.requests)
        return counts

    async def count_per_second(self) -> None:
        """Requests per endpoint in each wall-clock second (all vendors together)."""
        last = self.totals()
        while True:
            await asyncio.sleep(1.0 - time.time() % 1.0)
            now = self.totals()
            delta = {name: now[name] - last[name] for name in now if now[name] != last[name]}
            self.series.append((round(time.time(), 3), delta))
            last = now

    async def tasks(self, request: web.Request) -> web.Response:
        rows = [[name, task.id, task.created_at, task.finishes_at, task.status_calls, task.hd_calls,
                 str(task.body.get("model", "")), task.outcome.success, str(task.body.get("prompt", ""))]
                for name, vendor in self.all.items() for task in vendor.tasks.values()]
        return web.json_response(rows)

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"series": self.series, "totals": dict(self.totals()), **usage()})


class BenchDiscord(FakeDiscord):
    """FakeDiscord with many text channels, keeping when each result post arrived."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        for n in range(channels):
            channel_id = FIRST_CHANNEL + n
            self.channels[channel_id] = self._text_channel(channel_id, f"bench-{n}", 10 + n)
        self.posts: list[tuple[float, str, int]] = []  # (arrival, nonce, channel)

    async def post_message(self, request: web.Request, body: Any, files: list[dict[str, Any]],
                           channel_id: str) -> web.Response:
        arrived = time.time()
        response = await super().post_message(request, body, files, channel_id)
        nonce = str((body or {}).get("nonce") or "")
        if response.status == 200 and nonce.startswith("fc-job-"):
            self.posts.append((arrived, nonce, int(channel_id)))
        return response

    async def posts_handler(self, request: web.Request) -> web.Response:
        return web.json_response({"posts": self.posts, **usage()})


async def control_server(routes: list[tuple[str, str, Any]], stop: asyncio.Event) -> int:
    async def on_stop(request: web.Request) -> web.Response:
        stop.set()
        return web.json_response({"ok": True})

    app = web.Application()
    for method, path, handler in [*routes, ("POST", "/stop", on_stop)]:
        app.router.add_route(method, path, handler)
    return await serve(web.AppRunner(app, access_log=None))


async def run_vendors(args: argparse.Namespace) -> None:
    vendors = Vendors(args.seed, args.api_key, args.sigma, args.failures, args.latency, args.duration_scale)
    urls = {name: await vendor.start() for name, vendor in vendors.all.items()}
    counter = asyncio.create_task(vendors.count_per_second())
    stop = asyncio.Event()
    port = await control_server([("GET", "/tasks", vendors.tasks), ("GET", "/stats", vendors.stats)], stop)
    print(json.dumps({"vendors": urls, "control": f"http://127.0.0.1:{port}"}), flush=True)
    await stop.wait()
    counter.cancel()
    for vendor in vendors.all.values():
        await vendor.stop()


async def run_discord(args: argparse.Namespace) -> None:
    discord = BenchDiscord(args.channels)
    await discord.start()
    stop = asyncio.Event()
    port = await control_server([("GET", "/posts", discord.posts_handler)], stop)
    print(json.dumps({"api_base": discord.api_base, "token": discord.token, "guild_id": discord.GUILD_ID,
                      "first_channel": FIRST_CHANNEL, "control": f"http://127.0.0.1:{port}"}), flush=True)
    await stop.wait()
    await discord.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    roles = parser.add_subparsers(dest="role", required=True)
    vendors = roles.add_parser("vendors")
    vendors.add_argument("--seed", type=int, required=True)
    vendors.add_argument("--api-key", required=True)
    vendors.add_argument("--sigma", type=float, default=SIGMA)
    vendors.add_argument("--failures", choices=sorted(FAILURE_MIXES), default="realistic")
    vendors.add_argument("--latency", type=float, default=0.25)
    vendors.add_argument("--duration-scale", type=float, default=1.0, help="quick runs: every task this much shorter")
    discord = roles.add_parser("discord")
    discord.add_argument("--channels", type=int, default=500)
    args = parser.parse_args()
    asyncio.run(run_vendors(args) if args.role == "vendors" else run_discord(args))


if __name__ == "__main__":
    main()
