"""``evalforge leaderboard --dataset D | --benchmark NAME``: the ranked table from ``GET /api/v1/leaderboards``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from evaluators.experiments_cli import Api, CliError, _api_key


def add_parser(sub) -> None:
    p = sub.add_parser("leaderboard", help="models / agents ranked on a dataset or benchmark")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="dataset id or name")
    src.add_argument("--benchmark", help="e.g. mmlu, gsm8k, humaneval")
    p.add_argument("--score", help="score to rank by (default: the one most entries have)")
    p.add_argument("--json", action="store_true", help="print the whole leaderboard as JSON")
    p.add_argument("--endpoint", help="EvalForge URL (default http://EVALFORGE_HOST:EVALFORGE_PORT)")
    p.add_argument("--api-key", help="default: EVALFORGE_API_KEY, else <data dir>/credentials")
    p.add_argument("--data-dir", type=Path)


def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def run(args: argparse.Namespace, settings) -> int:
    try:
        api = Api(args.endpoint or settings.resolved_public_url, _api_key(args, settings))
        params: dict[str, Any] = {"score": args.score} if args.score else {}
        if args.dataset:
            dataset_id = api.dataset_id(args.dataset)
            if dataset_id is None:
                raise CliError(f"--dataset: no dataset {args.dataset!r} in this project")
            params["dataset_id"] = dataset_id
        else:
            params["benchmark"] = args.benchmark
        board = api("GET", "/api/v1/leaderboards", params=params).json()
    except CliError as exc:
        print(f"evalforge: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(board, indent=2))
        return 0
    print(f"score: {board['score'] or '-'}")
    print(f"{'#':>3}  {'entry':<36} {'mean':>7} {'95% CI':>17} {'n':>6} {'$/1k items':>11} {'p50 ms':>9}")
    for e in board["entries"]:
        ci = f"[{_fmt(e['ci_low'], '.3f')}, {_fmt(e['ci_high'], '.3f')}]"
        print(f"{e['rank']:>3}  {e['entry'][:36]:<36} {_fmt(e['mean'], '.3f'):>7} {ci:>17} {e['n']:>6} "
              f"{_fmt(e['cost_per_1000_items'], '.4f'):>11} {_fmt(e['latency_p50_ms'], '.1f'):>9}")
    if board["bradley_terry"]:
        source = {"judge": f"pairwise verdicts of {board.get('bradley_terry_judge')}",
                  "judge+scores": f"pairwise verdicts of {board.get('bradley_terry_judge')}; per-item outcomes for the "
                                  "pairs it did not judge"}.get(board.get("bradley_terry_source") or "", "per-item pairwise outcomes")
        print(f"\nBradley-Terry ({source})")
        for b in board["bradley_terry"]:
            print(f"     {b['entry'][:36]:<36} Elo {b['elo']:7.1f} [{b['elo_ci_low']:.1f}, {b['elo_ci_high']:.1f}]"
                  f"  {b['wins']:g}/{b['comparisons']} wins")
    return 0
