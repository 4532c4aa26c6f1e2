-- The vendor's last progress reading for a running job. Progress is extrapolated only when it moved
-- since the reading before: many gateways (new-api, which most resellers run) report a fixed figure
-- per stage (10% submitted, 20% queued, 30% in progress) that says nothing about the time left.
ALTER TABLE jobs ADD COLUMN progress REAL;
