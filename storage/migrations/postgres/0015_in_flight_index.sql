-- A vendor's in-flight cap is counted from the jobs table on every submit, under the vendor's lock
-- (storage/jobs.py, count_in_flight_in). Without an index that count read the whole table, every
-- finished job of the database's history included, so each submit grew slower as history grew and
-- held every other process's submits to the same vendor behind it (at 10,000 jobs in flight on
-- PostgreSQL: 4.5 ms a submit, most of the server's time). With it, the count reads the in-flight
-- jobs' entries only. Not a partial index: the statuses come as parameters, which a prepared
-- statement's generic plan cannot match against an index predicate.
CREATE INDEX jobs_provider_status ON jobs (provider, status);
