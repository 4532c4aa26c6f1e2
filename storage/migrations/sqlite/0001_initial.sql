-- Framecast schema, version 1. Times are Unix seconds (REAL). Discord ids are INTEGER.

-- Jobs: one row per accepted request, written before any vendor call.
-- status: queued -> submitting -> running -> succeeded | failed | timed_out
--         submitting -> uncertain (submit response lost) -> running | failed
--         any active state -> cancelled (moderator)
-- delivery_state applies once status is terminal: pending -> delivered.
-- next_due_at is when the poller should next look at the row (NULL: nothing to do).
CREATE TABLE jobs (
    id                  INTEGER PRIMARY KEY,
    guild_id            INTEGER NOT NULL,
    channel_id          INTEGER NOT NULL,
    thread_id           INTEGER,
    summary_message_id  INTEGER,
    user_id             INTEGER NOT NULL,
    family              TEXT    NOT NULL,
    model_key           TEXT    NOT NULL,
    provider            TEXT    NOT NULL,
    mode                TEXT    NOT NULL,
    prompt              TEXT    NOT NULL,
    request_json        TEXT    NOT NULL,
    attachment_ids      TEXT    NOT NULL DEFAULT '[]',
    cost                INTEGER NOT NULL DEFAULT 0,
    status              TEXT    NOT NULL DEFAULT 'queued'
        CHECK (status IN ('queued','submitting','running','uncertain','succeeded','failed','timed_out','cancelled')),
    provider_task_id    TEXT,
    raw_status          TEXT,
    video_url           TEXT,
    error_message       TEXT,
    created_at          REAL    NOT NULL,
    submitted_at        REAL,
    vendor_done_at      REAL,
    finished_at         REAL,
    deadline_at         REAL,
    next_due_at         REAL,
    poll_count          INTEGER NOT NULL DEFAULT 0,
    submit_attempts     INTEGER NOT NULL DEFAULT 0,
    error_streak        INTEGER NOT NULL DEFAULT 0,
    lease_owner         TEXT,
    lease_until         REAL,
    delivery_state      TEXT    NOT NULL DEFAULT 'pending' CHECK (delivery_state IN ('pending','delivered')),
    delivery_attempts   INTEGER NOT NULL DEFAULT 0,
    result_message_id   INTEGER,
    delivered_at        REAL
);
CREATE INDEX jobs_due ON jobs (next_due_at) WHERE next_due_at IS NOT NULL;
CREATE INDEX jobs_member ON jobs (guild_id, user_id, id DESC);
CREATE INDEX jobs_active ON jobs (guild_id, user_id)
    WHERE status IN ('queued','submitting','running','uncertain');
CREATE INDEX jobs_queue ON jobs (provider, id) WHERE status = 'queued';
CREATE UNIQUE INDEX jobs_task ON jobs (provider, provider_task_id) WHERE provider_task_id IS NOT NULL;
CREATE INDEX jobs_history ON jobs (model_key, mode, finished_at) WHERE status = 'succeeded';

-- Append-only credit ledger. Balances are derived, never stored.
-- hold: reserved with the job row; charge / release settle a hold (at most one per job).
-- grant / reset / refund: moderator actions, naming who did it in actor_id.
CREATE TABLE credit_ledger (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    job_id      INTEGER REFERENCES jobs (id),
    kind        TEXT    NOT NULL CHECK (kind IN ('hold','charge','release','grant','reset','refund')),
    amount      INTEGER NOT NULL DEFAULT 0,
    actor_id    INTEGER,
    note        TEXT,
    created_at  REAL    NOT NULL
);
CREATE INDEX ledger_member ON credit_ledger (guild_id, user_id, created_at);
CREATE UNIQUE INDEX ledger_one_hold ON credit_ledger (job_id) WHERE kind = 'hold';
CREATE UNIQUE INDEX ledger_one_settle ON credit_ledger (job_id) WHERE kind IN ('charge','release');
CREATE UNIQUE INDEX ledger_one_refund ON credit_ledger (job_id) WHERE kind = 'refund' AND job_id IS NOT NULL;

-- Per-server settings. NULL columns fall back to the bot-wide defaults.
CREATE TABLE guild_settings (
    guild_id            INTEGER PRIMARY KEY,
    daily_credits       INTEGER,
    max_concurrent      INTEGER,
    paused              INTEGER NOT NULL DEFAULT 0,
    audit_channel_id    INTEGER,
    moderator_role_id   INTEGER,
    updated_at          REAL
);
CREATE TABLE guild_costs (
    guild_id    INTEGER NOT NULL,
    cost_key    TEXT    NOT NULL,
    cost        INTEGER NOT NULL CHECK (cost >= 0),
    PRIMARY KEY (guild_id, cost_key)
);
-- credits NULL = unlimited.
CREATE TABLE guild_role_budgets (
    guild_id    INTEGER NOT NULL,
    role_id     INTEGER NOT NULL,
    credits     INTEGER,
    PRIMARY KEY (guild_id, role_id)
);
CREATE TABLE guild_member_overrides (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    credits     INTEGER,
    PRIMARY KEY (guild_id, user_id)
);
CREATE TABLE guild_prompt_rules (
    id          INTEGER PRIMARY KEY,
    guild_id    INTEGER NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('word','regex')),
    pattern     TEXT    NOT NULL,
    created_by  INTEGER,
    created_at  REAL    NOT NULL,
    UNIQUE (guild_id, kind, pattern)
);
CREATE TABLE guild_channel_allowlist (
    guild_id    INTEGER NOT NULL,
    channel_id  INTEGER NOT NULL,
    PRIMARY KEY (guild_id, channel_id)
);
CREATE TABLE guild_family_toggles (
    guild_id    INTEGER NOT NULL,
    family      TEXT    NOT NULL,
    enabled     INTEGER NOT NULL,
    PRIMARY KEY (guild_id, family)
);
CREATE TABLE guild_bans (
    guild_id    INTEGER NOT NULL,
    user_id     INTEGER NOT NULL,
    reason      TEXT,
    banned_by   INTEGER,
    created_at  REAL    NOT NULL,
    PRIMARY KEY (guild_id, user_id)
);

-- Audit trail, also an outbox: rows are posted to the server's audit channel by a loop,
-- so a restart never loses one and never posts one twice (posted_at is set in the same
-- transaction that records the message id).
CREATE TABLE audit_events (
    id              INTEGER PRIMARY KEY,
    guild_id        INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    actor_id        INTEGER,
    target_id       INTEGER,
    job_id          INTEGER,
    text            TEXT    NOT NULL,
    created_at      REAL    NOT NULL,
    posted_at       REAL,
    message_id      INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL
);
CREATE INDEX audit_pending ON audit_events (next_attempt_at) WHERE posted_at IS NULL;
CREATE INDEX audit_guild ON audit_events (guild_id, id DESC);
