import { useMemo } from "react";
import { Link, useSearchParams } from "react-router";
import { keepPreviousData, useQuery } from "@tanstack/react-query";
import { ColumnDef } from "@tanstack/react-table";
import { api } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { JsonTree } from "../../components/JsonTree";
import { VirtualTable } from "../../components/VirtualTable";
import { fmtCi, fmtNumber, fmtP } from "../../lib/format";
import { withParam } from "../../lib/url";
import { ALPHA, decidingP, significance } from "../../lib/significance";
import { Experiment, ranOn } from "./types";

interface Metric {
  n: number; mean_base: number | null; mean_other: number | null; delta: number | null; delta_ci_low: number | null; delta_ci_high: number | null;
  improved: number; regressed: number; unchanged: number; improved_items: string[]; regressed_items: string[];
  p_value: number; p_value_holm?: number; test: string;
}
interface Comparison { baseline: string; experiment: string; name: string; metrics: Record<string, Metric> }
interface ItemRow { item_id: string; input: unknown; expected_output: unknown; runs: Record<string, { output: unknown; error: string | null; trace_id: string | null; scores: Record<string, number> }> }
interface CompareResult { baseline: string; comparisons: Comparison[]; items: ItemRow[]; experiments: Array<{ id: string; name: string; status: string }> }

const TESTS: Record<string, string> = { mcnemar_exact: "exact McNemar", wilcoxon: "Wilcoxon signed-rank" };

/** 2..N runs on the same items (``?ids=`` repeated; the first is the baseline): per-metric paired
 * tests, and per item the runs side by side with an improved / regressed / unchanged filter. */
export default function CompareRunsPage() {
  const { projectId } = useProject();
  const [params, setParams] = useSearchParams();
  const ids = params.getAll("ids");
  const runs = useQuery({
    queryKey: ["experiments", projectId, ""],
    queryFn: ({ signal }) => api<{ experiments: Experiment[] }>("/experiments", { project: projectId, params: { limit: 200 }, signal }),
  });
  const result = useQuery({
    queryKey: ["compare-runs", projectId, ids.join(",")],
    queryFn: ({ signal }) => api<CompareResult>("/experiments/compare", { method: "POST", body: { experiment_ids: ids }, project: projectId, signal }),
    enabled: ids.length >= 2,
    placeholderData: keepPreviousData,
  });
  const base = runs.data?.experiments.find((e) => e.id === ids[0]);
  // Only runs on the baseline's items can be compared with it.
  const comparable = (runs.data?.experiments ?? []).filter((e) => !base || (e.dataset_id === base.dataset_id && e.dataset_version === base.dataset_version
    && e.split === base.split && JSON.stringify(e.benchmark) === JSON.stringify(base.benchmark)));
  const toggle = (id: string) => setParams(withParam(params, "ids", ids.includes(id) ? ids.filter((x) => x !== id) : [...ids, id]));
  return (
    <div className="page">
      <div className="page-head"><h1>Compare runs</h1></div>
      <details open={ids.length < 2}>
        <summary>Runs ({ids.length} chosen; the first is the baseline)</summary>
        <Resource q={runs} what="experiments">{() => (
          <fieldset><legend className="muted small">{base ? `Runs on the baseline's items (${ranOn(base)})` : "Choose a baseline"}</legend>
            {comparable.map((e) => (
              <label key={e.id} className="inline"><input type="checkbox" checked={ids.includes(e.id)} onChange={() => toggle(e.id)} />
                {e.name} <span className="muted small">{ranOn(e)} · {e.status}{ids[0] === e.id ? " · baseline" : ""}</span></label>))}
          </fieldset>)}</Resource>
      </details>
      {ids.length < 2 ? <p className="muted">Choose at least two runs.</p> : (
        <Resource q={result} what="comparison">{(r) => <CompareView r={r} />}</Resource>
      )}
    </div>
  );
}

