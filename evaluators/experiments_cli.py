"""``evalforge datasets import|export|list`` and ``evalforge experiments run|compare``.

These talk to a running EvalForge over its HTTP API (``--endpoint``, ``--api-key``), so the same
commands work against ``evalforge up`` on a laptop and a scaled-out deployment from CI. Exit codes:
0 success, 1 a CI gate failed (``--fail-if``, ``--fail-on-regression``) or the run did not complete,
2 bad arguments or an API error.
"""

from __future__ import annotations

import argparse
import json
import operator
import re
import sys
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import httpx

_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq, "!=": operator.ne}
_GATE = re.compile(r"^\s*([A-Za-z_][\w.:-]*)\s*(<=|>=|==|!=|<|>)\s*(-?[\d.]+(?:e-?\d+)?)\s*$")
SIGNIFICANCE = 0.05


class CliError(Exception):
    """Printed as one line; exit code 2."""


def add_parsers(sub) -> None:
    def api_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--endpoint", help="EvalForge URL (default http://EVALFORGE_HOST:EVALFORGE_PORT)")
        p.add_argument("--api-key", help="default: EVALFORGE_API_KEY, else <data dir>/credentials")
        p.add_argument("--data-dir", type=Path)

    ds = sub.add_parser("datasets", help="datasets: import, export, list")
    ds_sub = ds.add_subparsers(dest="datasets_command", required=True)
    p = ds_sub.add_parser("list", help="list the project's datasets")
    api_args(p)
    p = ds_sub.add_parser("import", help="import a JSONL / CSV / Parquet file (creates the dataset if needed)")
    p.add_argument("file", type=Path)
    p.add_argument("--dataset", required=True, help="dataset id or name")
    p.add_argument("--format", choices=("jsonl", "csv", "parquet"), help="default: from the file name")
    api_args(p)
    p = ds_sub.add_parser("export", help="export a dataset version")
    p.add_argument("--dataset", required=True, help="dataset id or name")
    p.add_argument("--version", type=int)
    p.add_argument("--format", choices=("jsonl", "csv", "parquet"), default="jsonl")
    p.add_argument("--output", type=Path, help="default: standard output")
    api_args(p)

    ex = sub.add_parser("experiments", help="experiments: run, compare")
    ex_sub = ex.add_subparsers(dest="experiments_command", required=True)
    p = ex_sub.add_parser("run", help="run a model over a dataset or benchmark, with a live progress bar")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--dataset", help="dataset id or name")
    src.add_argument("--benchmark", help="e.g. arithmetic, gsm8k, mmlu")
    p.add_argument("--limit", type=int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--subset")
    p.add_argument("--model", required=True)
    p.add_argument("--provider", choices=("openai", "anthropic"), default="openai")
    p.add_argument("--base-url")
    p.add_argument("--prompt", type=Path, help="a JSON list of messages, or text for one user message; "
                                                "{{input.field}} variables")
    p.add_argument("--param", action="append", default=[], metavar="KEY=JSON", help="model parameter, e.g. temperature=0")
    p.add_argument("--evaluator", action="append", default=[], metavar="NAME[=JSON]",
                   help="registry evaluator with optional config, e.g. exact_match or contains='{\"case_sensitive\": false}'")
    p.add_argument("--repetitions", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--name")
    p.add_argument("--fail-if", action="append", default=[], metavar="EXPR",
                   help='exit 1 when true, e.g. "accuracy < 0.8" (score mean), "error_rate > 0", "latency_p95 > 2000"')
    p.add_argument("--baseline", help="experiment id to compare with")
    p.add_argument("--fail-on-regression", action="store_true",
                   help=f"exit 1 when a score is significantly worse than --baseline (p < {SIGNIFICANCE})")
    p.add_argument("--junit", type=Path, help="write a JUnit XML report")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--timeout", type=float, default=3600)
    api_args(p)
    p = ex_sub.add_parser("compare", help="paired comparison of runs on the same items (first = baseline)")
    p.add_argument("experiment_ids", nargs="+")
    p.add_argument("--json", action="store_true", help="print the full comparison as JSON")
    api_args(p)


class Api:
    def __init__(self, endpoint: str, api_key: str) -> None:
        self.http = httpx.Client(base_url=endpoint.rstrip("/"), headers={"Authorization": f"Bearer {api_key}"}, timeout=120)

    def __call__(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise CliError(f"cannot reach {self.http.base_url}: {exc}") from None
        if r.status_code >= 400:
            try:
                detail = r.json().get("error", r.text)
            except ValueError:
                detail = r.text
            raise CliError(f"{method} {path}: HTTP {r.status_code}: {str(detail)[:500]}")
        return r

    def dataset_id(self, ref: str) -> str | None:
        for d in self("GET", "/api/v1/datasets").json()["datasets"]:
            if ref in (d["id"], d["name"]):
                return d["id"]
        return None


def run(args: argparse.Namespace, settings) -> int:
    try:
        api = Api(args.endpoint or settings.resolved_public_url, _api_key(args, settings))
        if args.command == "datasets":
            return {"list": _datasets_list, "import": _datasets_import, "export": _datasets_export}[args.datasets_command](api, args)
        if args.experiments_command == "compare":
            return _compare(api, args)
        return _run(api, args)
    except CliError as exc:
        print(f"evalforge: error: {exc}", file=sys.stderr)
        return 2


def _api_key(args, settings) -> str:
    import os

    if args.api_key or os.environ.get("EVALFORGE_API_KEY"):
        return args.api_key or os.environ["EVALFORGE_API_KEY"]
    cred = (args.data_dir or settings.data_dir) / "credentials"
    if cred.exists():
        return cred.read_text().strip().split("=", 1)[1]
    raise CliError("--api-key: no API key (pass --api-key, set EVALFORGE_API_KEY or use the data dir of 'evalforge up')")


def _datasets_list(api: Api, args) -> int:
    for d in api("GET", "/api/v1/datasets").json()["datasets"]:
        print(f"{d['id']}  {d['name']:<30} v{d['version']:<4} {d['items']:>7} items  {d['source']}")
    return 0


def _datasets_import(api: Api, args) -> int:
    if not args.file.is_file():
        raise CliError(f"file: {args.file} does not exist")
    dataset_id = api.dataset_id(args.dataset) or api("POST", "/api/v1/datasets", json={"name": args.dataset}).json()["id"]
    data = {"format": args.format} if args.format else {}
    out = api("POST", f"/api/v1/datasets/{dataset_id}/import", files={"file": (args.file.name, args.file.read_bytes())},
              data=data).json()
    print(f"imported {out['added']} items into {args.dataset} ({dataset_id}), now version {out['version']}")
    for rej in out["rejected"]:
        print(f"  skipped: {rej['error']}", file=sys.stderr)
    return 0


def _datasets_export(api: Api, args) -> int:
    dataset_id = api.dataset_id(args.dataset)
    if dataset_id is None:
        raise CliError(f"--dataset: no dataset {args.dataset!r}")
    params: dict[str, Any] = {"format": args.format}
    if args.version:
        params["version"] = args.version
    body = api("GET", f"/api/v1/datasets/{dataset_id}/export", params=params).content
    if args.output:
        args.output.write_bytes(body)
    else:
        sys.stdout.buffer.write(body)
    return 0


def _messages(path: Path | None) -> list[dict[str, str]] | None:
    if path is None:
        return None
    text = path.read_text()
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return [{"role": "user", "content": text}]
    if not isinstance(value, list):
        raise CliError("--prompt: a JSON file must hold a list of {role, content} messages")
    return value


def _keyed_json(pairs: list[str], flag: str, default: Any) -> list[tuple[str, Any]]:
    out = []
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        try:
            out.append((key, json.loads(raw) if sep else default))
        except json.JSONDecodeError:
            raise CliError(f"{flag}: {pair!r}: the value after '=' must be JSON") from None
    return out


def _gates(exprs: list[str]) -> list[tuple[str, str, float]]:
    gates = []
    for e in exprs:
        m = _GATE.match(e)
        if not m:
            raise CliError(f"--fail-if: {e!r}: expected '<metric> <op> <number>', e.g. 'accuracy < 0.8'")
        gates.append((m.group(1), m.group(2), float(m.group(3))))
    return gates


def metric_value(summary: dict[str, Any], name: str) -> float | None:
    """A --fail-if metric: a score's mean (``accuracy``), ``<score>.pass_rate``, or a run figure."""
    figures = {"error_rate": summary.get("error_rate"), "latency_p50": summary["latency_ms"]["p50"],
               "latency_p95": summary["latency_ms"]["p95"], "cost": summary["cost"]["total"],
               "cost_per_item": summary["cost"]["per_item"], "tokens": summary["tokens"]["total"]}
    if name in figures:
        return figures[name]
    score, _, field = name.partition(".")
    if score not in summary["scores"]:
        raise CliError(f"--fail-if: no metric {name!r}; scores: {', '.join(summary['scores']) or 'none'}; "
                       f"figures: {', '.join(figures)}")
    return summary["scores"][score].get(field or "mean")


def _run(api: Api, args) -> int:
    gates = _gates(args.fail_if)
    if args.fail_on_regression and not args.baseline:
        raise CliError("--fail-on-regression: needs --baseline RUN")
    target: dict[str, Any] = {"provider": args.provider, "model": args.model, "base_url": args.base_url,
                              "parameters": dict(_keyed_json(args.param, "--param", None))}
    if (messages := _messages(args.prompt)) is not None:
        target["messages"] = messages
    body: dict[str, Any] = {"name": args.name or f"{args.model} on {args.dataset or args.benchmark}", "target": target,
                            "evaluators": [{"evaluator": k, "config": v or {}} for k, v in _keyed_json(args.evaluator, "--evaluator", {})],
                            "repetitions": args.repetitions, "max_concurrency": args.concurrency}
    if args.benchmark:
        body.update(benchmark=args.benchmark, limit=args.limit, seed=args.seed, subset=args.subset)
    else:
        dataset_id = api.dataset_id(args.dataset)
        if dataset_id is None:
            raise CliError(f"--dataset: no dataset {args.dataset!r}")
        body["dataset_id"] = dataset_id
    created = api("POST", "/api/v1/experiments", json=body).json()
    experiment_id = created["id"]
    print(f"experiment {experiment_id}: {created['total']} runs", file=sys.stderr)
    exp = _follow(api, experiment_id, created["total"], args)
    summary = exp["summary"]
    _print_summary(exp)
    failures: list[tuple[str, str]] = []
    if exp["status"] != "completed":
        failures.append(("status", f"experiment ended {exp['status']}: {exp.get('error') or ''}".strip()))
    for name, op, threshold in gates:
        value = metric_value(summary, name)
        if value is None or _OPS[op](value, threshold):
            failures.append((f"{name} {op} {threshold:g}", f"{name} = {value}"))
    regression = None
    if args.baseline:
        regression = api("POST", "/api/v1/experiments/compare", json={"experiment_ids": [args.baseline, experiment_id]}).json()
        for name, m in regression["comparisons"][0]["metrics"].items():
            worse = m["delta"] is not None and m["delta"] < 0
            print(f"vs baseline {name}: delta {m['delta']:+.4f}, p = {m['p_value']:.4g} ({m['test']}), "
                  f"{m['regressed']} items regressed, {m['improved']} improved")
            if args.fail_on_regression and worse and m["p_value"] < SIGNIFICANCE:
                failures.append((f"no regression in {name}", f"{name} fell by {-m['delta']:.4f} (p = {m['p_value']:.4g})"))
    if args.junit:
        items = api("GET", f"/api/v1/experiments/{experiment_id}/items", params={"limit": 10_000}).json()["items"]
        write_junit(args.junit, exp, items, gates, failures)
    for gate, why in failures:
        print(f"FAILED {gate}: {why}", file=sys.stderr)
    return 1 if failures else 0


def _follow(api: Api, experiment_id: str, total: int, args) -> dict[str, Any]:
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="run", dynamic_ncols=True, file=sys.stderr)
    deadline = time.monotonic() + args.timeout
    try:
        while True:
            exp = api("GET", f"/api/v1/experiments/{experiment_id}", params={"ci": "false"}).json()
            if bar is not None:
                bar.update(exp["progress"]["done"] - bar.n)
                scores = exp["summary"]["scores"]
                if scores:
                    bar.set_postfix({k: f"{v['mean']:.3f}" for k, v in list(scores.items())[:3]}, refresh=False)
            if exp["status"] in ("completed", "cancelled", "failed"):
                return api("GET", f"/api/v1/experiments/{experiment_id}").json()  # with the CIs
            if time.monotonic() > deadline:
                raise CliError(f"--timeout: experiment {experiment_id} still {exp['status']} after {args.timeout:g} s")
            time.sleep(0.5)
    finally:
        if bar is not None:
            bar.close()


def _print_summary(exp: dict[str, Any]) -> None:
    s = exp["summary"]
    print(f"{exp['name']}: {exp['status']}, {s['results']} runs over {s['items']} items, error rate {s['error_rate'] or 0:.3f}")
    for name, v in s["scores"].items():
        ci = f"[{v['ci_low']:.3f}, {v['ci_high']:.3f}]" if v["ci_low"] is not None else ""
        rate = f"  pass rate {v['pass_rate']:.3f}" if v["pass_rate"] is not None else ""
        print(f"  {name:<24} {v['mean']:.4f} {ci} n={v['n']}{rate}")
    lat = s["latency_ms"]
    if lat["p50"] is not None:
        print(f"  latency p50 {lat['p50']:.0f} ms, p95 {lat['p95']:.0f} ms; tokens {s['tokens']['total']}; "
              f"cost {s['cost']['total'] if s['cost']['total'] is not None else 'unknown'}")


def _compare(api: Api, args) -> int:
    out = api("POST", "/api/v1/experiments/compare", json={"experiment_ids": args.experiment_ids}).json()
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    for c in out["comparisons"]:
        print(f"{c['experiment']} ({c['name']}) vs baseline {c['baseline']}:")
        for name, m in c["metrics"].items():
            holm = f", Holm p = {m['p_value_holm']:.4g}" if "p_value_holm" in m else ""
            ci = f" [{m['delta_ci_low']:+.4f}, {m['delta_ci_high']:+.4f}]" if m["delta_ci_low"] is not None else ""
            print(f"  {name:<24} delta {m['delta']:+.4f}{ci}  p = {m['p_value']:.4g} ({m['test']}){holm}  "
                  f"improved {m['improved']}, regressed {m['regressed']}, unchanged {m['unchanged']}")
    return 0


def write_junit(path: Path, exp: dict[str, Any], items: list[dict[str, Any]], gates, failures) -> None:
    """One test case per item x repetition (fails on an error or a failed verdict) and one per gate."""
    suite = ET.Element("testsuite", name=f"evalforge experiment {exp['name']}")
    n_fail = n_err = 0
    for r in items:
        case = ET.SubElement(suite, "testcase", classname=f"experiment.{exp['id']}",
                             name=f"item {r['item_id']} rep {r['repetition']}",
                             time=f"{(r.get('latency_ms') or 0) / 1000:.3f}")
        if r.get("error"):
            n_err += 1
            ET.SubElement(case, "error", message=r["error"][:500])
            continue
        failed = [s for s in r.get("scores") or [] if s.get("passed") is False]
        if failed:
            n_fail += 1
            ET.SubElement(case, "failure", message="; ".join(f"{s['name']}: {s.get('reason', '')}" for s in failed)[:1000])
    failed_gates = dict(failures)
    for gate in [f"{n} {op} {t:g}" for n, op, t in gates] + [g for g in failed_gates if g not in
                                                            {f"{n} {op} {t:g}" for n, op, t in gates}]:
        case = ET.SubElement(suite, "testcase", classname="gates", name=gate)
        if gate in failed_gates:
            n_fail += 1
            ET.SubElement(case, "failure", message=failed_gates[gate])
    suite.set("tests", str(len(suite)))
    suite.set("failures", str(n_fail))
    suite.set("errors", str(n_err))
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
