-- When a vendor's callback last asked for a look at a job (storage.jobs.make_due_now). A callback
-- that arrives while a poll of the same job is in flight would otherwise be overwritten by that
-- poll's plan ("still running, look again in minutes"): the poller's next write keeps the job due
-- at once instead, and a claim clears the mark (the poll after a claim sees what the callback saw).
ALTER TABLE jobs ADD COLUMN woken_at DOUBLE PRECISION;
