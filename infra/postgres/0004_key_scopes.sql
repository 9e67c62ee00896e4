-- What a key may do: 'full' (read, admin and send) or 'ingest' (send spans and scores only: the key
-- to embed in applications, which cannot read a project's traces or manage its keys and rules).
ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS scope TEXT NOT NULL DEFAULT 'full';
ALTER TABLE api_keys DROP CONSTRAINT IF EXISTS api_keys_scope_check;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_scope_check CHECK (scope IN ('full', 'ingest'));
