-- Datasets of test cases (synthetic or curated) per project.
CREATE TABLE IF NOT EXISTS datasets (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    source      TEXT NOT NULL DEFAULT 'synthetic',
    prompt      JSONB NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (project_id, name)
);

CREATE TABLE IF NOT EXISTS dataset_items (
    dataset_id  TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    input       JSONB NOT NULL,
    expected    TEXT,
    tags        TEXT[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (dataset_id, position)
);
