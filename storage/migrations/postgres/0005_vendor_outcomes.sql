-- Early failures are learned per vendor, not per model: how soon a vendor rejects a request is its
-- own habit (input moderation, the reseller's retries), and one model's history holds too few of
-- them. The poll schedule reads a vendor's failures, and counts its finished jobs, over a window.
DROP INDEX IF EXISTS jobs_failure_history;
CREATE INDEX jobs_vendor_outcomes ON jobs (provider, finished_at) WHERE vendor_done_at IS NOT NULL;
