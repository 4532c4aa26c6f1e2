"""QuotaService against a real SQLite file: holds, settles, budgets, the rolling day, moderator actions."""

from __future__ import annotations

import re

import pytest

from bot.catalog import Family, FollowUp, ProviderName
from bot.clock import FakeClock
from bot.errors import Refusal
from bot.quota.service import QuotaService
from bot.validation import GenerationRequest, build_follow_up, validate_request
from storage.database import Database
from storage.guild_settings import GuildSettingsStore
from tests.quota.support import DAY, T0, create_job, finish_job, make_settings

GUILD = 111
OTHER_GUILD = 222
USER = 501
MOD = 900


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=T0)


@pytest.fixture
def quota(db: Database, clock: FakeClock) -> QuotaService:
    return QuotaService(db, make_settings(daily=10, concurrent=2), clock)


@pytest.fixture
def store(db: Database) -> GuildSettingsStore:
    return GuildSettingsStore(db)


async def test_hold_counts_then_charge_keeps_and_release_returns(
    db: Database, quota: QuotaService, clock: FakeClock
) -> None:
    kept = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=4, now=T0)
    failed = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=3, now=T0)
    balance = await quota.balance(GUILD, USER, ())
    assert (balance.budget, balance.used, balance.held, balance.remaining) == (10, 7, 7, 3)
    assert balance.active_jobs == 2
    assert balance.refill_at is None  # holds are not charges: nothing to refill yet

    await finish_job(db, quota, kept, succeeded=True, now=T0 + 60)
    await finish_job(db, quota, failed, succeeded=False, now=T0 + 60)
    clock.advance(60)
    balance = await quota.balance(GUILD, USER, ())
    assert (balance.used, balance.held, balance.remaining, balance.active_jobs) == (4, 0, 6, 0)
    assert balance.refill_at == T0 + 60 + DAY


async def test_settle_is_idempotent_and_needs_a_hold(db: Database, quota: QuotaService) -> None:
    job_id = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=4, now=T0)
    async with db.transaction() as conn:
        await quota.settle_in(conn, job_id=job_id, charge=False, now=T0 + 1)
        await quota.settle_in(conn, job_id=job_id, charge=False, now=T0 + 2)
        await quota.settle_in(conn, job_id=job_id, charge=True, now=T0 + 3)  # too late: already released
        await quota.settle_in(conn, job_id=987654, charge=True, now=T0 + 3)  # no such hold
    kinds = [row["kind"] for row in await db.fetchall("SELECT kind FROM credit_ledger ORDER BY id")]
    assert kinds == ["hold", "release"]
    assert (await quota.balance(GUILD, USER, ())).remaining == 10


async def test_budget_refusal_says_cost_left_and_when_credits_return(
    db: Database, quota: QuotaService, clock: FakeClock
) -> None:
    first = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=4, now=T0)
    await finish_job(db, quota, first, succeeded=True, now=T0 + 100)
    second = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=5, now=T0 + 200)
    await finish_job(db, quota, second, succeeded=True, now=T0 + 300)
    with pytest.raises(Refusal) as refused:
        await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=4, now=T0 + 400)
    assert refused.value.kind == "budget"
    # 1 left; the first charge (4 credits) leaves the window a day after it was made.
    assert refused.value.user_message == (
        f"This video costs 4 credits; you have 1 left; 4 come back <t:{int(T0 + 100 + DAY)}:R>."
    )
    assert await db.fetchval("SELECT COUNT(*) FROM credit_ledger WHERE kind = 'hold'") == 2  # no hold for the refusal

    with pytest.raises(Refusal) as too_big:
        await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=11, now=T0 + 400)
    assert "more than your daily budget of 10 credits" in too_big.value.user_message


async def test_release_after_failure_restores_the_balance(db: Database, quota: QuotaService) -> None:
    job_id = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=10, now=T0)
    with pytest.raises(Refusal) as refused:
        await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=1, now=T0 + 1)
    assert "held by videos in progress" in refused.value.user_message
    await finish_job(db, quota, job_id, succeeded=False, now=T0 + 2)
    await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=10, now=T0 + 3)


async def test_rolling_day_uses_explicit_times(db: Database, quota: QuotaService, clock: FakeClock) -> None:
    job_id = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=8, now=T0)
    await finish_job(db, quota, job_id, succeeded=True, now=T0 + 10)
    with pytest.raises(Refusal):
        await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=3, now=T0 + DAY + 9)
    await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=3, now=T0 + DAY + 11)

    clock.advance(DAY + 11)
    balance = await quota.balance(GUILD, USER, ())
    assert (balance.used, balance.held, balance.remaining, balance.refill_at) == (3, 3, 7, None)


