-- Trace detail reads every detail column of the few spans of one trace. In `spans`, ordered by time
-- for the dashboards, that is a trace_index lookup for the time range, then one file per column in
-- each part of that range (~20 ms of a ~27 ms read, most of it per-column overhead, not bytes).
-- trace_spans holds the same columns ordered by trace, in compact parts (all columns in one file):
-- a trace is one primary-key range, in the one part the bloom filter keeps: ~6-10 ms. Fed from `spans` by a view, so every writer
-- (the sink, its fallback, backfills) fills it; the copy costs ~3 µs per inserted span. Inline
-- payloads are stored twice; large ones live in the blob store and are referenced from both.
CREATE TABLE IF NOT EXISTS trace_spans
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
    -- the key range of a trace id is one granule in every part; this skips the parts without it
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 1
)
ENGINE = ReplacingMergeTree(ingested_at)
PARTITION BY toMonday(start_time)
ORDER BY (project_id, trace_id, span_id)
TTL toDateTime(start_time) + INTERVAL 400 DAY
SETTINGS ttl_only_drop_parts = 1, index_granularity = 1024, prewarm_mark_cache = 1,
         min_bytes_for_wide_part = 1000000000000000, min_rows_for_wide_part = 1000000000000;

CREATE MATERIALIZED VIEW IF NOT EXISTS trace_spans_mv TO trace_spans AS
SELECT project_id, trace_id, span_id, parent_span_id, name, kind, service_name, start_time, end_time,
       duration_ms, status, status_message, error_type, error_class, operation, provider, request_model,
       model, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, reasoning_tokens,
       total_tokens, tokens_estimated, cost, cost_source, ttft_ms, tokens_per_second, session_id, user_id,
       environment, release, tags, prompt_name, prompt_version, input, output, input_preview,
       output_preview, input_ref, output_ref, attributes, events, ingested_at
FROM spans;

-- Spans stored before this migration (the view only sees new inserts). A span the sink writes while
-- this runs may be copied twice; ReplacingMergeTree and the detail read's own version pick collapse it.
INSERT INTO trace_spans
SELECT project_id, trace_id, span_id, parent_span_id, name, kind, service_name, start_time, end_time,
       duration_ms, status, status_message, error_type, error_class, operation, provider, request_model,
       model, input_tokens, output_tokens, cache_read_tokens, cache_creation_tokens, reasoning_tokens,
       total_tokens, tokens_estimated, cost, cost_source, ttft_ms, tokens_per_second, session_id, user_id,
       environment, release, tags, prompt_name, prompt_version, input, output, input_preview,
       output_preview, input_ref, output_ref, attributes, events, ingested_at
FROM spans
