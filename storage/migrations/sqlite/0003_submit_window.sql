-- The per-provider submit rate window is counted from the jobs table inside the submit
-- transaction, so every bot process on this database shares one window (kie.ai: ~20 per 10 s).
CREATE INDEX jobs_recent_submits ON jobs (provider, submitted_at) WHERE submitted_at IS NOT NULL;