async def test_refill_at_is_when_the_oldest_charge_leaves(db: Database, quota: QuotaService, clock: FakeClock) -> None:
    for offset in (50.0, 500.0, 5000.0):
        job_id = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=2, now=T0 + offset)
        await finish_job(db, quota, job_id, succeeded=True, now=T0 + offset + 1)
    clock.advance(6000)
    assert (await quota.balance(GUILD, USER, ())).refill_at == T0 + 51 + DAY
    clock.advance(DAY - 6000 + 100)  # the first charge has left the window
    balance = await quota.balance(GUILD, USER, ())
    assert balance.refill_at == T0 + 501 + DAY
    assert balance.used == 4


async def test_role_and_override_precedence(db: Database, quota: QuotaService, store: GuildSettingsStore) -> None:
    low_role, high_role, unlimited_role, unbudgeted_role = 1, 2, 3, 4
    assert (await quota.balance(GUILD, USER, ())).budget == 10  # the bot default
    await store.update(GUILD, {"daily_credits": 6}, now=T0)
    assert (await quota.balance(GUILD, USER, (unbudgeted_role,))).budget == 6  # the server default

    await store.set_role_budget(GUILD, low_role, 3)
    await store.set_role_budget(GUILD, high_role, 25)
    await store.set_role_budget(GUILD, unlimited_role, None)
    assert (await quota.balance(GUILD, USER, (low_role,))).budget == 3  # a role budget replaces the default
    assert (await quota.balance(GUILD, USER, (low_role, high_role, unbudgeted_role))).budget == 25
    unlimited = await quota.balance(GUILD, USER, (high_role, unlimited_role))
    assert unlimited.budget is None and unlimited.remaining is None and unlimited.unlimited

    await store.set_member_override(GUILD, USER, 2)
    assert (await quota.balance(GUILD, USER, (high_role, unlimited_role))).budget == 2  # override beats roles
    await store.set_member_override(GUILD, USER, None)
    assert (await quota.balance(GUILD, USER, (low_role,))).budget is None  # unlimited override
    await store.remove_member_override(GUILD, USER)
    assert (await quota.balance(GUILD, USER, (low_role,))).budget == 3


async def test_unlimited_member_is_never_refused_for_budget(
    db: Database, quota: QuotaService, store: GuildSettingsStore
) -> None:
    await store.set_role_budget(GUILD, 7, None)
    await store.update(GUILD, {"max_concurrent": 50}, now=T0)
    for _ in range(5):
        await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=100, now=T0, role_ids=(7,))
    with pytest.raises(Refusal):
        await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=100, now=T0)  # without the role


async def test_reset_forgives_earlier_usage_but_not_active_holds(
    db: Database, quota: QuotaService, clock: FakeClock
) -> None:
    done = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=5, now=T0)
    await finish_job(db, quota, done, succeeded=True, now=T0 + 1)
    running = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=3, now=T0 + 2)
    clock.advance(10)
    await quota.reset(GUILD, USER, actor_id=MOD, note="contest winner")
    balance = await quota.balance(GUILD, USER, ())
    assert (balance.used, balance.held, balance.remaining, balance.refill_at) == (3, 3, 7, None)

    await finish_job(db, quota, running, succeeded=True, now=T0 + 20)  # charged after the reset: counts
    clock.advance(20)
    balance = await quota.balance(GUILD, USER, ())
    assert (balance.used, balance.remaining, balance.refill_at) == (3, 7, T0 + 20 + DAY)
    event = await db.fetchone("SELECT * FROM audit_events WHERE kind = 'quota_reset'")
    assert event["actor_id"] == MOD and event["target_id"] == USER and "contest winner" in event["text"]


async def test_grant_adds_credits_for_a_rolling_day(db: Database, quota: QuotaService, clock: FakeClock) -> None:
    job_id = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=10, now=T0)
    await finish_job(db, quota, job_id, succeeded=True, now=T0)
    clock.advance(3600)
    await quota.grant(GUILD, USER, 4, actor_id=MOD)
    await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=4, now=T0 + 3601)
    row = await db.fetchone("SELECT * FROM credit_ledger WHERE kind = 'grant'")
    assert (row["amount"], row["actor_id"]) == (4, MOD)
    with pytest.raises(ValueError):
        await quota.grant(GUILD, USER, 0, actor_id=MOD)


