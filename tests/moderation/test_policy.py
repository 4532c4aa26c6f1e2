"""PolicyService.check against a real SQLite file: each refusal, in order, scoped to its server."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pytest

from bot.catalog import Family
from bot.clock import FakeClock
from bot.errors import Refusal
from bot.moderation.policy import PolicyService
from bot.moderation.rules import InvalidRule
from storage.database import Database
from storage.guild_settings import GuildSettingsStore

GUILD = 10
OTHER_GUILD = 20
MOD = 99


@dataclass(frozen=True)
class Requester:
    guild_id: int = GUILD
    channel_id: int = 1000
    user_id: int = 5
    role_ids: tuple[int, ...] = ()
    parent_channel_id: int | None = None


@pytest.fixture
def store(db: Database) -> GuildSettingsStore:
    return GuildSettingsStore(db)


@pytest.fixture
def policy(db: Database, fake_clock: FakeClock, store: GuildSettingsStore) -> PolicyService:
    return PolicyService(db, fake_clock, store)


async def refusal(policy: PolicyService, requester: Requester, family: Family, prompt: str) -> Refusal:
    with pytest.raises(Refusal) as refused:
        await policy.check(requester, family, prompt)
    return refused.value


async def test_a_plain_request_passes(policy: PolicyService) -> None:
    await policy.check(Requester(), Family.VEO, "a cat surfing a wave")


async def test_paused_server_refuses_and_resumes_at_once(policy: PolicyService, store: GuildSettingsStore) -> None:
    await store.update(GUILD, {"paused": True}, now=1.0)
    assert (await refusal(policy, Requester(), Family.VEO, "a cat")).kind == "paused"
    await policy.check(Requester(guild_id=OTHER_GUILD), Family.VEO, "a cat")
    await store.update(GUILD, {"paused": False}, now=2.0)
    await policy.check(Requester(), Family.VEO, "a cat")


async def test_banned_member_is_told_the_reason(policy: PolicyService, db: Database) -> None:
    await policy.ban(GUILD, 5, reason="spamming @everyone", actor_id=MOD)
    refused = await refusal(policy, Requester(), Family.SORA, "a cat")
    assert refused.kind == "banned"
    assert "spamming" in refused.user_message and "@everyone" not in refused.user_message  # reason kept, ping defused
    await policy.check(Requester(user_id=6), Family.SORA, "a cat")
    await policy.check(Requester(guild_id=OTHER_GUILD), Family.SORA, "a cat")
    assert await policy.unban(GUILD, 5, actor_id=MOD)
    await policy.check(Requester(), Family.SORA, "a cat")
    kinds = [row["kind"] for row in await db.fetchall("SELECT kind FROM audit_events ORDER BY id")]
    assert kinds == ["ban", "unban"]


async def test_channel_allowlist_names_channels_and_accepts_threads(
    policy: PolicyService, store: GuildSettingsStore
) -> None:
    await store.allow_channel(GUILD, 2000)
    await store.allow_channel(GUILD, 3000)
    refused = await refusal(policy, Requester(channel_id=1000), Family.KLING, "a cat")
    assert refused.kind == "channel"
    assert refused.user_message == "Videos can only be made in <#2000>, <#3000>."
    await policy.check(Requester(channel_id=2000), Family.KLING, "a cat")
    await policy.check(Requester(channel_id=4444, parent_channel_id=3000), Family.KLING, "a cat")  # a thread
    await policy.check(Requester(guild_id=OTHER_GUILD, channel_id=1000), Family.KLING, "a cat")
    await store.disallow_channel(GUILD, 2000)
    await store.disallow_channel(GUILD, 3000)
    await policy.check(Requester(channel_id=1000), Family.KLING, "a cat")  # empty list: anywhere


async def test_disabled_family(policy: PolicyService, store: GuildSettingsStore) -> None:
    await store.set_family_enabled(GUILD, "sora", False)
    refused = await refusal(policy, Requester(), Family.SORA, "a cat")
    assert (refused.kind, refused.user_message) == ("family", "/sora is turned off on this server.")
    await policy.check(Requester(), Family.VEO, "a cat")
    await policy.check(Requester(guild_id=OTHER_GUILD), Family.SORA, "a cat")
    await store.set_family_enabled(GUILD, "sora", True)
    await policy.check(Requester(), Family.SORA, "a cat")


async def test_blocked_prompt_is_refused_logged_and_audited_without_echo(
    policy: PolicyService, db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    rule = await policy.add_rule(GUILD, "word", "gizmo", actor_id=MOD)
    with caplog.at_level(logging.INFO, logger="bot.moderation.policy"):
        refused = await refusal(policy, Requester(), Family.VEO, "a g i z m o on <@&77> stage")
    assert refused.kind == "prompt"
    assert "gizmo" not in refused.user_message.lower()
    assert any("prompt blocked" in record.getMessage() and f"rule={rule.id}" in record.getMessage()
               for record in caplog.records)
    event = await db.fetchone("SELECT * FROM audit_events WHERE kind = 'prompt_blocked'")
    assert event["guild_id"] == GUILD and event["actor_id"] == 5
    assert "<@5>" in event["text"] and "<@&77>" not in event["text"]  # the prompt's role mention is defused
    await policy.check(Requester(guild_id=OTHER_GUILD), Family.VEO, "a gizmo")  # rules are per server


async def test_rule_management(policy: PolicyService, store: GuildSettingsStore) -> None:
    with pytest.raises(InvalidRule, match="not a valid regex"):
        await policy.add_rule(GUILD, "regex", "(", actor_id=MOD)
    regex_rule = await policy.add_rule(GUILD, "regex", r"\bwid(get|gets)\b", actor_id=MOD)
    again = await policy.add_rule(GUILD, "regex", r"\bwid(get|gets)\b", actor_id=MOD)
    assert again.id == regex_rule.id
    assert (await policy.test_prompt(GUILD, "two WIDGETS")).rule_id == regex_rule.id
    assert not await policy.remove_rule(OTHER_GUILD, regex_rule.id, actor_id=MOD)  # another server's rule
    assert await policy.remove_rule(GUILD, regex_rule.id, actor_id=MOD)
    assert await store.prompt_rules(GUILD) == []
    await policy.check(Requester(), Family.VEO, "two widgets")


async def test_checks_run_in_a_stable_order(policy: PolicyService, store: GuildSettingsStore) -> None:
    await store.update(GUILD, {"paused": True}, now=1.0)
    await policy.ban(GUILD, 5, reason=None, actor_id=MOD)
    await store.set_family_enabled(GUILD, "veo", False)
    assert (await refusal(policy, Requester(), Family.VEO, "a cat")).kind == "paused"
    await store.update(GUILD, {"paused": False}, now=2.0)
    refused = await refusal(policy, Requester(), Family.VEO, "a cat")
    assert (refused.kind, refused.user_message) == ("banned", "You are not allowed to make videos on this server.")
    await policy.unban(GUILD, 5, actor_id=MOD)
    assert (await refusal(policy, Requester(), Family.VEO, "a cat")).kind == "family"


async def test_check_accepts_a_job_spec_and_checks_every_shot(policy: PolicyService, store: GuildSettingsStore) -> None:
    from bot.catalog import ProviderName
    from bot.validation import GenerationRequest, validate_request

    await policy.add_rule(GUILD, "word", "gizmo", actor_id=MOD)
    providers = set(ProviderName)
    clean = validate_request(GenerationRequest(family=Family.KLING, prompt="a cat", negative_prompt="no gizmo"), providers)
    await policy.check(Requester(), clean)  # the negative prompt may name what to keep out
    shots = validate_request(
        GenerationRequest(family=Family.KLING, prompt="a cat", multi_prompt="a dog | a g1zmo"), providers
    )
    assert (await refusal_for_spec(policy, shots)).kind == "prompt"
    await store.set_family_enabled(GUILD, "kling", False)
    assert (await refusal_for_spec(policy, clean)).kind == "family"


async def refusal_for_spec(policy: PolicyService, spec: object) -> Refusal:
    with pytest.raises(Refusal) as refused:
        await policy.check(Requester(), spec)
    return refused.value
