import { useEffect, useMemo, useRef } from "react";
import { Link, useParams } from "react-router";
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { ColumnDef } from "@tanstack/react-table";
import { api } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { JsonTree } from "../../components/JsonTree";
import { VirtualTable } from "../../components/VirtualTable";
import { fmtCi, fmtCost, fmtInt, fmtMs, fmtPct, fmtTime } from "../../lib/format";
import { Experiment, ResultRow, RUNNING, Summary, ranOn, targetOf } from "./types";

const POLL_MS = 1500;

/** One run: its summary (each score's mean ± 95 % CI, n, pass rate; latency, tokens, cost, errors,
 * consistency) and its per-item results, each linked to the item's trace. Polls while it runs. */
export default function ExperimentPage() {
  const { projectId } = useProject();
  const { experimentId = "" } = useParams();
  const qc = useQueryClient();
  const exp = useQuery({
    queryKey: ["experiment", projectId, experimentId],
    // While running, skip the bootstrap CIs: a poll stays cheap; the finished run gets them.
    queryFn: async ({ signal, client }) => {
      const prev = client.getQueryData<Experiment>(["experiment", projectId, experimentId]);
      const cheap = prev !== undefined && RUNNING.has(prev.status);
      const got = await api<Experiment>(`/experiments/${experimentId}`, { project: projectId, params: { ci: cheap ? "false" : undefined }, signal });
      // It just finished: read it once more with its CIs (no further poll would).
      return cheap && !RUNNING.has(got.status) ? api<Experiment>(`/experiments/${experimentId}`, { project: projectId, signal }) : got;
    },
    refetchInterval: (q) => (q.state.data && RUNNING.has(q.state.data.status) ? POLL_MS : false),
    placeholderData: keepPreviousData,
  });
  const running = exp.data ? RUNNING.has(exp.data.status) : false;
  const items = useQuery({
    queryKey: ["experiment-items", projectId, experimentId],
    queryFn: ({ signal }) => api<{ items: ResultRow[] }>(`/experiments/${experimentId}/items`, { project: projectId, params: { limit: 10000 }, signal }),
    refetchInterval: running ? POLL_MS * 2 : false,
    placeholderData: keepPreviousData,
  });
  // The last poll may have missed the final results: read them once more when the run stops.
  const wasRunning = useRef(false);
  useEffect(() => {
    if (wasRunning.current && !running) items.refetch();
    wasRunning.current = running;
  }, [running]); // eslint-disable-line react-hooks/exhaustive-deps
  const cancel = useMutation({
    mutationFn: () => api(`/experiments/${experimentId}/cancel`, { method: "POST", project: projectId }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["experiment", projectId, experimentId] }),
  });
  const columns = useMemo<ColumnDef<ResultRow>[]>(() => [
    { id: "input", header: "Input", cell: (c) => <><JsonTree value={c.row.original.input} />{c.row.original.repetition > 0 && <span className="muted small">repetition {c.row.original.repetition}</span>}</> },
    { id: "output", header: "Output", cell: (c) => <JsonTree value={c.row.original.output} /> },
    { id: "expected", header: "Expected", cell: (c) => <JsonTree value={c.row.original.expected_output} /> },
    { id: "scores", header: "Scores", cell: (c) => (
      <ul className="scores" data-testid="item-scores">{c.row.original.scores.map((s) => (
        <li key={s.name}>{s.name}: <strong>{s.value ?? "–"}</strong>{s.passed != null && (s.passed ? " ✓" : " ✗")}
          {s.reason && <div className="reason">{s.reason}</div>}</li>))}</ul>) },
    { id: "latency", header: "Latency", cell: (c) => fmtMs(c.row.original.latency_ms) },
    { id: "cost", header: "Cost", cell: (c) => fmtCost(c.row.original.cost) },
    { id: "error", header: "Error", cell: (c) => c.row.original.error ? <span className="error-text">{c.row.original.error}</span> : "" },
    { id: "trace", header: "Trace", cell: (c) => c.row.original.trace_id
        ? <Link to={`/projects/${projectId}/traces/${c.row.original.trace_id}`} data-testid="trace-link">{c.row.original.trace_id.slice(0, 10)}</Link> : "–" },
  ], [projectId]);
  return (
    <div className="page">
      <Resource q={exp} what="experiment">{(e) => (
        <>
          <div className="page-head">
            <h1>{e.name}</h1>
            <span className={`status status-${e.status}`} data-testid="status">{e.status}</span>
            {running && <progress className="progress" max={e.progress.total} value={e.progress.done} aria-label="Progress" />}
            <span data-testid="progress">{e.progress.done} / {e.progress.total}</span>
            {running && <button type="button" onClick={() => cancel.mutate()} disabled={cancel.isPending}>Cancel run</button>}
          </div>
          {cancel.error && <ErrorBox error={cancel.error} retry={() => cancel.mutate()} />}
          <p className="muted">
            {e.dataset_id && <Link to={`/projects/${projectId}/datasets/${e.dataset_id}?version=${e.dataset_version}`}>dataset</Link>} {ranOn(e)} ·
            target {targetOf(e)} · {e.repetitions} repetition{e.repetitions > 1 ? "s" : ""} · created {fmtTime(e.created_at)}
            {e.finished_at && <> · finished {fmtTime(e.finished_at)}</>}
          </p>
          {e.error && <p className="error-text">{e.error}</p>}
          {e.summary && <SummaryView s={e.summary} />}
        </>
      )}</Resource>
      <h2>Items</h2>
      <Resource q={items} what="results">{(d) => (
        <VirtualTable rows={d.items} columns={columns} rowId={(r) => `${r.item_id}:${r.repetition}`} label="Experiment items" testId="results-table" rowTestId="result-row"
                      widths={{ input: "minmax(180px, 2fr)", output: "minmax(160px, 2fr)", expected: "minmax(120px, 1fr)", scores: "minmax(160px, 1.5fr)", latency: "80px", cost: "100px", error: "minmax(80px, 1fr)", trace: "100px" }} />
      )}</Resource>
    </div>
  );
}

