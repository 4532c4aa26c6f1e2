-- A job's live status card and the facts members act on (issue 15).
-- Who asked, in which language: public cards and results follow the requester's locale, then the server's.
ALTER TABLE jobs ADD COLUMN locale TEXT;
ALTER TABLE jobs ADD COLUMN guild_locale TEXT;
-- Who cancelled (the requester or a moderator), so the card can say so.
ALTER TABLE jobs ADD COLUMN cancelled_by INTEGER;
-- A job made from another one's button (again, remix, extend, 1080p, 4k).
ALTER TABLE jobs ADD COLUMN parent_job_id INTEGER;
ALTER TABLE jobs ADD COLUMN follow_up TEXT;
-- One job per click: the interaction that asked for it. A redelivered click finds its job.
ALTER TABLE jobs ADD COLUMN request_key TEXT;
CREATE UNIQUE INDEX jobs_request_key ON jobs (request_key) WHERE request_key IS NOT NULL;

-- The card outbox: what the card last showed. The card keeper edits a card whose job moved on,
-- so the final edit happens even after a crash in between. `closed` = final shown, or the card
-- was deleted (never re-created).
CREATE TABLE job_cards (
    job_id         INTEGER PRIMARY KEY REFERENCES jobs (id),
    channel_id     INTEGER NOT NULL,
    message_id     INTEGER NOT NULL,
    shown_status   TEXT NOT NULL,
    shown_progress REAL,
    shown_position INTEGER,
    shown_at       REAL NOT NULL,
    edits          INTEGER NOT NULL DEFAULT 0,
    closed         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX job_cards_open ON job_cards (job_id) WHERE closed = 0;