async def test_concurrency_limit(db: Database, quota: QuotaService, store: GuildSettingsStore) -> None:
    first = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=1, now=T0)
    await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=1, now=T0)
    with pytest.raises(Refusal) as refused:
        await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=1, now=T0)
    assert refused.value.kind == "concurrency"
    assert refused.value.user_message == "You already have 2 videos in progress; wait for one to finish."
    await create_job(db, quota, guild_id=GUILD, user_id=USER + 1, cost=1, now=T0)  # others are unaffected

    await finish_job(db, quota, first, succeeded=False, now=T0 + 1)
    await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=1, now=T0 + 2)

    await store.update(GUILD, {"max_concurrent": 3}, now=T0)  # applies to the very next request
    await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=1, now=T0 + 3)
    balance = await quota.balance(GUILD, USER, ())
    assert (balance.active_jobs, balance.max_concurrent) == (3, 3)


async def test_budgets_costs_and_ledgers_are_scoped_by_server(
    db: Database, quota: QuotaService, store: GuildSettingsStore
) -> None:
    await store.update(GUILD, {"daily_credits": 2}, now=T0)
    await store.set_role_budget(GUILD, 5, 1)
    await store.set_member_override(GUILD, USER, 1)
    await store.set_cost(GUILD, "veo-fast-kie", 9)
    await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=1, now=T0)

    other = await quota.balance(OTHER_GUILD, USER, (5,))
    assert (other.budget, other.used, other.active_jobs) == (10, 0, 0)
    spec = validate_request(GenerationRequest(family=Family.VEO, prompt="a cat", model="veo-fast-kie"), {ProviderName.KIE})
    assert await quota.cost_of(GUILD, spec) == 9
    assert await quota.cost_of(OTHER_GUILD, spec) == 2


async def test_cost_of_adds_the_1080p_surcharge(quota: QuotaService, store: GuildSettingsStore) -> None:
    providers = set(ProviderName)
    veo = validate_request(GenerationRequest(family=Family.VEO, prompt="x", model="veo-quality-kie"), providers)
    veo_hd = validate_request(
        GenerationRequest(family=Family.VEO, prompt="x", model="veo-quality-kie", upsample=True), providers
    )
    sora_small = validate_request(GenerationRequest(family=Family.SORA, prompt="x"), providers)
    sora_large = validate_request(GenerationRequest(family=Family.SORA, prompt="x", size="large"), providers)
    assert [await quota.cost_of(GUILD, s) for s in (veo, veo_hd, sora_small, sora_large)] == [4, 5, 3, 4]
    await store.set_cost(GUILD, "1080p", 3)
    await store.set_cost(GUILD, "sora-2", 1)
    assert [await quota.cost_of(GUILD, s) for s in (veo, veo_hd, sora_small, sora_large)] == [4, 7, 1, 4]
    table = await quota.cost_table(GUILD)
    assert table["1080p"] == 3 and table["sora-2"] == 1 and table["kling-v3-pro-audio"] == 5


async def test_follow_ups_are_priced_from_their_own_cost_keys(quota: QuotaService, store: GuildSettingsStore) -> None:
    source = validate_request(GenerationRequest(family=Family.VEO, prompt="x", model="veo-quality-kie"), {ProviderName.KIE})
    extend, hd, uhd = (build_follow_up(source, "veo_task_1", action) for action in FollowUp)
    assert [await quota.cost_of(GUILD, s) for s in (extend, hd, uhd)] == [2, 1, 4]  # the catalog's defaults
    await store.set_cost(GUILD, "extend", 5)
    await store.set_cost(GUILD, "4k", 8)
    assert [await quota.cost_of(GUILD, s) for s in (extend, hd, uhd)] == [5, 1, 8]
    table = await quota.cost_table(GUILD)
    assert (table["extend"], table["4k"], table["1080p"]) == (5, 8, 1)


async def test_refusal_times_use_discord_markup(db: Database, quota: QuotaService) -> None:
    job_id = await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=9, now=T0)
    await finish_job(db, quota, job_id, succeeded=True, now=T0 + 1)
    with pytest.raises(Refusal) as refused:
        await create_job(db, quota, guild_id=GUILD, user_id=USER, cost=2, now=T0 + 2)
    assert re.search(r"<t:\d+:R>", refused.value.user_message)
