-- A project's own models for the registry (POST /api/v1/models): a model the shipped catalogue
-- (core/models.json) does not list, or the fields of a shipped one the project sees differently
-- (a fine-tune's context window, a capability its deployment lacks). spec holds the fields of a
-- catalogue entry other than provider and name; prices stay in model_prices.
CREATE TABLE IF NOT EXISTS project_models (
    project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    provider   TEXT NOT NULL,
    name       TEXT NOT NULL,
    spec       JSONB NOT NULL DEFAULT '{}',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, provider, name)
);
