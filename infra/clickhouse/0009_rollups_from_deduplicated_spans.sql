-- Rollups computed from the deduplicated spans instead of views summing every insert (see
-- core/rollups.py for why that is exact and the views were not). This replaces the views' tables and
-- the sink's restart bookkeeping, which nothing needs any more: a batch written twice is collapsed by
-- FINAL wherever it is read.
DROP VIEW IF EXISTS metrics_1m_mv;
DROP VIEW IF EXISTS metrics_user_1m_mv;
DROP VIEW IF EXISTS sink_progress_spans_mv;
DROP TABLE IF EXISTS metrics_1m;
DROP TABLE IF EXISTS metrics_user_1m;
DROP TABLE IF EXISTS sink_progress;
DROP TABLE IF EXISTS sink_handover;

-- What the rollups need of each span, ordered by (project, minute): a minute is one key range.
-- Same version column as spans, so FINAL keeps the same copy of a span as spans FINAL does.
CREATE TABLE IF NOT EXISTS rollup_spans
(
    project_id    LowCardinality(String),
    minute        DateTime('UTC') CODEC(Delta, ZSTD(1)),
    model         LowCardinality(String),
    trace_id      String CODEC(ZSTD(1)),
    span_id       String CODEC(ZSTD(1)),
    provider      LowCardinality(String),
    name          LowCardinality(String),
    status        LowCardinality(String),
    environment   LowCardinality(String),
    release       LowCardinality(String),
    user_id       String CODEC(ZSTD(1)),
    cost          Nullable(Float64),
    input_tokens  UInt32,
    output_tokens UInt32,
    duration_ms   Float64,
    ingested_at   DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1))
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toDate(minute)
ORDER BY (project_id, minute, model, trace_id, span_id)
TTL minute + INTERVAL 400 DAY
SETTINGS ttl_only_drop_parts = 1;

CREATE MATERIALIZED VIEW IF NOT EXISTS rollup_spans_mv TO rollup_spans AS
SELECT project_id, toStartOfMinute(start_time) AS minute, model, trace_id, span_id, provider, name, status,
       environment, release, user_id, cost, input_tokens, output_tokens, duration_ms, ingested_at
FROM spans;

-- Spans stored before this migration (a span written while this runs may be copied twice: FINAL
-- collapses it).
INSERT INTO rollup_spans
SELECT project_id, toStartOfMinute(start_time) AS minute, model, trace_id, span_id, provider, name, status,
       environment, release, user_id, cost, input_tokens, output_tokens, duration_ms, ingested_at
FROM spans;

-- Per (project, minute): when an insert holding its spans last finished (marked) and the version of
-- its latest rollup (rolled), in server clock ticks (microseconds x 4096). rolled > marked: the
-- rollup rows of that version are exact.
CREATE TABLE IF NOT EXISTS rollup_minutes
(
    project_id LowCardinality(String),
    minute     DateTime('UTC'),
    marked     SimpleAggregateFunction(max, UInt64) DEFAULT toUnixTimestamp64Micro(now64(6)) * 4096 + 4095,
    rolled     SimpleAggregateFunction(max, UInt64) DEFAULT 0
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (project_id, minute)
TTL minute + INTERVAL 400 DAY;

-- every minute stored so far is to be rolled
INSERT INTO rollup_minutes (project_id, minute)
SELECT DISTINCT project_id, toStartOfMinute(start_time) FROM spans;

-- One row per (project, minute, group, version): each rollup of a minute writes all its groups under
-- a new version, and readers take the version rollup_minutes says is current. Plain MergeTree: a
-- merge must never drop the current version's row for a newer one whose roll has not finished.
CREATE TABLE IF NOT EXISTS metrics_1m
(
    project_id    LowCardinality(String),
    minute        DateTime('UTC') CODEC(Delta, ZSTD(1)),
    model         LowCardinality(String),
    provider      LowCardinality(String),
    name          LowCardinality(String),
    status        LowCardinality(String),
    environment   LowCardinality(String),
    release       LowCardinality(String),
    version       UInt64,
    requests      UInt64,
    errors        UInt64,
    cost          Float64,
    input_tokens  UInt64,
    output_tokens UInt64,
    duration_sum  Float64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (project_id, minute, version, model, provider, name, status, environment, release)
TTL minute + INTERVAL 400 DAY;

CREATE TABLE IF NOT EXISTS metrics_user_1m
(
    project_id    LowCardinality(String),
    minute        DateTime('UTC') CODEC(Delta, ZSTD(1)),
    user_id       String CODEC(ZSTD(1)),
    version       UInt64,
    requests      UInt64,
    errors        UInt64,
    cost          Float64,
    input_tokens  UInt64,
    output_tokens UInt64,
    duration_sum  Float64
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (project_id, minute, version, user_id)
TTL minute + INTERVAL 400 DAY
