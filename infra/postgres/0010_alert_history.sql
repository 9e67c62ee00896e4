-- Alert rules: mute, firing history, current state.
-- A rule is muted while muted_at is set and muted_until is NULL (until unmuted) or in the future: it is
-- still evaluated (state and history stay true) but sends no notification.
ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS muted_at TIMESTAMPTZ;
ALTER TABLE alert_rules ADD COLUMN IF NOT EXISTS muted_until TIMESTAMPTZ;

-- Every state change of a (rule, group): ok -> firing ('firing') and firing -> ok ('resolved'), with what
-- happened to its notification: pending (queued) -> sent | failed | no_webhook | rule_gone; muted
-- (suppressed by a mute); cooldown (a re-firing inside the cooldown, announced later if still firing);
-- not_announced (a resolve of a firing that was never announced).
CREATE TABLE IF NOT EXISTS alert_transitions (
    id           BIGSERIAL PRIMARY KEY,
    project_id   TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    rule_id      TEXT NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
    group_key    TEXT NOT NULL DEFAULT '',
    episode      INTEGER NOT NULL,
    kind         TEXT NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    value        DOUBLE PRECISION,
    threshold    DOUBLE PRECISION NOT NULL,
    comparator   TEXT NOT NULL,
    notification TEXT NOT NULL,
    notified_at  TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS alert_transitions_by_rule ON alert_transitions (rule_id, at DESC, id DESC);

-- The rule's state as of its latest evaluation (written by whichever replica evaluated it last).
CREATE TABLE IF NOT EXISTS alert_rule_status (
    rule_id       TEXT PRIMARY KEY REFERENCES alert_rules(id) ON DELETE CASCADE,
    state         TEXT NOT NULL,              -- ok | firing (muted is the rule's, not the evaluation's)
    since         TIMESTAMPTZ NOT NULL,
    last_value    DOUBLE PRECISION,
    firing_groups INTEGER NOT NULL DEFAULT 0,
    evaluated_at  TIMESTAMPTZ NOT NULL
);
