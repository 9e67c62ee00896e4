-- Every label move of a prompt (set, moved, removed), who did it and when: promoting a version to
-- production is a person's decision (the optimiser only proposes), so it leaves a trail.
CREATE TABLE IF NOT EXISTS prompt_label_events (
    id            BIGSERIAL PRIMARY KEY,
    project_id    TEXT NOT NULL,
    name          TEXT NOT NULL,
    label         TEXT NOT NULL,
    from_version  INTEGER,                       -- NULL: the label was not set before
    to_version    INTEGER,                       -- NULL: the label was removed
    moved_by      TEXT,
    moved_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    FOREIGN KEY (project_id, name) REFERENCES prompts (project_id, name) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS prompt_label_events_by_prompt ON prompt_label_events (project_id, name, id DESC);
