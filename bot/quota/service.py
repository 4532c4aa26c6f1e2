"""Credits: what a video costs, what a member may spend per rolling day, and the one decision.

The decision (`reserve_in`) runs inside the caller's `BEGIN IMMEDIATE` transaction, the same one
that writes the job row, and re-reads everything through that connection: two commands racing for
the last credits are serialised by SQLite, so the second one sees the first one's hold.

Budget precedence: a member override beats roles; among the member's roles with a budget the
highest wins and "unlimited" (NULL) beats any number; a member with no budgeted role gets the
server's default, else the bot's (Settings.quota_daily_credits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot import audit
from bot.catalog import COST_KEYS, default_cost
from bot.clock import Clock
from bot.errors import Refusal
from bot.i18n import Text, _, _n
from storage import ledger
from storage.ledger import WINDOW_SECONDS, LedgerEntry, WindowRow
from bot.settings import Settings
from bot.validation import JobSpec
from storage.database import Connection, Database
from storage.guild_settings import GuildSettingsStore
from storage.snapshot import MemberSnapshot, read_snapshot

Source = Database | Connection


@dataclass(frozen=True)
class Balance:
    """A member's credits right now. `budget`/`remaining` None = unlimited."""

    budget: int | None
    used: int  # charges - refunds - grants in the rolling day, plus active holds
    held: int  # the part of `used` reserved by videos still in progress
    remaining: int | None
    refill_at: float | None  # when the oldest charge in the window stops counting
    active_jobs: int
    max_concurrent: int

    @property
    def unlimited(self) -> bool:
        return self.budget is None


def _t(when: float) -> str:
    """Discord's relative timestamp markup (each reader sees it in their own time zone)."""
    return f"<t:{int(when)}:R>"


def credits_text(amount: int | None) -> Text:
    """"1 credit", "5 credits", or "unlimited" for a budget without a limit (None), in the reader's language."""
    if amount is None:
        return _("unlimited")
    return _n("{n} credit", "{n} credits", n=amount)


def comeback(rows: Sequence[WindowRow], remaining: int, cost: int) -> tuple[float, int] | None:
    """When the member next has `cost` credits if nothing else happens, and how many came back by then.

    Rows leave the window oldest first: a charge leaving gives its credits back, a grant or refund
    leaving takes its credits away again. None if the window alone never gets them there.
    """
    returned = 0
    for row in rows:
        returned += row.signed
        if remaining + returned >= cost:
            return row.created_at + WINDOW_SECONDS, returned
    return None


