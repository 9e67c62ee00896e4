-- One model call recorded twice (a provider SDK's own span plus an instrumentor's) counts once:
-- ingest marks every extra record of a call with the attribute evalforge.duplicate_of (see
-- ingest/duplicates.py), and `counted` is 0 for those rows, 1 for every other row. Computed from the
-- row itself at insert (MATERIALIZED), so no writer lists it and materialized views reading `spans`
-- see it. Every aggregate of requests, tokens, cost or latency multiplies by it (or filters
-- counted = 1); both spans stay visible in the trace.
ALTER TABLE spans ADD COLUMN IF NOT EXISTS counted UInt8 MATERIALIZED attributes['evalforge.duplicate_of'] = ''
