"""``evalforge eval-rules add|list|delete``: eval rules from the command line (same checks as the API)."""

from __future__ import annotations

import argparse
import json
import uuid
from typing import Any

from psycopg.types.json import Jsonb

from core.auth import ensure_project
from evaluators.registry import validate_rule_config
from evaluators.rules import FILTER_FIELDS


def add_parser(sub) -> None:
    rules = sub.add_parser("eval-rules", help="evaluation rules of a project")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True)
    add = rules_sub.add_parser("add", help="add a rule")
    add.add_argument("--project", required=True)
    add.add_argument("--name", required=True)
    add.add_argument("--evaluator", required=True, help="e.g. contains, regex, json_valid, pii, llm_judge")
    add.add_argument("--config", default="{}", help="evaluator config as JSON")
    add.add_argument("--filter", default="{}", help='which spans, as JSON, e.g. {"model": "gpt-4o"}')
    add.add_argument("--sampling-rate", type=float, default=1.0)
    lst = rules_sub.add_parser("list", help="list rules")
    lst.add_argument("--project", required=True)
    rm = rules_sub.add_parser("delete", help="delete a rule")
    rm.add_argument("rule_id")
    for p in (add, lst, rm):
        p.add_argument("--data-dir")


def run(args: argparse.Namespace, with_postgres, egress: Any = None) -> int:
    """Execute the sub-command; ``with_postgres(fn)`` runs ``fn(conn)`` on the configured PostgreSQL."""
    if args.rules_command == "add":
        try:
            config, rule_filter = json.loads(args.config), json.loads(args.filter)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"evalforge: error: --config/--filter: invalid JSON: {exc}") from None
        unknown = set(rule_filter) - {*FILTER_FIELDS, "tag", "root_only"}
        if unknown:
            raise SystemExit(f"evalforge: error: --filter: unknown keys {sorted(unknown)}")
        if not 0.0 <= args.sampling_rate <= 1.0:
            raise SystemExit("evalforge: error: --sampling-rate: must be between 0 and 1")
        try:
            validate_rule_config(args.evaluator, config, egress)
        except ValueError as exc:
            raise SystemExit(f"evalforge: error: {exc}") from None

        def insert(conn) -> str:
            project = ensure_project(conn, args.project)
            rule_id = uuid.uuid4().hex
            conn.execute("INSERT INTO eval_rules (id, project_id, name, evaluator, config, filter, sampling_rate) "
                         "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (rule_id, project.id, args.name, args.evaluator, Jsonb(config), Jsonb(rule_filter), args.sampling_rate))
            return rule_id

        print(with_postgres(insert))
        return 0
    if args.rules_command == "list":
        def select(conn) -> list:
            return conn.execute("SELECT r.id, r.name, r.evaluator, r.config, r.filter, r.sampling_rate, r.enabled "
                                "FROM eval_rules r JOIN projects p ON p.id = r.project_id WHERE p.name = %s "
                                "ORDER BY r.created_at", (args.project,)).fetchall()

        for rule_id, name, evaluator, config, rule_filter, rate, enabled in with_postgres(select):
            print(json.dumps({"id": rule_id, "name": name, "evaluator": evaluator, "config": config,
                              "filter": rule_filter, "sampling_rate": rate, "enabled": enabled}))
        return 0
    deleted = with_postgres(lambda conn: conn.execute("DELETE FROM eval_rules WHERE id = %s", (args.rule_id,)).rowcount)
    print("deleted" if deleted else "no such rule")
    return 0 if deleted else 1
