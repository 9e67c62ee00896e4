-- Trace detail reads every detail column of the few spans of one trace. In `spans`, ordered by time
-- for the dashboards, that is a trace_index lookup for the time range, then one file per column in
-- each part of that range (~20 ms of a ~27 ms read, most of it per-column overhead, not bytes).
-- trace_spans holds the same columns ordered by trace, in compact parts (all columns in one file):
-- a trace is one primary-key range, in the one part the bloom filter on trace_id keeps: ~6-10 ms.
-- Fed from `spans` by a view, so every writer (the sink, its fallback, backfills) fills it; the copy
-- costs ~3 µs per inserted span. Inline payloads are stored twice; large ones live in the blob store
-- and are referenced from both.
--
-- The columns are those of `spans` (CREATE … AS), in the same order: the view and the back-fill copy
-- `*`. A column added to `spans` later is added here too; until then the view leaves it out.
CREATE TABLE IF NOT EXISTS trace_spans AS spans
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toMonday(start_time)
ORDER BY (project_id, trace_id, span_id)
TTL toDateTime(start_time) + INTERVAL 400 DAY
SETTINGS ttl_only_drop_parts = 1, index_granularity = 1024, prewarm_mark_cache = 1,
         min_bytes_for_wide_part = 1000000000000000, min_rows_for_wide_part = 1000000000000;

-- spans' session and user filters are never asked of a single trace
ALTER TABLE trace_spans DROP INDEX IF EXISTS idx_session_id, DROP INDEX IF EXISTS idx_user_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS trace_spans_mv TO trace_spans AS
SELECT * FROM spans;

-- Spans stored before this migration (the view only sees new inserts). A span the sink writes while
-- this runs may be copied twice; ReplacingMergeTree and the detail read's own version pick collapse it.
INSERT INTO trace_spans SELECT * FROM spans
