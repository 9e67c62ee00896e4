"""Score rows land in the real ClickHouse scores table (chDB); the registry builds rules by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evaluators import Score, evaluator_names, get_evaluator, validate_config

from .conftest import make_span

SCORES_DDL = Path(__file__).parents[2] / "infra" / "clickhouse" / "0002_scores.sql"


def ddl_columns() -> list[str]:
    body = SCORES_DDL.read_text().split("(", 1)[1]
    return [m.group(1) for m in re.finditer(r"^\s{4}(\w+)\s+(?!TYPE)[A-Z]", body, re.MULTILINE) if m.group(1) != "INDEX"]


def test_row_has_exactly_the_scores_columns():
    row = Score("q", 0.5, evaluator="e", evaluator_version="1").to_row("p", "t" * 32, "s" * 16)
    assert list(row) == ddl_columns()


@pytest.mark.parametrize(
    "value, data_type, stored, string_value",
    [(True, "boolean", 1.0, "true"), (False, "boolean", 0.0, "false"), ("good", "categorical", None, "good"),
     (4, "numeric", 4.0, ""), (0.25, "numeric", 0.25, "")],
)
def test_value_encoding(value, data_type, stored, string_value):
    row = Score("q", value, reason="because").to_row("p", "t", "s")
    assert (row["data_type"], row["value"], row["string_value"]) == (data_type, stored, string_value)
    assert row["source"] == "evaluator" and row["comment"] == "because"


def test_rows_insert_into_clickhouse_and_rescoring_replaces(clickhouse):
    project = "proj-scores-test"
    span = make_span("Paris", attributes={"evalforge.metadata.expected": "Paris"})
    rows = []
    for name, config in [("exact_match", {}), ("pii", {}), ("length", {"max": 3})]:
        for score in get_evaluator(name, config).evaluate(span):
            rows.append(score.to_row(project, span["trace_id"], span["span_id"]))
    rows.append(Score("tone", "friendly", evaluator="manual").to_row(project, span["trace_id"], span["span_id"]))
    # The same evaluation sent again (at-least-once delivery) must collapse to one row per score.
    rows.append(get_evaluator("exact_match", {}).evaluate(span)[0].to_row(project, span["trace_id"], span["span_id"]))
    columns = list(rows[0])
    clickhouse.insert("scores", [[r[c] for c in columns] for r in rows], column_names=columns)
    result = clickhouse.query(
        "SELECT name, data_type, value, string_value, source FROM scores FINAL "
        "WHERE project_id = %(p)s ORDER BY name", parameters={"p": project}
    ).result_rows
    assert result == [
        ("exact_match", "boolean", 1.0, "true", "evaluator"),
        ("length", "boolean", 1.0, "true", "evaluator"),
        ("pii", "boolean", 0.0, "false", "evaluator"),
        ("tone", "categorical", None, "friendly", "evaluator"),
    ]


def test_registry_knows_every_evaluator():
    assert {"exact_match", "contains", "regex", "json_valid", "json_schema", "length", "refusal", "pii",
            "latency_budget", "cost_budget", "semantic_similarity", "llm_judge"} <= set(evaluator_names())


def test_config_may_be_json_text_as_stored_in_postgres():
    ev = get_evaluator("length", '{"max": 2, "unit": "words", "score_name": "short"}')
    score = ev.evaluate(make_span("one two three"))[0]
    assert (score.name, score.value, score.evaluator) == ("short", False, "length")


@pytest.mark.parametrize(
    "name, config, message",
    [
        ("nope", {}, r"^evaluator: unknown evaluator 'nope'"),
        ("length", {}, r"config\.\(root\).*set min and/or max"),
        ("length", {"max": -1}, r"config\.max"),
        ("length", {"max": 3, "maximum": 4}, r"config\.maximum: Extra inputs"),
        ("regex", {"pattern": "("}, r"config\.pattern: .*invalid regular expression"),
        ("latency_budget", {}, r"config\.max_ms: Field required"),
        ("cost_budget", {"max_usd": "lots"}, r"config\.max_usd"),
        ("llm_judge", {"rubric": "vibes"}, r"rubric: unknown rubric 'vibes'"),
        ("llm_judge", {"rubric": "custom"}, r"criteria: a custom rubric needs"),
        ("llm_judge", {"provider": "gemini"}, r"config\.provider"),
        ("length", "{not json", r"^config: not valid JSON"),
        ("length", "[1]", r"^config: must be a JSON object"),
    ],
)
def test_bad_rules_raise_value_error_naming_the_field(name, config, message):
    with pytest.raises(ValueError, match=message):
        validate_config(name, config)
    with pytest.raises(ValueError, match=message):
        get_evaluator(name, config)
