-- Experiments: a pinned dataset version (or a benchmark draw) x a target x evaluators x repetitions.
CREATE TABLE IF NOT EXISTS experiments (
    id              TEXT PRIMARY KEY,
    project_id      TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    kind            TEXT NOT NULL,               -- server | client
    dataset_id      TEXT REFERENCES datasets(id) ON DELETE SET NULL,
    dataset_version INTEGER,
    benchmark       JSONB,                       -- {name, limit, seed, subset} when run on a benchmark
    split           TEXT,
    target          JSONB NOT NULL DEFAULT '{}',
    evaluators      JSONB NOT NULL DEFAULT '[]',
    repetitions     INTEGER NOT NULL DEFAULT 1,
    max_concurrency INTEGER NOT NULL DEFAULT 16,
    status          TEXT NOT NULL,               -- queued | running | completed | cancelled | failed
    total           INTEGER NOT NULL DEFAULT 0,  -- items x repetitions
    error           TEXT NOT NULL DEFAULT '',
    metadata        JSONB NOT NULL DEFAULT '{}',
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at      TIMESTAMPTZ,
    finished_at     TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS experiments_by_project ON experiments (project_id, created_at DESC);

-- One row per (item, repetition): the unique key is what makes a resumed or redelivered run count
-- every item exactly once.
CREATE TABLE IF NOT EXISTS experiment_results (
    experiment_id   TEXT NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    item_id         TEXT NOT NULL,
    repetition      INTEGER NOT NULL,
    position        INTEGER NOT NULL DEFAULT 0,
    input           JSONB,
    expected_output JSONB,
    output          JSONB,
    scores          JSONB NOT NULL DEFAULT '[]', -- [{name, value, passed, reason}]
    latency_ms      DOUBLE PRECISION,
    input_tokens    INTEGER NOT NULL DEFAULT 0,
    output_tokens   INTEGER NOT NULL DEFAULT 0,
    cost            DOUBLE PRECISION,
    error           TEXT,
    trace_id        TEXT,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_id, item_id, repetition)
);
