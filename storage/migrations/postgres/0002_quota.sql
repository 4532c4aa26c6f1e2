-- Indexes for the quota ledger and the audit outbox (no table changes).

-- Balances read a member's rows of one kind in a time range (charges / refunds / grants in the
-- rolling day, every hold of any age, the last reset): one index range per kind.
CREATE INDEX ledger_member_kind ON credit_ledger (guild_id, user_id, kind, created_at);

-- The audit poster only looks at servers that have an audit channel, so the pending rows are
-- found per server instead of scanning every unposted row of servers without one.
CREATE INDEX audit_pending_guild ON audit_events (guild_id, next_attempt_at) WHERE posted_at IS NULL;
