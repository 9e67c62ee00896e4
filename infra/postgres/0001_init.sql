CREATE TABLE IF NOT EXISTS projects (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- API keys are stored as SHA-256 of the secret; only a short prefix is kept in clear to identify them.
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    key_hash    TEXT NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at  TIMESTAMPTZ
);

CREATE TABLE IF NOT EXISTS model_prices (
    project_id  TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    provider    TEXT NOT NULL,
    model_pattern TEXT NOT NULL,
    prices      JSONB NOT NULL,
    PRIMARY KEY (project_id, provider, model_pattern)
);

CREATE TABLE IF NOT EXISTS eval_rules (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    filter       JSONB NOT NULL DEFAULT '{}',
    evaluator    TEXT NOT NULL,
    config       JSONB NOT NULL DEFAULT '{}',
    sampling_rate DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS alert_rules (
    id           TEXT PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    metric       TEXT NOT NULL,
    aggregation  TEXT NOT NULL DEFAULT 'avg',
    comparator   TEXT NOT NULL DEFAULT '>',
    threshold    DOUBLE PRECISION NOT NULL,
    window_seconds INTEGER NOT NULL DEFAULT 300,
    min_samples  INTEGER NOT NULL DEFAULT 1,
    group_by     TEXT,
    filter       JSONB NOT NULL DEFAULT '{}',
    cooldown_seconds INTEGER NOT NULL DEFAULT 900,
    slack_webhook_url TEXT,
    enabled      BOOLEAN NOT NULL DEFAULT TRUE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
