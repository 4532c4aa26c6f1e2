"""Every SQL statement on the `jobs` table.

Writes that change a job's state are conditioned on the caller's lease *and* the status the caller
saw (`WHERE id=? AND lease_owner=? AND status IN (...)`), so a process whose lease was taken over,
or a job that moved on (cancelled, reconciled by a callback), can never be overwritten by a stale
worker. Due work is found through the partial `jobs_due` index only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from bot.catalog import MODELS_BY_KEY, ProviderName
from bot.jobs.models import (
    IN_FLIGHT_STATUSES,
    JOB_COLUMNS,
    JobRecord,
    JobStatus,
    KindHistory,
)
from bot.validation import JobSpec
from storage.database import (
    JOBS_CHANNEL,
    Connection,
    Database,
    DuplicateKey,
    change_rows,
    fetch_row,
    fetch_rows,
    insert_row,
    is_duplicate_key,
    is_postgres,
    lock_in,
    notify_in,
)

# Columns a state change may set; anything else is a programming error, caught before SQL is built.
# A notice queued on the job for the outbox (migration 0014); not part of JobRecord.
NOTICE_COLUMNS = frozenset({"notice_key", "notice_text", "notice_due_at", "notice_attempts"})
_UPDATABLE = (frozenset(JOB_COLUMNS) - {"id", "guild_id", "user_id", "created_at", "request_json"}) | NOTICE_COLUMNS
# Set once, at creation (migration 0007): who asked in which language, and which click made the job.
ORIGIN_COLUMNS = frozenset({"locale", "guild_locale", "parent_job_id", "follow_up", "request_key"})


def _statuses(expected: JobStatus | Iterable[JobStatus]) -> tuple[str, ...]:
    if isinstance(expected, JobStatus):
        return (expected.value,)
    return tuple(JobStatus(s).value for s in expected)


# A poller's new next look gives way to a callback's mark (see JobRepository.update_leased_in).
_DUE_GIVES_WAY = "next_due_at = CASE WHEN woken_at IS NOT NULL AND woken_at < ? THEN woken_at ELSE ? END, woken_at = NULL"


def _set_clause(values: Mapping[str, Any], *, due_gives_way: bool = False) -> tuple[str, list[Any]]:
    unknown = set(values) - _UPDATABLE
    if unknown:
        raise ValueError(f"not updatable job columns: {sorted(unknown)}")
    parts: list[str] = []
    params: list[Any] = []
    for name in sorted(values):
        if name == "next_due_at" and due_gives_way and values[name] is not None:
            parts.append(_DUE_GIVES_WAY)
            params += [values[name], values[name]]
        else:
            parts.append(f"{name} = ?")
            params.append(values[name])
    return ", ".join(parts), params


class JobRepository:
    """SQL on `jobs`; reads use the reader connection, writes go through the caller's transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # --- creation ------------------------------------------------------------------------------
    async def insert_in(
        self,
        conn: Connection,
        *,
        guild_id: int,
        channel_id: int,
        user_id: int,
        spec: JobSpec,
        cost: int,
        now: float,
        deadline_at: float,
        thread_id: int | None = None,
        origin: Mapping[str, Any] | None = None,
    ) -> int:
        """Insert a queued job, due now, inside the caller's transaction; returns its id.

        `origin`: the requester's locale and, for a button's job, its parent and click (ORIGIN_COLUMNS);
        a repeated `request_key` raises DuplicateKey (one job per click)."""
        attachment_ids = [i.attachment_id for i in spec.images if i.attachment_id is not None]
        await notify_in(conn, JOBS_CHANNEL)  # pollers in other processes look at once (at commit)
        extra = {k: v for k, v in (origin or {}).items() if v is not None}
        if set(extra) - ORIGIN_COLUMNS:
            raise ValueError(f"not origin columns: {sorted(set(extra) - ORIGIN_COLUMNS)}")
        names = sorted(extra)
        columns = "".join(", " + name for name in names)
        try:
            return await insert_row(
                conn,
                "INSERT INTO jobs (guild_id, channel_id, thread_id, user_id, family, model_key, provider, mode, prompt,"
                f" request_json, attachment_ids, cost, status, created_at, deadline_at, next_due_at{columns})"
                f" VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?{', ?' * len(names)})",
                (
                    guild_id, channel_id, thread_id, user_id, spec.family.value, spec.model_key, spec.provider.value,
                    spec.mode.value, spec.prompt, spec.model_dump_json(), json.dumps(attachment_ids), cost,
                    now, deadline_at, now, *(extra[name] for name in names),
                ),
            )
        except Exception as exc:
            if is_duplicate_key(exc):
                raise DuplicateKey(str(exc)) from exc
            raise

    # --- reads ---------------------------------------------------------------------------------
    async def get(self, job_id: int) -> JobRecord | None:
        row = await self.db.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return JobRecord.from_row(row) if row else None

    async def get_in(self, conn: Connection, job_id: int) -> JobRecord | None:
        """Read a job inside a write transaction (sees the transaction's own changes)."""
        row = await fetch_row(conn, "SELECT * FROM jobs WHERE id = ?", (job_id,))
        return JobRecord.from_row(row) if row else None

    async def get_for_guild(self, guild_id: int, job_id: int) -> JobRecord | None:
        row = await self.db.fetchone("SELECT * FROM jobs WHERE id = ? AND guild_id = ?", (job_id, guild_id))
        return JobRecord.from_row(row) if row else None

    async def list_for_member(self, guild_id: int, user_id: int, limit: int) -> list[JobRecord]:
        rows = await self.db.fetchall(
            "SELECT * FROM jobs WHERE guild_id = ? AND user_id = ? ORDER BY id DESC LIMIT ?",
            (guild_id, user_id, limit),
        )
        return [JobRecord.from_row(r) for r in rows]

    async def queue_position(self, job: JobRecord) -> int:
        """1-based place among queued jobs of the same provider (jobs_queue index)."""
        ahead = await self.db.fetchval(
            "SELECT COUNT(*) FROM jobs WHERE provider = ? AND status = 'queued' AND id < ?",
            (job.provider.value, job.id),
        )
        return int(ahead or 0) + 1

    async def queue_depths(self) -> dict[str, int]:
        rows = await self.db.fetchall(
            "SELECT provider, COUNT(*) AS n FROM jobs WHERE status = 'queued' GROUP BY provider"
        )
        return {row["provider"]: int(row["n"]) for row in rows}

    async def count_in_flight_in(self, conn: Connection, provider: ProviderName) -> int:
        """Jobs holding a vendor slot, read inside the writer's transaction so two processes agree.

        Takes the vendor's lock first (PostgreSQL: an advisory lock held to commit; SQLite's single
        writer needs none), so the count, the rate window and the move to `submitting` are one
        decision however many processes submit.
        """
        await lock_in(conn, "vendor", provider.value)
        marks = ",".join("?" for _ in IN_FLIGHT_STATUSES)
        row = await fetch_row(conn, f"SELECT COUNT(*) FROM jobs WHERE provider = ? AND status IN ({marks})",
                              (provider.value, *sorted(s.value for s in IN_FLIGHT_STATUSES)))
        return int(row[0]) if row else 0

    async def recent_submits_in(
        self, conn: Connection, provider: ProviderName, since: float
    ) -> tuple[int, float | None]:
        """Submits to `provider` after `since` and the oldest of them, read inside the writer's
        transaction so every process shares one rate window (the vendor counts per account).
        Under the vendor's lock, like `count_in_flight_in`."""
        await lock_in(conn, "vendor", provider.value)
        row = await fetch_row(conn, "SELECT COUNT(*), MIN(submitted_at) FROM jobs WHERE provider = ? AND submitted_at > ?",
                              (provider.value, since))
        if not row:
            return 0, None
        return int(row[0]), (float(row[1]) if row[1] is not None else None)

    async def earliest_due(self) -> float | None:
        value = await self.db.fetchval("SELECT MIN(next_due_at) FROM jobs WHERE next_due_at IS NOT NULL")
        return float(value) if value is not None else None

    async def planning_history(self, also: tuple[str, str], *, mix_rows: int, history_rows: int,
                               vendor_rows: int) -> list[KindHistory]:
        """What the poll schedule plans from: every kind among the latest `mix_rows` submitted jobs (and
        `also`, the kind it was asked about), each with its latest `history_rows` successes and what
        they cost, and its vendor's failures among the vendor's latest `vendor_rows` finished jobs."""
        mix = await self.recent_mix(mix_rows)
        mix.setdefault(also, 1)
        by_vendor: dict[ProviderName, tuple[list[float], int]] = {}
        kinds = []
        for (model_key, mode), jobs in sorted(mix.items()):
            model = MODELS_BY_KEY.get(model_key)
            if model is None:  # a model since removed from the catalog
                continue
            if model.provider not in by_vendor:
                by_vendor[model.provider] = await self.recent_vendor_failures(model.provider, vendor_rows)
            failures, finished = by_vendor[model.provider]
            durations = await self.recent_durations(model_key, mode, history_rows)
            costed, mean_requests, progress_share = await self.recent_kind_costs(model_key, mode, history_rows)
            kinds.append(KindHistory(model_key, mode, jobs, durations, failures, finished, costed, mean_requests,
                                     progress_share))
        return kinds

    async def recent_durations(self, model_key: str, mode: str, limit: int) -> list[float]:
        """Submit-to-done seconds of the latest successful jobs of one kind (jobs_history index)."""
        rows = await self.db.fetchall(
            "SELECT vendor_done_at - submitted_at AS took FROM jobs"
            " WHERE status = 'succeeded' AND model_key = ? AND mode = ?"
            " AND submitted_at IS NOT NULL AND vendor_done_at IS NOT NULL"
            " ORDER BY finished_at DESC LIMIT ?",
            (model_key, mode, limit),
        )
        return [float(r["took"]) for r in rows if r["took"] is not None and r["took"] >= 0]

    async def recent_kind_costs(self, model_key: str, mode: str, limit: int) -> tuple[int, float, float]:
        """(jobs, mean status requests, share that reported progress) over the kind's latest `limit`
        successes: what its jobs really cost when something other than the plan paced them."""
        row = await self.db.fetchone(
            "SELECT COUNT(*) AS jobs, AVG(poll_count) AS requests,"
            " AVG(CASE WHEN progress IS NOT NULL THEN 1.0 ELSE 0.0 END) AS progress FROM ("
            " SELECT poll_count, progress FROM jobs WHERE status = 'succeeded' AND model_key = ? AND mode = ?"
            " AND submitted_at IS NOT NULL AND vendor_done_at IS NOT NULL ORDER BY finished_at DESC LIMIT ?) AS latest",
            (model_key, mode, limit),
        )
        if row is None or not row["jobs"]:
            return 0, 0.0, 0.0
        return int(row["jobs"]), float(row["requests"]), float(row["progress"])

    async def recent_mix(self, limit: int) -> dict[tuple[str, str], int]:
        """How many of the latest `limit` submitted jobs were of each (model_key, mode): the mix the
        request budget is shared over (newest ids first, through the primary key)."""
        rows = await self.db.fetchall(
            "SELECT model_key, mode, COUNT(*) AS jobs FROM ("
            " SELECT model_key, mode FROM jobs WHERE submitted_at IS NOT NULL ORDER BY id DESC LIMIT ?) AS latest"
            " GROUP BY model_key, mode",
            (limit,),
        )
        return {(str(r["model_key"]), str(r["mode"])): int(r["jobs"]) for r in rows}

    async def recent_vendor_failures(self, provider: ProviderName, limit: int) -> tuple[list[float], int]:
        """(submit-to-done seconds of the failures, number of jobs) among the vendor's latest `limit`
        finished jobs.

        Only jobs whose end the vendor itself reported (vendor_done_at): timeouts, lost submits and
        cancellations say nothing about when the vendor fails a job (jobs_vendor_outcomes index).
        """
        aggregate = "json_agg" if is_postgres(self.db) else "json_group_array"
        row = await self.db.fetchone(
            f"SELECT COUNT(*) AS finished, {aggregate}(vendor_done_at - submitted_at)"
            " FILTER (WHERE status = 'failed') AS failures FROM ("
            "  SELECT status, vendor_done_at, submitted_at FROM jobs"
            "  WHERE provider = ? AND vendor_done_at IS NOT NULL"
            "  AND status IN ('succeeded', 'failed') AND submitted_at IS NOT NULL"
            "  ORDER BY finished_at DESC LIMIT ?) AS latest",
            (provider.value, limit),
        )
        if row is None:
            return [], 0
        failures = [float(t) for t in json.loads(row["failures"] or "[]") if t is not None and t >= 0]
        return failures, int(row["finished"])

    # --- leases ----------------------------------------------------------------------------------
    async def claim_due(self, owner: str, now: float, lease_seconds: float, limit: int,
                        stale_before: float | None = None) -> list[JobRecord]:
        """Lease up to `limit` due jobs in one statement; the only way work is picked up.

        A job is free when its lease ran out, or (with `stale_before`) when the process holding it
        has not beaten its heartbeat since then: a dead process's jobs are taken over at once.
        """
        # PostgreSQL: rows another process is claiming right now are skipped, not waited for.
        skip_locked = " FOR UPDATE SKIP LOCKED" if is_postgres(self.db) else ""
        dead_owner = (" OR lease_owner IN (SELECT owner FROM heartbeats WHERE beat_at < :stale)"
                      if stale_before is not None else "")
        async with self.db.transaction() as conn:
            rows = await fetch_rows(
                conn,
                "UPDATE jobs SET lease_owner = :owner, lease_until = :until, woken_at = NULL WHERE id IN ("
                " SELECT id FROM jobs WHERE next_due_at <= :now AND (lease_until IS NULL OR lease_until < :now"
                f"{dead_owner}) ORDER BY next_due_at LIMIT :limit{skip_locked}) RETURNING *",
                {"owner": owner, "until": now + lease_seconds, "now": now, "limit": limit,
                 "stale": stale_before if stale_before is not None else 0.0},
            )
        jobs = [JobRecord.from_row(r) for r in rows]
        jobs.sort(key=lambda j: (j.next_due_at or 0.0, j.id))
        return jobs

    async def update_leased_in(
        self,
        conn: Connection,
        job_id: int,
        owner: str,
        expected: JobStatus | Iterable[JobStatus],
        values: Mapping[str, Any],
    ) -> bool:
        """Change a job we hold the lease on, if it is still in a status we expect.

        A new `next_due_at` gives way to a callback that came while we held the job (`woken_at`, set by
        `make_due_now`): the job stays due at once, since our poll may have been answered before the
        vendor finished."""
        clause, params = _set_clause(values, due_gives_way=True)
        statuses = _statuses(expected)
        marks = ",".join("?" for _ in statuses)
        changed = await change_rows(
            conn, f"UPDATE jobs SET {clause} WHERE id = ? AND lease_owner = ? AND status IN ({marks})",
            (*params, job_id, owner, *statuses),
        )
        return changed == 1

    async def update_leased(
        self, job_id: int, owner: str, expected: JobStatus | Iterable[JobStatus], values: Mapping[str, Any]
    ) -> bool:
        async with self.db.transaction() as conn:
            return await self.update_leased_in(conn, job_id, owner, expected, values)

    async def update_unleased_in(
        self,
        conn: Connection,
        job_id: int,
        expected: JobStatus | Iterable[JobStatus],
        values: Mapping[str, Any],
    ) -> bool:
        """Change a job whatever its lease, conditioned on status only.

        For facts that are true no matter who holds the job: a vendor task id learned from a late
        submit response or a callback, a moderator's cancel. The status condition keeps it safe.
        """
        clause, params = _set_clause(values)
        statuses = _statuses(expected)
        marks = ",".join("?" for _ in statuses)
        changed = await change_rows(
            conn, f"UPDATE jobs SET {clause} WHERE id = ? AND status IN ({marks})", (*params, job_id, *statuses),
        )
        if changed:
            await notify_in(conn, JOBS_CHANNEL)
        return changed == 1

    # --- notices: a word to the member about a job in progress, kept on the row until Discord has it ---
    async def due_notices(self, now: float, limit: int) -> list[tuple[JobRecord, str, str | None, int]]:
        """Jobs with a notice due: (job, key, its text as stored, attempts so far), oldest first."""
        rows = await self.db.fetchall(
            "SELECT * FROM jobs WHERE notice_due_at IS NOT NULL AND notice_due_at <= ? ORDER BY notice_due_at, id "
            "LIMIT ?", (now, limit))
        return [(JobRecord.from_row(r), r["notice_key"], r["notice_text"], int(r["notice_attempts"])) for r in rows]

    async def notice_done(self, job_id: int, key: str) -> bool:
        """Posted (or given up): clear it, unless a newer notice took its place meanwhile."""
        changed = await self.db.execute(
            "UPDATE jobs SET notice_key = NULL, notice_text = NULL, notice_due_at = NULL, notice_attempts = 0 "
            "WHERE id = ? AND notice_key = ?", (job_id, key))
        return changed > 0

    async def notice_failed(self, job_id: int, key: str, retry_at: float) -> None:
        await self.db.execute(
            "UPDATE jobs SET notice_attempts = notice_attempts + 1, notice_due_at = ? WHERE id = ? AND notice_key = ?",
            (retry_at, job_id, key))

    async def release_lease(self, job_id: int, owner: str) -> None:
        """Give a job back without changing it (e.g. after an unexpected error)."""
        await self.db.execute(
            "UPDATE jobs SET lease_owner = NULL, lease_until = NULL WHERE id = ? AND lease_owner = ?",
            (job_id, owner),
        )

    async def make_running_due_now(self, provider: ProviderName, now: float) -> int:
        """Look at every running job of a vendor now (its callbacks may have been lost while we were down)."""
        async with self.db.transaction() as conn:
            changed = await change_rows(
                conn, "UPDATE jobs SET next_due_at = ? WHERE provider = ? AND status = 'running'"
                " AND (next_due_at IS NULL OR next_due_at > ?)", (now, provider.value, now))
            if changed:
                await notify_in(conn, JOBS_CHANNEL)
        return changed

    async def make_due_now(self, job_id: int, now: float, statuses: Iterable[JobStatus]) -> bool:
        """Bring a job's next look forward (a callback said something happened). If a poll of it is in
        flight, `woken_at` keeps it due once that poll is done (`update_leased_in`)."""
        marks_statuses = _statuses(statuses)
        marks = ",".join("?" for _ in marks_statuses)
        async with self.db.transaction() as conn:
            changed = await change_rows(
                conn, "UPDATE jobs SET woken_at = ?, next_due_at = CASE WHEN next_due_at IS NULL OR next_due_at > ?"
                f" THEN ? ELSE next_due_at END WHERE id = ? AND status IN ({marks})",
                (now, now, now, job_id, *marks_statuses))
            if changed:
                await notify_in(conn, JOBS_CHANNEL)
        return changed == 1

    # --- destination and gauges ------------------------------------------------------------------
    async def attach_destination(self, job_id: int, *, channel_id: int, thread_id: int | None,
                                 summary_message_id: int | None) -> None:
        """Where the result goes (the job's thread); written whatever the job's state or lease."""
        await self.db.execute(
            "UPDATE jobs SET channel_id = ?, thread_id = ?, summary_message_id = ? WHERE id = ?",
            (channel_id, thread_id, summary_message_id, job_id),
        )

    async def count_by_state(self) -> list[tuple[str, str, int]]:
        """(status, family, jobs) over the whole table, for the JOBS_BY_STATE gauge.

        A whole-table aggregate, but over a narrow row scan on the reader connection (never blocks
        the writer); the caller asks at most every few seconds.
        """
        rows = await self.db.fetchall("SELECT status, family, COUNT(*) AS n FROM jobs GROUP BY status, family")
        return [(str(r["status"]), str(r["family"]), int(r["n"])) for r in rows]

    # --- heartbeats ------------------------------------------------------------------------------
    async def beat(self, owner: str, *, pid: int, host: str, started_at: float, now: float,
                   forget_before: float) -> None:
        """Record that `owner` is alive now (and forget processes silent since `forget_before`: their
        leases ran out long ago)."""
        async with self.db.transaction() as conn:
            await change_rows(
                conn,
                "INSERT INTO heartbeats (owner, pid, host, started_at, beat_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (owner) DO UPDATE SET beat_at = excluded.beat_at",
                (owner, pid, host, started_at, now),
            )
            await change_rows(conn, "DELETE FROM heartbeats WHERE beat_at < ? AND owner != ?", (forget_before, owner))

    async def retire(self, owner: str, stale_at: float) -> None:
        """`owner` stopped: its last beat is dated `stale_at` (already stale), so whatever it still holds
        may be taken over at once."""
        await self.db.execute("UPDATE heartbeats SET beat_at = ? WHERE owner = ?", (stale_at, owner))

    async def heartbeats(self) -> dict[str, float]:
        """Every known process and when it last beat."""
        rows = await self.db.fetchall("SELECT owner, beat_at FROM heartbeats")
        return {str(r["owner"]): float(r["beat_at"]) for r in rows}