class QuotaService:
    """Costs, budgets, balances and the ledger writes; knows nothing of Discord."""

    def __init__(self, db: Database, settings: Settings, clock: Clock, store: GuildSettingsStore | None = None) -> None:
        self.db = db
        self.clock = clock
        self.store = store or GuildSettingsStore(db)
        self.audit = audit.AuditService(db, clock)
        self.default_daily_credits = settings.quota_daily_credits
        self.default_max_concurrent = settings.quota_max_concurrent_jobs

    # --- costs ------------------------------------------------------------------------------

    async def cost_table(self, guild_id: int) -> dict[str, int]:
        """Every cost key (model keys, the 1080p surcharge, the follow-ups) with this server's price."""
        overrides = await self.store.costs(guild_id)
        return {key: overrides.get(key, default_cost(key)) for key in COST_KEYS}

    async def cost_of(self, guild_id: int, spec: JobSpec, *, snapshot: MemberSnapshot | None = None) -> int:
        """The sum of the job's cost keys: the model's price plus the 1080p surcharge (veo upsample,
        sora size "large"), or a follow-up's own price (extend, 1080p, 4K).

        `snapshot`: this server's prices already read for the command (no extra database hop)."""
        overrides = snapshot.costs if snapshot is not None else await self.store.costs(guild_id)
        return sum(overrides.get(key, default_cost(key)) for key in spec.cost_keys)

    async def price(self, guild_id: int, keys: Sequence[str]) -> int:
        """These cost keys at this server's prices (what a video delivered with less than ordered earns)."""
        overrides = await self.store.costs(guild_id)
        return sum(overrides.get(key, default_cost(key)) for key in keys)

    # --- budgets and balances ---------------------------------------------------------------

    def _budget(self, snapshot: MemberSnapshot) -> tuple[int | None, int]:
        """(daily budget or None for unlimited, max concurrent jobs) from the member's snapshot."""
        guild = snapshot.settings
        max_concurrent = guild.max_concurrent if guild.max_concurrent is not None else self.default_max_concurrent
        override = snapshot.member_override
        if override is not None:
            return override.credits, max_concurrent
        role_limits = snapshot.role_limits
        if role_limits:
            if any(limit.credits is None for limit in role_limits):
                return None, max_concurrent
            return max(int(limit.credits or 0) for limit in role_limits), max_concurrent
        if guild.daily_credits is not None:
            return guild.daily_credits, max_concurrent
        return self.default_daily_credits, max_concurrent

    async def _balance(
        self, source: Source, guild_id: int, user_id: int, role_ids: Sequence[int], now: float,
        exclude_job_id: int | None, snapshot: MemberSnapshot | None = None,
    ) -> Balance:
        """Two statements: the member's settings (unless given) and their usage with active jobs."""
        if snapshot is None:
            snapshot = await read_snapshot(source, guild_id, user_id, role_ids)
        budget, max_concurrent = self._budget(snapshot)
        totals, active = await ledger.usage_and_active(
            source, guild_id=guild_id, user_id=user_id, now=now, exclude_job_id=exclude_job_id)
        return Balance(
            budget=budget,
            used=totals.used,
            held=totals.held,
            remaining=None if budget is None else budget - totals.used,
            refill_at=None if totals.oldest_charge_at is None else totals.oldest_charge_at + WINDOW_SECONDS,
            active_jobs=active,
            max_concurrent=max_concurrent,
        )

    async def balance(self, guild_id: int, user_id: int, role_ids: Sequence[int]) -> Balance:
        """The member's balance now, from the reader (never waits for the writer)."""
        return await self._balance(self.db, guild_id, user_id, role_ids, self.clock.now(), None)

    # --- the decision -----------------------------------------------------------------------

    async def reserve_in(
        self,
        conn: Connection,
        *,
        guild_id: int,
        user_id: int,
        role_ids: Sequence[int],
        job_id: int,
        cost: int,
        now: float,
    ) -> None:
        """Hold `cost` credits for `job_id` or raise Refusal; call inside the job row's transaction."""
        if cost < 0:
            raise ValueError("a cost cannot be negative")
        await self._refuse_if_short(conn, guild_id, user_id, role_ids, cost, now, exclude_job_id=job_id)
        await ledger.insert_hold(conn, guild_id=guild_id, user_id=user_id, job_id=job_id, amount=cost, now=now)

    async def check_affordable(self, guild_id: int, user_id: int, role_ids: Sequence[int], cost: int, *,
                               snapshot: MemberSnapshot | None = None) -> Balance:
        """The same refusals as `reserve_in`, read without the writer: answers a member before they wait
        for attachments. `reserve_in` decides again inside the job's transaction."""
        return await self._refuse_if_short(self.db, guild_id, user_id, role_ids, cost, self.clock.now(), None,
                                           snapshot)

    async def _refuse_if_short(
        self, source: Source, guild_id: int, user_id: int, role_ids: Sequence[int], cost: int, now: float,
        exclude_job_id: int | None, snapshot: MemberSnapshot | None = None,
    ) -> Balance:
        state = await self._balance(source, guild_id, user_id, role_ids, now, exclude_job_id, snapshot)
        if state.active_jobs >= state.max_concurrent:
            raise Refusal("concurrency", _n(
                "You already have {n} video in progress; wait for it to finish.",
                "You already have {n} videos in progress; wait for one to finish.", n=state.active_jobs))
        if state.remaining is not None and cost > state.remaining:
            raise Refusal("budget", await self._budget_message(source, guild_id, user_id, state, cost, now))
        return state

    async def _budget_message(
        self, conn: Source, guild_id: int, user_id: int, state: Balance, cost: int, now: float
    ) -> Text:
        assert state.budget is not None and state.remaining is not None
        price = credits_text(cost)
        if cost > state.budget:
            return _("This video costs {cost}, more than your daily budget of {budget}.", cost=price,
                     budget=credits_text(state.budget))
        left = max(0, state.remaining)
        rows = await ledger.window_rows(conn, guild_id=guild_id, user_id=user_id, now=now)
        back = comeback(rows, state.remaining, cost)
        if back is not None:
            when, amount = back
            return _("This video costs {cost}; you have {left} left; {amount} come back {when}.", cost=price,
                     left=left, amount=amount, when=_t(when))
        if state.held:
            return _("This video costs {cost}; you have {left} left; {held} are held by videos in progress and "
                     "come back if they fail.", cost=price, left=left, held=state.held)
        return _("This video costs {cost}; you have {left} left.", cost=price, left=left)

    async def settle_in(self, conn: Connection, *, job_id: int, charge: bool, now: float,
                        amount: int | None = None) -> None:
        """Charge (video delivered-ready) or release (failed, timed out, refused, cancelled) the job's hold.
        `amount`: charge less than the hold (a video delivered without what it was ordered with).

        Idempotent: a job with no hold or already settled is left alone.
        """
        await ledger.settle(conn, job_id=job_id, charge=charge, now=now, amount=amount)

    # --- moderator actions ------------------------------------------------------------------

    async def grant(
        self, guild_id: int, user_id: int, amount: int, *, actor_id: int, note: str | None = None
    ) -> int:
        """Add `amount` credits to the member's rolling day; returns the ledger row id."""
        if amount <= 0:
            raise ValueError("a grant must be at least 1 credit")
        now = self.clock.now()
        async with self.db.transaction() as conn:
            row_id = await ledger.insert_moderator_row(
                conn, guild_id=guild_id, user_id=user_id, kind="grant", amount=amount,
                actor_id=actor_id, note=note, now=now,
            )
            why = f" ({audit.quote(note)})" if note else ""
            await self.audit.record(
                conn=conn, guild_id=guild_id, kind="quota_grant", actor_id=actor_id, target_id=user_id, now=now,
                text=f"<@{actor_id}> granted {credits_text(amount)} to <@{user_id}> for the next 24 hours{why}.",
            )
        return row_id

    async def reset(self, guild_id: int, user_id: int, *, actor_id: int, note: str | None = None) -> int:
        """Forgive the member's usage so far (videos still in progress keep their holds)."""
        now = self.clock.now()
        async with self.db.transaction() as conn:
            row_id = await ledger.insert_moderator_row(
                conn, guild_id=guild_id, user_id=user_id, kind="reset", amount=0,
                actor_id=actor_id, note=note, now=now,
            )
            why = f" ({audit.quote(note)})" if note else ""
            await self.audit.record(
                conn=conn, guild_id=guild_id, kind="quota_reset", actor_id=actor_id, target_id=user_id, now=now,
                text=f"<@{actor_id}> reset the credit usage of <@{user_id}>{why}.",
            )
        return row_id

    async def usage(self, guild_id: int, user_id: int, limit: int = 20) -> list[LedgerEntry]:
        """The member's latest ledger rows, newest first (for moderators)."""
        return await ledger.recent_entries(self.db, guild_id=guild_id, user_id=user_id, limit=limit)
