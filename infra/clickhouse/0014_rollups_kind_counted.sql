-- The rollups follow the two rules every other aggregate follows: a model call recorded twice counts
-- once (spans.counted, 0013), and "requests" / "latency" mean model calls unless the caller asks for
-- other kinds, so metrics_1m is grouped by kind too. rollup_spans holds only counted spans, with their
-- kind; it is refilled from spans and every minute is marked, so each is read from the spans again
-- until the roller has rolled it with the new columns.
DROP VIEW IF EXISTS rollup_spans_mv;
ALTER TABLE rollup_spans ADD COLUMN IF NOT EXISTS kind LowCardinality(String) AFTER status;
ALTER TABLE metrics_1m ADD COLUMN IF NOT EXISTS kind LowCardinality(String) AFTER release;
CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_spans_mv TO rollup_spans AS
SELECT project_id, toStartOfMinute(start_time) AS minute, model, trace_id, span_id, provider, name, status, kind,
       environment, release, user_id, cost, input_tokens, output_tokens, duration_ms, ingested_at
FROM spans WHERE counted = 1;
TRUNCATE TABLE IF EXISTS rollup_spans;
INSERT INTO rollup_spans
SELECT project_id, toStartOfMinute(start_time) AS minute, model, trace_id, span_id, provider, name, status, kind,
       environment, release, user_id, cost, input_tokens, output_tokens, duration_ms, ingested_at
FROM spans WHERE counted = 1;
INSERT INTO rollup_minutes (project_id, minute)
SELECT DISTINCT project_id, toStartOfMinute(start_time) FROM spans
