-- Every bot process records that it is alive every few seconds (bot.jobs.heartbeat). A job leased by
-- a process whose heartbeat has gone stale is taken over at once, not when its lease runs out: a
-- restarted bot resumes its killed predecessor's jobs within seconds instead of minutes.
-- A process that stops cleanly dates its last beat back past staleness: what it still held is free at once.
CREATE TABLE heartbeats (
    owner       TEXT    PRIMARY KEY,
    pid         INTEGER NOT NULL,
    host        TEXT    NOT NULL,
    started_at  DOUBLE PRECISION NOT NULL,
    beat_at     DOUBLE PRECISION NOT NULL
);
CREATE INDEX heartbeats_stale ON heartbeats (beat_at);
