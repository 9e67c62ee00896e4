-- Online A/B tests: variants with traffic weights, the hash-space allocation the SDKs assign from,
-- the metric and guardrails the results judge, and the lifecycle draft -> running -> stopped / completed.
CREATE TABLE IF NOT EXISTS ab_tests (
    id             TEXT PRIMARY KEY,
    project_id     TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    salt           TEXT NOT NULL,               -- hashed with each unit id; fixed for the test's life
    status         TEXT NOT NULL,               -- draft | running | stopped | completed
    variants       JSONB NOT NULL,              -- [{name, weight, model, prompt, config}]
    allocation     JSONB NOT NULL,              -- [[start, end, variant_index]] over [0, 1_000_000)
    unit           TEXT NOT NULL,
    primary_metric JSONB NOT NULL,
    guardrails     JSONB NOT NULL DEFAULT '[]',
    design         JSONB NOT NULL,
    winner         TEXT,
    winner_detail  JSONB,                       -- who declared it, the label moved, the results then
    history        JSONB NOT NULL DEFAULT '[]', -- [{at, action, weights?, moved_share?}]
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at     TIMESTAMPTZ,
    ended_at       TIMESTAMPTZ,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);
CREATE INDEX IF NOT EXISTS ab_tests_by_project ON ab_tests (project_id, created_at DESC);
