-- Prompt optimisation jobs (POST /api/v1/prompts/{name}/optimize): one row per job, its request, its
-- progress and candidate history, and the final decision. Workers of `evalforge evaluate` claim queued
-- rows (FOR UPDATE SKIP LOCKED) and hold a session advisory lock while running one, so a row left
-- 'running' by a dead worker is found (its lock is free) and marked failed.
CREATE TABLE IF NOT EXISTS prompt_optimizations (
    id                       TEXT PRIMARY KEY,
    project_id               TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    prompt_name              TEXT NOT NULL,
    base_version             INTEGER NOT NULL,
    dataset_id               TEXT REFERENCES datasets(id) ON DELETE SET NULL,
    dataset_version          INTEGER NOT NULL,
    spec                     JSONB NOT NULL,               -- the request as validated
    status                   TEXT NOT NULL,                -- queued | running | completed | cancelled | failed
    progress                 JSONB NOT NULL DEFAULT '{}',  -- {round, calls, usd, stage}
    history                  JSONB NOT NULL DEFAULT '[]',  -- candidates with their dev scores
    decision                 JSONB,                        -- the holdout test and what was decided
    result_version           INTEGER,                      -- the unlabelled prompt version created, if any
    baseline_experiment_id   TEXT REFERENCES experiments(id) ON DELETE SET NULL,
    candidate_experiment_id  TEXT REFERENCES experiments(id) ON DELETE SET NULL,
    state                    JSONB NOT NULL DEFAULT '{}',  -- what a resumed run starts from
    attempts                 INTEGER NOT NULL DEFAULT 0,   -- runs started (a resumed job counts again)
    error                    TEXT NOT NULL DEFAULT '',
    created_at               TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at               TIMESTAMPTZ,
    finished_at              TIMESTAMPTZ,
    updated_at               TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS prompt_optimizations_by_prompt ON prompt_optimizations (project_id, prompt_name, created_at DESC);
CREATE INDEX IF NOT EXISTS prompt_optimizations_open ON prompt_optimizations (status, created_at)
    WHERE status IN ('queued', 'running');
