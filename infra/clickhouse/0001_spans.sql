-- Spans: one row per (project_id, trace_id, span_id). Project first in the key (tenant scans stay
-- narrow); ReplacingMergeTree collapses client retries that slipped past the processor's dedup.
CREATE TABLE IF NOT EXISTS spans
(
    project_id            LowCardinality(String),
    trace_id              String CODEC(ZSTD(1)),
    span_id               String CODEC(ZSTD(1)),
    parent_span_id        String CODEC(ZSTD(1)),
    name                  LowCardinality(String),
    kind                  LowCardinality(String),
    service_name          LowCardinality(String),
    start_time            DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    end_time              DateTime64(6, 'UTC') CODEC(Delta, ZSTD(1)),
    duration_ms           Float64 CODEC(ZSTD(1)),
    status                LowCardinality(String),
    status_message        String CODEC(ZSTD(1)),
    error_type            LowCardinality(String),
    error_class           LowCardinality(String),
    operation             LowCardinality(String),
    provider              LowCardinality(String),
    request_model         LowCardinality(String),
    model                 LowCardinality(String),
    input_tokens          UInt32,
    output_tokens         UInt32,
    cache_read_tokens     UInt32,
    cache_creation_tokens UInt32,
    reasoning_tokens      UInt32,
    total_tokens          UInt32,
    tokens_estimated      UInt8,
    cost                  Nullable(Float64),
    cost_source           LowCardinality(String),
    ttft_ms               Nullable(Float64),
    tokens_per_second     Nullable(Float64),
    session_id            String CODEC(ZSTD(1)),
    user_id               String CODEC(ZSTD(1)),
    environment           LowCardinality(String),
    release               LowCardinality(String),
    tags                  Array(LowCardinality(String)),
    prompt_name           LowCardinality(String),
    prompt_version        LowCardinality(String),
    input                 String CODEC(ZSTD(3)),
    output                String CODEC(ZSTD(3)),
    input_preview         String CODEC(ZSTD(3)),
    output_preview        String CODEC(ZSTD(3)),
    input_ref             String CODEC(ZSTD(1)),
    output_ref            String CODEC(ZSTD(1)),
    attributes            Map(LowCardinality(String), String) CODEC(ZSTD(1)),
    events                String CODEC(ZSTD(3)),
    ingested_at           DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    -- where the row came from on the bus: lets a restarted sink skip what it already wrote
    bus_source            LowCardinality(String),  -- e.g. 'kafka:spans.raw', 'redis:spans.raw'
    bus_partition         UInt16,
    bus_offset            UInt64,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1,
    INDEX idx_session_id session_id TYPE bloom_filter(0.01) GRANULARITY 1,
    INDEX idx_user_id user_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toDate(start_time)
ORDER BY (project_id, toStartOfHour(start_time), model, trace_id, span_id)
TTL toDateTime(start_time) + INTERVAL 400 DAY
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;

-- trace_id -> time range, so a trace fetch reads only the partitions/granules it needs.
CREATE TABLE IF NOT EXISTS trace_index
(
    project_id LowCardinality(String),
    trace_id   String,
    start_min  SimpleAggregateFunction(min, DateTime64(6, 'UTC')),
    start_max  SimpleAggregateFunction(max, DateTime64(6, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (project_id, trace_id)
TTL toDateTime(start_max) + INTERVAL 400 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS trace_index_mv TO trace_index AS
SELECT project_id, trace_id, min(start_time) AS start_min, max(start_time) AS start_max
FROM spans GROUP BY project_id, trace_id;

-- Highest bus offset written per partition: the sink's restart point (filled in the same insert).
CREATE TABLE IF NOT EXISTS sink_progress
(
    bus_source    LowCardinality(String),
    bus_partition UInt16,
    max_offset    SimpleAggregateFunction(max, UInt64)
)
ENGINE = AggregatingMergeTree
ORDER BY (bus_source, bus_partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS sink_progress_spans_mv TO sink_progress AS
SELECT bus_source, bus_partition, max(bus_offset) AS max_offset
FROM spans GROUP BY bus_source, bus_partition;

-- Pre-aggregated per-minute metrics for dashboards. The sink never inserts a span twice, so these
-- states count each span once.
CREATE TABLE IF NOT EXISTS metrics_1m
(
    project_id   LowCardinality(String),
    minute       DateTime('UTC') CODEC(Delta, ZSTD(1)),
    model        LowCardinality(String),
    provider     LowCardinality(String),
    name         LowCardinality(String),
    status       LowCardinality(String),
    environment  LowCardinality(String),
    release      LowCardinality(String),
    requests     SimpleAggregateFunction(sum, UInt64),
    errors       SimpleAggregateFunction(sum, UInt64),
    cost         SimpleAggregateFunction(sum, Float64),
    input_tokens SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    duration_sum SimpleAggregateFunction(sum, Float64),
    duration_q   AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64),
    ttft_q       AggregateFunction(quantilesTDigest(0.5, 0.9, 0.95, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (project_id, minute, model, provider, name, status, environment, release)
TTL minute + INTERVAL 400 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_1m_mv TO metrics_1m AS
SELECT
    project_id,
    toStartOfMinute(start_time) AS minute,
    model, provider, name, status, environment, release,
    count() AS requests,
    countIf(status = 'error') AS errors,
    sum(ifNull(cost, 0)) AS cost,
    sum(toUInt64(input_tokens)) AS input_tokens,
    sum(toUInt64(output_tokens)) AS output_tokens,
    sum(duration_ms) AS duration_sum,
    quantilesTDigestState(0.5, 0.9, 0.95, 0.99)(duration_ms) AS duration_q,
    quantilesTDigestStateIf(0.5, 0.9, 0.95, 0.99)(ifNull(ttft_ms, 0), ttft_ms IS NOT NULL) AS ttft_q
FROM spans
GROUP BY project_id, minute, model, provider, name, status, environment, release;