function CompareView({ r }: { r: CompareResult }) {
  const { projectId } = useProject();
  const [params, setParams] = useSearchParams();
  const names = new Map(r.experiments.map((e) => [e.id, e.name]));
  const metricNames = [...new Set(r.comparisons.flatMap((c) => Object.keys(c.metrics)))].sort();
  const metric = params.get("metric") ?? metricNames[0] ?? "";
  const vs = params.get("vs") ?? r.comparisons[0]?.experiment ?? "";
  const change = params.get("change") ?? "";
  const chosen = r.comparisons.find((c) => c.experiment === vs)?.metrics[metric];
  const rows = useMemo(() => {
    if (!change || !chosen) return r.items;
    const improved = new Set(chosen.improved_items), regressed = new Set(chosen.regressed_items);
    return r.items.filter((i) => {
      if (!(metric in (i.runs[r.baseline]?.scores ?? {})) || !(metric in (i.runs[vs]?.scores ?? {}))) return false;
      const kind = improved.has(i.item_id) ? "improved" : regressed.has(i.item_id) ? "regressed" : "unchanged";
      return kind === change;
    });
  }, [r, change, chosen, metric, vs]);
  const runIds = r.experiments.map((e) => e.id);
  const columns = useMemo<ColumnDef<ItemRow>[]>(() => [
    { id: "input", header: "Input", cell: (c) => <JsonTree value={c.row.original.input} /> },
    { id: "expected", header: "Expected", cell: (c) => <JsonTree value={c.row.original.expected_output} /> },
    ...runIds.map((id): ColumnDef<ItemRow> => ({
      id: `run-${id}`, header: () => <>{names.get(id)}{id === r.baseline ? " (baseline)" : ""}</>,
      cell: (c) => {
        const run = c.row.original.runs[id];
        if (!run) return <span className="muted">not run</span>;
        return <div data-run={id}><JsonTree value={run.output} />
          {run.error && <div className="error-text">{run.error}</div>}
          <div className="small">{Object.entries(run.scores).map(([n, v]) => `${n}: ${fmtNumber(v)}`).join(", ")}</div>
          {run.trace_id && <Link to={`/projects/${projectId}/traces/${run.trace_id}`} className="small">trace</Link>}</div>;
      },
    })),
  ], [runIds.join(","), projectId]); // eslint-disable-line react-hooks/exhaustive-deps
  return (
    <>
      <h2>Metrics against the baseline, {names.get(r.baseline)}</h2>
      {r.comparisons.length > 1 && <p className="muted small">{r.comparisons.length} comparisons: p-values are Holm-adjusted per metric.</p>}
      <table className="list" data-testid="metric-table">
        <thead><tr><th>Run</th><th>Metric</th><th>n</th><th>Baseline</th><th>Run</th><th>Δ ± 95 % CI</th><th>Improved / regressed / unchanged</th><th>Test</th><th>p-value</th>
          {r.comparisons.length > 1 && <th>Holm p</th>}<th>Verdict</th></tr></thead>
        <tbody>{r.comparisons.flatMap((c) => Object.entries(c.metrics).map(([name, m]) => (
          <tr key={`${c.experiment}:${name}`} data-testid="metric-row" data-experiment={c.experiment} data-metric={name}>
            <td>{names.get(c.experiment)}</td><td>{name}</td><td>{m.n}</td><td>{fmtNumber(m.mean_base)}</td><td>{fmtNumber(m.mean_other)}</td>
            <td>{fmtCi(m.delta, m.delta_ci_low, m.delta_ci_high)}</td><td>{m.improved} / {m.regressed} / {m.unchanged}</td>
            <td>{TESTS[m.test] ?? m.test}</td><td data-testid="p-value">{fmtP(m.p_value)}</td>
            {r.comparisons.length > 1 && <td data-testid="p-holm">{fmtP(m.p_value_holm)}</td>}
            <td className={decidingP(m) < ALPHA ? "sig" : "not-sig"} data-testid="verdict">{significance(m)}</td>
          </tr>)))}</tbody>
      </table>
      <h2>Items side by side</h2>
      <div className="inline-form">
        <label>Metric<select value={metric} onChange={(e) => setParams(withParam(params, "metric", e.target.value))}>
          {metricNames.map((n) => <option key={n} value={n}>{n}</option>)}</select></label>
        {r.comparisons.length > 1 && <label>Run against the baseline<select value={vs} onChange={(e) => setParams(withParam(params, "vs", e.target.value))}>
          {r.comparisons.map((c) => <option key={c.experiment} value={c.experiment}>{names.get(c.experiment)}</option>)}</select></label>}
        <label>Show<select value={change} onChange={(e) => setParams(withParam(params, "change", e.target.value || null))}>
          <option value="">all items</option><option value="improved">improved</option><option value="regressed">regressed</option><option value="unchanged">unchanged</option>
        </select></label>
      </div>
      <VirtualTable rows={rows} columns={columns} rowId={(i) => i.item_id} label="Items side by side" testId="compare-items" rowTestId="compare-item"
                    widths={{ input: "minmax(180px, 1.5fr)", expected: "minmax(120px, 1fr)" }} />
    </>
  );
}
