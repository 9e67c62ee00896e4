-- Pairwise LLM-judge verdicts between two experiment runs on the same item: the leaderboard's
-- Bradley–Terry ratings use them when present. The pair is stored in a canonical order
-- (experiment_a < experiment_b), so one (pair, item, judge) has one verdict however it was asked.
CREATE TABLE IF NOT EXISTS pairwise_verdicts (
    project_id    TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
    experiment_a  TEXT NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    experiment_b  TEXT NOT NULL REFERENCES experiments(id) ON DELETE CASCADE,
    item_id       TEXT NOT NULL,
    judge         TEXT NOT NULL,              -- provider/model of the judge
    winner        TEXT NOT NULL CHECK (winner IN ('a', 'b', 'tie')),
    first_pick    TEXT NOT NULL,              -- the pick with a's output shown first: a | b | tie
    second_pick   TEXT NOT NULL,              -- the pick with b's output shown first
    reasoning     TEXT NOT NULL DEFAULT '',
    trace_id      TEXT NOT NULL,              -- the trace holding both judge calls
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (experiment_a, experiment_b, item_id, judge),
    CHECK (experiment_a < experiment_b)
);
CREATE INDEX IF NOT EXISTS pairwise_verdicts_by_project ON pairwise_verdicts (project_id, experiment_a);
CREATE INDEX IF NOT EXISTS pairwise_verdicts_by_b ON pairwise_verdicts (experiment_b);
