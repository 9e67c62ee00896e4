-- Scores: evaluator results and human feedback. One row per score_id; re-sent scores collapse.
CREATE TABLE IF NOT EXISTS scores
(
    project_id   LowCardinality(String),
    score_id     String,
    trace_id     String CODEC(ZSTD(1)),
    span_id      String CODEC(ZSTD(1)),
    name         LowCardinality(String),
    data_type    LowCardinality(String),  -- numeric | categorical | boolean
    value        Nullable(Float64),       -- numeric value; 1/0 for boolean
    string_value String CODEC(ZSTD(1)),   -- categorical value
    comment      String CODEC(ZSTD(3)),
    source       LowCardinality(String),  -- api | human | evaluator | sdk
    evaluator    LowCardinality(String),
    evaluator_version LowCardinality(String),
    timestamp    DateTime64(3, 'UTC') CODEC(Delta, ZSTD(1)),
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.001) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(timestamp)
PARTITION BY toYYYYMM(timestamp)
ORDER BY (project_id, name, score_id)
TTL toDateTime(timestamp) + INTERVAL 400 DAY
SETTINGS ttl_only_drop_parts = 1, non_replicated_deduplication_window = 1000;
