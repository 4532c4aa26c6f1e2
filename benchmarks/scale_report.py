"""Tables of the PostgreSQL mode (benchmarks/scale.py): one per run, then the worker counts side by side."""

from __future__ import annotations

from typing import Any

from benchmarks.run import lookup as dotted

# (label, dotted key, unit)
ROWS: list[tuple[str, str, str]] = [
    ("jobs delivered / created", "delivered_of", ""),
    ("status checks / s, peak second", "status_checks.peak", "/s"),
    ("status checks / s, mean over the run", "status_checks.mean", "/s"),
    ("status checks / s, mean once every job is submitted", "status_checks.steady", "/s"),
    ("status checks / job", "checks_per_job", ""),
    ("results delivered / s, peak second", "delivered_per_second.peak", "/s"),
    ("results delivered / s, mean (first to last post)", "delivered_per_second.mean", "/s"),
    ("completion-to-notify p50", "latency.p50", "s"),
    ("completion-to-notify p95", "latency.p95", "s"),
    ("completion-to-notify p99", "latency.p99", "s"),
    ("completion-to-notify max", "latency.max", "s"),
    ("jobs due > 1 s and not yet handled, peak", "backlog.peak", ""),
    ("jobs due > 1 s and not yet handled, mean", "backlog.mean", ""),
    ("order (create_job at the gateway) p50", "create_ms_p50", "ms"),
    ("order (create_job at the gateway) p99", "create_ms_p99", "ms"),
    ("all orders made / all submitted (after the first order)", "spans", "s"),
    ("peak RSS per worker (VmHWM)", "worker_peak_mb", "MB"),
    ("PostgreSQL: processes / private memory (sum)", "pg_memory", "MB"),
    ("PostgreSQL: largest backend peak (incl. shared buffers)", "memory_mb.postgres.backend_peak_mb_max", "MB"),
    ("vendor fakes / Discord fake peak RSS", "fake_memory", "MB"),
    ("CPU s per worker", "worker_cpu", "s"),
    ("CPU s PostgreSQL (all its processes)", "cpu.seconds.postgres", "s"),
    ("CPU s vendor fakes / Discord fake / gateway side", "other_cpu", "s"),
    ("PostgreSQL's share of this run's CPU", "cpu.postgres_share_of_ours", ""),
    ("machine: cores busy, mean over the run (of 2)", "cpu.machine_cores_used", ""),
    ("busiest 10 s of this run: its cores / the machine's", "busiest_cores", ""),
    ("busiest 10 s: cores of workers / PostgreSQL / fakes and gateway side", "busiest_split", ""),
    ("wall time", "wall_seconds", "s"),
]


def lookup(result: dict[str, Any], key: str) -> Any:
    return DERIVED[key](result) if key in DERIVED else dotted(result, key)


def _per_worker(values: dict[str, Any]) -> list[Any]:
    return [v for k, v in values.items() if k.startswith("worker ")]


def _joined(values: list[Any]) -> str:
    return " / ".join(fmt(v) for v in values)


def _busiest_split(result: dict[str, Any]) -> str:
    cores = result.get("busiest_10s", {}).get("cores", {})
    if not cores:
        return "-"
    workers = sum(v for k, v in cores.items() if k.startswith("worker "))
    fakes = cores.get("vendor fakes", 0.0) + cores.get("discord fake", 0.0) + cores.get("driver", 0.0)
    return f"{workers:.2f} / {cores.get('postgres', 0.0):.2f} / {fakes:.2f}"


