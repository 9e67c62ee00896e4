-- Per-minute metrics by user: what "cost by user per day" dashboards read. metrics_1m has no user_id
-- (it would multiply its rows by the number of users), and scanning spans FINAL for a month of a
-- large project takes ~0.5 s; this table holds one row per (project, minute, user) with traffic.
-- Same measures as metrics_1m, so counts, sums and means by user are exact.
CREATE TABLE IF NOT EXISTS metrics_user_1m
(
    project_id    LowCardinality(String),
    minute        DateTime('UTC') CODEC(Delta, ZSTD(1)),
    user_id       String CODEC(ZSTD(1)),
    requests      SimpleAggregateFunction(sum, UInt64),
    errors        SimpleAggregateFunction(sum, UInt64),
    cost          SimpleAggregateFunction(sum, Float64),
    input_tokens  SimpleAggregateFunction(sum, UInt64),
    output_tokens SimpleAggregateFunction(sum, UInt64),
    duration_sum  SimpleAggregateFunction(sum, Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (project_id, minute, user_id)
TTL minute + INTERVAL 400 DAY;

-- Spans stored before this migration, then the view for new ones. Re-running after a failure
-- starts over (TRUNCATE) and recomputes everything from spans, so it never double counts. A span
-- inserted between the back-fill and the view's creation would be missed: run `evalforge migrate`
-- before starting upgraded processors (`evalforge up` migrates before it starts its own).
TRUNCATE TABLE metrics_user_1m;

INSERT INTO metrics_user_1m
SELECT project_id, toStartOfMinute(start_time) AS minute, user_id, count(), countIf(status = 'error'),
       sum(ifNull(cost, 0)), sum(toUInt64(input_tokens)), sum(toUInt64(output_tokens)), sum(duration_ms)
FROM spans FINAL
GROUP BY project_id, minute, user_id;

CREATE MATERIALIZED VIEW IF NOT EXISTS metrics_user_1m_mv TO metrics_user_1m AS
SELECT
    project_id,
    toStartOfMinute(start_time) AS minute,
    user_id,
    count() AS requests,
    countIf(status = 'error') AS errors,
    sum(ifNull(cost, 0)) AS cost,
    sum(toUInt64(input_tokens)) AS input_tokens,
    sum(toUInt64(output_tokens)) AS output_tokens,
    sum(duration_ms) AS duration_sum
FROM spans
GROUP BY project_id, minute, user_id;
