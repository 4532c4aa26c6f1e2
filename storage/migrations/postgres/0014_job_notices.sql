-- A word to the member about a job still in progress (a submit whose answer was lost, then how it
-- settled): written in the same change as the status it explains and kept on the job until Discord
-- has it, so it is retried when Discord is down and survives a restart (bot.jobs.outbox).
-- notice_text is the message id and its parameters (bot.i18n.to_json), rendered in the reader's language.
ALTER TABLE jobs ADD COLUMN notice_key TEXT;
ALTER TABLE jobs ADD COLUMN notice_text TEXT;
ALTER TABLE jobs ADD COLUMN notice_due_at DOUBLE PRECISION;
ALTER TABLE jobs ADD COLUMN notice_attempts INTEGER NOT NULL DEFAULT 0;
CREATE INDEX jobs_notice_due ON jobs (notice_due_at) WHERE notice_due_at IS NOT NULL;