DERIVED: dict[str, Any] = {
    "delivered_of": lambda r: f"{r['correct']['delivered']} / {r['correct']['created']}",
    "checks_per_job": lambda r: round(r["status_checks"]["total"] / r["jobs"], 1) if r["jobs"] else None,
    "spans": lambda r: f"{fmt(r['arrival_span'])} / {fmt(r['submit_span'])}",
    "worker_peak_mb": lambda r: _joined(_per_worker(r["memory_mb"])),
    "pg_memory": lambda r: f"{r['memory_mb']['postgres']['processes']} / {fmt(r['memory_mb']['postgres']['private_mb_total'])}",
    "fake_memory": lambda r: f"{fmt(r['memory_mb']['vendor fakes'])} / {fmt(r['memory_mb']['discord fake'])}",
    "worker_cpu": lambda r: _joined(_per_worker(r["cpu"]["seconds"])),
    "other_cpu": lambda r: _joined([r["cpu"]["seconds"].get(k) for k in ("vendor fakes", "discord fake", "driver")]),
    "busiest_split": _busiest_split,
    "busiest_cores": lambda r: f"{fmt(r['busiest_10s'].get('ours'))} / {fmt(r['busiest_10s'].get('cores', {}).get('machine'))}",
}


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 10 else f"{value:.1f}" \
            if abs(value) < 100 else f"{value:.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip() if unit and unit != "/s" else text


def print_run(result: dict[str, Any]) -> None:
    correct = result["correct"]
    ok = (correct["created"] == result["jobs"] and correct["posted_once"] == correct["rows"] == result["jobs"]
          and not correct["posted_twice"] and not correct["submitted_twice"])
    mode = f", saturated for {result['saturate']:.0f} s" if result["saturate"] else ""
    print(f"\n### {result['jobs']} jobs, {result['workers']} worker(s){mode} (load before {result['load']['before']})\n")
    print("| measure | value |\n| --- | --- |")
    for label, key, unit in ROWS:
        print(f"| {label} | {fmt(lookup(result, key), unit)} |")
    if result["saturate"]:  # stopped while the jobs still ran: only "never twice" can be checked
        ok = not correct["posted_twice"] and not correct["submitted_twice"]
        verdict = "nothing posted or submitted twice (stopped before the jobs ended)" if ok else "DUPLICATES"
    else:
        verdict = "every job delivered exactly once" if ok else "NOT ALL DELIVERED ONCE"
    print(f"\ncorrectness: {correct} -> {verdict}")
    print("\nPostgreSQL's busiest statements (pg_stat_statements, execution time in the server):\n")
    print("| total s | calls | mean ms | rows | statement |\n| --- | --- | --- | --- | --- |")
    for row in result.get("statements", []):
        query = row["query"].replace("|", "\\|")
        print(f"| {row['total_s']} | {row['calls']} | {row['mean_ms']} | {row['rows']} | `{query}` |")
    print(flush=True)


COMPARE: list[tuple[str, str]] = [
    ("status checks / s, peak second", "status_checks.peak"),
    ("status checks / s, mean", "status_checks.mean"),
    ("status checks / s, once all submitted", "status_checks.steady"),
    ("results delivered / s, peak second", "delivered_per_second.peak"),
    ("completion-to-notify p50 (s)", "latency.p50"),
    ("completion-to-notify p99 (s)", "latency.p99"),
    ("backlog peak (jobs due > 1 s)", "backlog.peak"),
    ("machine cores busy, mean", "cpu.machine_cores_used"),
    ("CPU s, all workers", "workers_cpu_total"),
    ("CPU s, PostgreSQL", "cpu.seconds.postgres"),
]


def print_comparison(runs: list[dict[str, Any]]) -> None:
    if len(runs) < 2:
        return
    base = runs[0]
    print(f"\n### Scaling: {base['jobs']} jobs, ratio against {base['workers']} worker(s)\n")
    print("| measure | " + " | ".join(f"{r['workers']} worker(s)" for r in runs) + " |")
    print("| --- |" + " --- |" * len(runs))
    for label, key in COMPARE:
        cells = []
        for run in runs:
            value, first = value_of(run, key), value_of(base, key)
            ratio = f" ({value / first:.2f}x)" if run is not base and _numbers(value, first) else ""
            cells.append(fmt(value) + ratio)
        print(f"| {label} | " + " | ".join(cells) + " |")
    print(flush=True)


def value_of(run: dict[str, Any], key: str) -> Any:
    if key == "workers_cpu_total":
        return round(sum(v for k, v in run["cpu"]["seconds"].items() if k.startswith("worker ")), 1)
    return lookup(run, key)


def _numbers(value: Any, first: Any) -> bool:
    return isinstance(value, (int, float)) and isinstance(first, (int, float)) and bool(first)
