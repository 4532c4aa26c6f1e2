-- The poll schedule also learns when jobs of a kind fail, so it can check early where vendors
-- reject soon after submit (input moderation). Only failures the vendor itself reported count:
-- those are the failed rows with vendor_done_at (timeouts, lost submits and cancellations have none).
CREATE INDEX jobs_failure_history ON jobs (model_key, mode, finished_at)
    WHERE status = 'failed' AND vendor_done_at IS NOT NULL;
