"""Everything one command needs to know about a server and a member, read in one statement.

A slash command used to ask the database a dozen small questions (paused? banned? allowed channel?
family on? prompt rules? prices? budget?), each a hop to the connection's thread and back through a
busy event loop. Here they are one SELECT of scalar sub-queries, the lists folded into JSON by
SQLite, so a command's policy, price and budget checks cost one hop. Nothing is cached: a
moderator's change still applies to the very next command.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from storage.database import Connection, Database, fetch_row, is_postgres
from storage.guild_settings import (
    Ban, GuildSettings, Limit, PromptRule, ban_from, id_list, rule_from, settings_from,
)

_SNAPSHOT = """
SELECT
  (SELECT json_object('daily_credits', daily_credits, 'max_concurrent', max_concurrent, 'paused', paused,
                      'audit_channel_id', audit_channel_id, 'moderator_role_id', moderator_role_id,
                      'updated_at', updated_at)
     FROM guild_settings WHERE guild_id = :guild) AS settings,
  (SELECT json_object('guild_id', guild_id, 'user_id', user_id, 'reason', reason, 'banned_by', banned_by,
                      'created_at', created_at)
     FROM guild_bans WHERE guild_id = :guild AND user_id = :user) AS ban,
  (SELECT json_group_array(channel_id) FROM
     (SELECT channel_id FROM guild_channel_allowlist WHERE guild_id = :guild ORDER BY channel_id)) AS channels,
  (SELECT json_group_object(family, enabled) FROM guild_family_toggles WHERE guild_id = :guild) AS families,
  (SELECT json_group_array(json_object('id', id, 'guild_id', guild_id, 'kind', kind, 'pattern', pattern,
                                       'created_by', created_by, 'created_at', created_at)) FROM
     (SELECT * FROM guild_prompt_rules WHERE guild_id = :guild ORDER BY id)) AS rules,
  (SELECT json_group_object(cost_key, cost) FROM guild_costs WHERE guild_id = :guild) AS costs,
  (SELECT json_object('credits', credits) FROM guild_member_overrides
     WHERE guild_id = :guild AND user_id = :user) AS override,
  (SELECT json_group_array(credits) FROM guild_role_budgets
     WHERE guild_id = :guild AND role_id IN (SELECT value FROM json_each(:roles))) AS role_credits
"""

# The same question in PostgreSQL's JSON functions (json_agg of no rows is NULL, read as empty).
_SNAPSHOT_PG = """
SELECT
  (SELECT json_build_object('daily_credits', daily_credits, 'max_concurrent', max_concurrent, 'paused', paused,
                            'audit_channel_id', audit_channel_id, 'moderator_role_id', moderator_role_id,
                            'updated_at', updated_at)
     FROM guild_settings WHERE guild_id = :guild) AS settings,
  (SELECT json_build_object('guild_id', guild_id, 'user_id', user_id, 'reason', reason, 'banned_by', banned_by,
                            'created_at', created_at)
     FROM guild_bans WHERE guild_id = :guild AND user_id = :user) AS ban,
  (SELECT json_agg(channel_id ORDER BY channel_id) FROM guild_channel_allowlist WHERE guild_id = :guild) AS channels,
  (SELECT json_object_agg(family, enabled) FROM guild_family_toggles WHERE guild_id = :guild) AS families,
  (SELECT json_agg(json_build_object('id', id, 'guild_id', guild_id, 'kind', kind, 'pattern', pattern,
                                     'created_by', created_by, 'created_at', created_at) ORDER BY id)
     FROM guild_prompt_rules WHERE guild_id = :guild) AS rules,
  (SELECT json_object_agg(cost_key, cost) FROM guild_costs WHERE guild_id = :guild) AS costs,
  (SELECT json_build_object('credits', credits) FROM guild_member_overrides
     WHERE guild_id = :guild AND user_id = :user) AS override,
  (SELECT json_agg(credits) FROM guild_role_budgets
     WHERE guild_id = :guild AND role_id IN
       (SELECT value::bigint FROM json_array_elements_text(CAST(:roles AS json)))) AS role_credits
"""


@dataclass(frozen=True)
class MemberSnapshot:
    """One server's configuration as it applies to one member, at one instant."""

    settings: GuildSettings
    ban: Ban | None
    allowed_channels: list[int]
    family_toggles: dict[str, bool]
    prompt_rules: list[PromptRule]
    costs: dict[str, int]
    member_override: Limit | None
    role_limits: list[Limit]

    def is_family_enabled(self, family: str) -> bool:
        """Families are on unless a moderator turned them off."""
        return self.family_toggles.get(family, True)


def _json(value: Any, empty: Any) -> Any:
    return empty if value is None else json.loads(value)


async def read_snapshot(source: Database | Connection, guild_id: int, user_id: int,
                        role_ids: Sequence[int] = ()) -> MemberSnapshot:
    """The snapshot from the reader (a Database) or inside a caller's transaction (a Connection)."""
    params = {"guild": guild_id, "user": user_id, "roles": id_list(role_ids)}
    sql = _SNAPSHOT_PG if is_postgres(source) else _SNAPSHOT
    if isinstance(source, Database):
        row = await source.fetchone(sql, params)
    else:
        row = await fetch_row(source, sql, params)
    assert row is not None  # scalar sub-queries always yield one row
    ban = _json(row["ban"], None)
    override = _json(row["override"], None)
    return MemberSnapshot(
        settings=settings_from(guild_id, _json(row["settings"], None)),
        ban=ban_from(ban) if ban else None,
        allowed_channels=[int(c) for c in _json(row["channels"], [])],
        family_toggles={str(k): bool(v) for k, v in _json(row["families"], {}).items()},
        prompt_rules=[rule_from(r) for r in _json(row["rules"], [])],
        costs={str(k): int(v) for k, v in _json(row["costs"], {}).items()},
        member_override=Limit(override["credits"]) if override else None,
        role_limits=[Limit(c) for c in _json(row["role_credits"], [])],
    )
