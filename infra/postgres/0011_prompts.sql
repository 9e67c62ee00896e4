-- Prompt management: a prompt is a name in a project; its versions are immutable and numbered 1, 2, ...
-- per name; a label (production, staging, custom) points at exactly one version of its prompt.
-- `latest` is not stored: it is always prompts.latest_version.
CREATE TABLE IF NOT EXISTS prompts (
    project_id      TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    latest_version  INTEGER NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, name)
);

CREATE TABLE IF NOT EXISTS prompt_versions (
    project_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version >= 1),
    type        TEXT NOT NULL CHECK (type IN ('text', 'chat')),
    prompt      JSONB NOT NULL,                  -- a JSON string (text) or an array of messages (chat)
    config      JSONB NOT NULL DEFAULT '{}',     -- model, temperature, ... as the author saved them
    tags        TEXT[] NOT NULL DEFAULT '{}',
    message     TEXT NOT NULL DEFAULT '',        -- the commit message
    author      TEXT,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (project_id, name, version),
    FOREIGN KEY (project_id, name) REFERENCES prompts (project_id, name) ON DELETE CASCADE
);

-- The primary key is the "one version per label per prompt" rule: moving a label is one upsert.
CREATE TABLE IF NOT EXISTS prompt_labels (
    project_id  TEXT NOT NULL,
    name        TEXT NOT NULL,
    label       TEXT NOT NULL CHECK (label <> 'latest'),
    version     INTEGER NOT NULL,
    moved_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    moved_by    TEXT,
    PRIMARY KEY (project_id, name, label),
    FOREIGN KEY (project_id, name, version) REFERENCES prompt_versions (project_id, name, version) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS prompt_labels_by_version ON prompt_labels (project_id, name, version);
