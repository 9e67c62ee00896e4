import { Link, useParams } from "react-router";
import { useQuery } from "@tanstack/react-query";
import { api } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { fmtCost, fmtInt, fmtMs, fmtNumber, fmtTime } from "../../lib/format";
import type { TraceRow } from "../traces/TracesPage";

/** A user's traces, cost and scores. */
export default function UserPage() {
  const { userId = "" } = useParams();
  const { projectId } = useProject();
  const from = new Date(Math.floor(Date.now() / 60_000) * 60_000 - 30 * 86_400_000).toISOString();
  const totals = useQuery({
    queryKey: ["user-totals", projectId, userId],
    queryFn: () => Promise.all(["requests", "cost", "error_rate"].map((m) =>
      api<{ data: Array<{ value: number | null }> }>("/metrics", { project: projectId, params: { metric: m, aggregation: m === "cost" ? "sum" : undefined, user_id: userId, from } })
        .then((r) => r.data[0]?.value ?? null))),
  });
  const scores = useQuery({
    queryKey: ["user-scores", projectId, userId],
    queryFn: () => api<{ data?: Array<{ name: string; count: number; mean: number | null }> }>("/scores/summary", { project: projectId, params: { user_id: userId } }),
  });
  const traces = useQuery({
    queryKey: ["user-traces", projectId, userId],
    queryFn: () => api<{ data: TraceRow[] }>("/traces", { project: projectId, params: { user_id: userId, limit: 100 } }),
  });
  return (
    <div className="page">
      <h1>User <span className="mono">{userId}</span></h1>
      <Resource q={totals} what="totals">{([req, cost, err]) => (
        <dl className="stats"><div><dt>Spans (30 d)</dt><dd>{fmtInt(req)}</dd></div><div><dt>Cost (30 d)</dt><dd>{fmtCost(cost)}</dd></div>
          <div><dt>Error rate</dt><dd>{err == null ? "–" : `${(err * 100).toFixed(1)}%`}</dd></div></dl>
      )}</Resource>
      <h2>Scores</h2>
      <Resource q={scores} what="scores">{(d) => (d.data ?? []).length === 0 ? <p className="muted">No scores.</p> : (
        <ul className="scores">{(d.data ?? []).map((s) => <li key={s.name}><strong>{s.name}</strong>: mean {fmtNumber(s.mean)} over {fmtInt(s.count)}</li>)}</ul>
      )}</Resource>
      <h2>Traces <Link className="small" to={`/projects/${projectId}/traces?user_id=${encodeURIComponent(userId)}`}>open in Traces</Link></h2>
      <Resource q={traces} what="traces">{(d) => (
        <table className="list"><thead><tr><th>Time</th><th>Name</th><th>Latency</th><th>Cost</th><th>Status</th></tr></thead>
          <tbody>{d.data.map((t) => (
            <tr key={t.trace_id}><td>{fmtTime(t.start_time)}</td><td><Link to={`/projects/${projectId}/traces/${t.trace_id}`}>{t.name}</Link></td>
              <td>{fmtMs(t.duration_ms)}</td><td>{fmtCost(t.cost)}</td><td>{t.status}</td></tr>
          ))}</tbody></table>
      )}</Resource>
    </div>
  );
}