function SummaryView({ s }: { s: Summary }) {
  return (
    <section aria-labelledby="summary-h">
      <h2 id="summary-h">Summary</h2>
      <table className="list" data-testid="score-summary">
        <thead><tr><th>Score</th><th>Mean ± 95 % CI</th><th>n</th><th>Pass rate</th>{s.consistency && <th>Consistent across repetitions</th>}</tr></thead>
        <tbody>{Object.entries(s.scores).map(([name, v]) => (
          <tr key={name} data-testid="score-row" data-score={name}><td>{name}</td><td data-testid="score-mean">{fmtCi(v.mean, v.ci_low, v.ci_high)}</td>
            <td data-testid="score-n">{v.n}</td><td>{fmtPct(v.pass_rate)}</td>
            {s.consistency && <td>{fmtPct(s.consistency.scores[name])}</td>}</tr>))}</tbody>
      </table>
      <dl className="stats-grid" data-testid="run-stats">
        <div><dt>Results</dt><dd data-testid="stat-results">{fmtInt(s.results)}</dd></div>
        <div><dt>Latency p50 / p95</dt><dd data-testid="stat-latency">{fmtMs(s.latency_ms.p50)} / {fmtMs(s.latency_ms.p95)}</dd></div>
        <div><dt>Tokens (in / out)</dt><dd data-testid="stat-tokens">{fmtInt(s.tokens.input)} / {fmtInt(s.tokens.output)}</dd></div>
        <div><dt>Cost (total / per item)</dt><dd data-testid="stat-cost">{fmtCost(s.cost.total)} / {fmtCost(s.cost.per_item)}</dd></div>
        <div><dt>Error rate</dt><dd data-testid="stat-errors">{fmtPct(s.error_rate)}</dd></div>
        {s.consistency && <div><dt>Identical outputs across repetitions</dt><dd>{fmtPct(s.consistency.identical_outputs)}</dd></div>}
      </dl>
    </section>
  );
}
