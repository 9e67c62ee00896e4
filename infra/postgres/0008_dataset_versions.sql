-- Datasets grow versions, splits, schemas and provenance. An item row is immutable: it belongs to the
-- versions [version_from, version_to); a change closes rows and opens new ones at the next version,
-- so any earlier version reads back exactly as it was (experiments pin the version they ran on).
ALTER TABLE datasets ADD COLUMN IF NOT EXISTS description TEXT NOT NULL DEFAULT '';
ALTER TABLE datasets ADD COLUMN IF NOT EXISTS version INTEGER NOT NULL DEFAULT 1;
ALTER TABLE datasets ADD COLUMN IF NOT EXISTS input_schema JSONB;
ALTER TABLE datasets ADD COLUMN IF NOT EXISTS expected_output_schema JSONB;
ALTER TABLE datasets ADD COLUMN IF NOT EXISTS updated_at TIMESTAMPTZ NOT NULL DEFAULT now();

CREATE TABLE IF NOT EXISTS dataset_versions (
    dataset_id  TEXT NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL,
    change      TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset_id, version)
);
INSERT INTO dataset_versions (dataset_id, version, change, created_at)
SELECT id, 1, 'created', created_at FROM datasets ON CONFLICT DO NOTHING;

ALTER TABLE dataset_items DROP CONSTRAINT IF EXISTS dataset_items_pkey;
ALTER TABLE dataset_items ADD COLUMN IF NOT EXISTS item_id TEXT;
UPDATE dataset_items SET item_id = md5(dataset_id || ':' || position) WHERE item_id IS NULL;
ALTER TABLE dataset_items ALTER COLUMN item_id SET NOT NULL;
ALTER TABLE dataset_items ADD COLUMN IF NOT EXISTS expected_output JSONB;
UPDATE dataset_items SET expected_output = to_jsonb(expected) WHERE expected IS NOT NULL AND expected_output IS NULL;
ALTER TABLE dataset_items DROP COLUMN IF EXISTS expected;
ALTER TABLE dataset_items ADD COLUMN IF NOT EXISTS metadata JSONB NOT NULL DEFAULT '{}';
ALTER TABLE dataset_items ADD COLUMN IF NOT EXISTS split TEXT;
ALTER TABLE dataset_items ADD COLUMN IF NOT EXISTS source_trace_id TEXT;
ALTER TABLE dataset_items ADD COLUMN IF NOT EXISTS source_span_id TEXT;
ALTER TABLE dataset_items ADD COLUMN IF NOT EXISTS version_from INTEGER NOT NULL DEFAULT 1;
ALTER TABLE dataset_items ADD COLUMN IF NOT EXISTS version_to INTEGER;
ALTER TABLE dataset_items ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE dataset_items ADD PRIMARY KEY (dataset_id, item_id, version_from);
CREATE INDEX IF NOT EXISTS dataset_items_by_version ON dataset_items (dataset_id, version_from, position);
