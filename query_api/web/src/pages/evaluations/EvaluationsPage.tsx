import { FormEvent, useState } from "react";
import { Link } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, WRITE_ROLES } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { JsonTree } from "../../components/JsonTree";
import { fmtInt, fmtNumber } from "../../lib/format";
import { EditRule, EvalRule as Rule } from "./EditRule";

interface Summary {
  name: string; count: number; mean: number | null; p50?: number | null; min?: number | null; max?: number | null;
  histogram: Array<{ lower: number; upper: number; count: number }>; values: Array<{ value: string; count: number }>;
}

/** A score's distribution as a row of bars (numeric histogram, or categorical value counts). */
function Distribution({ s }: { s: Summary }) {
  const bins = s.histogram.length ? s.histogram.map((h) => ({ label: `${fmtNumber(h.lower)}–${fmtNumber(h.upper)}`, count: h.count }))
    : s.values.map((v) => ({ label: v.value, count: v.count }));
  const max = Math.max(1, ...bins.map((b) => b.count));
  return (
    <div className="histogram" role="img" aria-label={`Distribution of ${s.name}: ${bins.map((b) => `${b.label} ${b.count}`).join(", ")}`}>
      {bins.map((b) => <span key={b.label} title={`${b.label}: ${b.count}`} style={{ height: `${Math.max(2, (b.count / max) * 28)}px` }} />)}
    </div>
  );
}

export default function EvaluationsPage() {
  const { projectId, project } = useProject();
  const canWrite = !!project && WRITE_ROLES.has(project.role);
  const summary = useQuery({ queryKey: ["scores-summary", projectId], queryFn: () => api<{ data?: Summary[] }>("/scores/summary", { project: projectId }) });
  return (
    <div className="page">
      <h1>Evaluations</h1>
      <section aria-labelledby="sum-h"><h2 id="sum-h">Score summaries</h2>
        <Resource q={summary} what="score summaries">{(d) => (d.data ?? []).length === 0 ? <p className="muted">No scores yet.</p> : (
          <table className="list"><thead><tr><th>Score</th><th>Count</th><th>Mean</th><th>p50</th><th>Min</th><th>Max</th><th>Distribution</th></tr></thead>
            <tbody>{(d.data ?? []).map((s, i) => (
              <tr key={`${s.name}-${i}`}><td>{s.name}</td><td>{fmtInt(s.count)}</td><td>{fmtNumber(s.mean)}</td><td>{fmtNumber(s.p50)}</td><td>{fmtNumber(s.min)}</td><td>{fmtNumber(s.max)}</td><td><Distribution s={s} /></td></tr>
            ))}</tbody></table>
        )}</Resource>
      </section>
      <Rules canWrite={canWrite} />
      <Review />
    </div>
  );
}

function Rules({ canWrite }: { canWrite: boolean }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const rules = useQuery({ queryKey: ["eval-rules", projectId], queryFn: () => api<{ rules?: Rule[] } | Rule[]>("/eval-rules", { project: projectId }) });
  const [form, setForm] = useState({ name: "", evaluator: "contains", config: "{}", model: "", sampling_rate: "1" });
  const [error, setError] = useState("");
  const [editing, setEditing] = useState<string | null>(null);
  const create = useMutation({
    mutationFn: (body: unknown) => api("/eval-rules", { method: "POST", project: projectId, body }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["eval-rules", projectId] }),
  });
  const del = useMutation({ mutationFn: (id: string) => api(`/eval-rules/${id}`, { method: "DELETE", project: projectId }),
                            onSuccess: () => qc.invalidateQueries({ queryKey: ["eval-rules", projectId] }) });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    let config: unknown;
    try { config = JSON.parse(form.config || "{}"); } catch { setError("Config: not valid JSON"); return; }
    setError("");
    create.mutate({ name: form.name, evaluator: form.evaluator, config, sampling_rate: Number(form.sampling_rate),
                    filter: form.model ? { model: form.model } : {} });
  };
  return (
    <section aria-labelledby="rules-h"><h2 id="rules-h">Eval rules</h2>
      <Resource q={rules} what="eval rules">{(d) => {
        const list = Array.isArray(d) ? d : d.rules ?? [];
        return list.length === 0 ? <p className="muted">No rules.</p> : (
          <table className="list"><thead><tr><th>Name</th><th>Evaluator</th><th>Filter</th><th>Sample rate</th><th>Config</th><th /></tr></thead>
            <tbody>{list.map((r) => [
              <tr key={r.id} data-testid="eval-rule"><td>{r.name}{!r.enabled && <span className="muted"> (disabled)</span>}</td><td>{r.evaluator}</td>
                <td className="mono">{JSON.stringify(r.filter)}</td><td data-testid="sample-rate">{r.sampling_rate}</td>
                <td><JsonTree value={r.config} /></td><td>{canWrite && <>
                  <button type="button" onClick={() => setEditing(editing === r.id ? null : r.id)}>Edit</button>
                  <button type="button" onClick={() => del.mutate(r.id)}>Delete</button></>}</td></tr>,
              editing === r.id && canWrite && (
                <tr key={`${r.id}-edit`}><td colSpan={6}><EditRule projectId={projectId} rule={r} onDone={() => setEditing(null)} /></td></tr>
              ),
            ])}</tbody></table>
        );
      }}</Resource>
      {canWrite && (
        <form className="inline-form" onSubmit={submit} aria-label="New eval rule">
          <label>Name<input required value={form.name} onChange={(e) => setForm({ ...form, name: e.target.value })} /></label>
          <label>Evaluator<input required value={form.evaluator} onChange={(e) => setForm({ ...form, evaluator: e.target.value })} /></label>
          <label>Config (JSON)<input value={form.config} onChange={(e) => setForm({ ...form, config: e.target.value })} /></label>
          <label>Model filter<input value={form.model} onChange={(e) => setForm({ ...form, model: e.target.value })} /></label>
          <label>Sample rate<input type="number" min="0" max="1" step="0.01" value={form.sampling_rate} onChange={(e) => setForm({ ...form, sampling_rate: e.target.value })} /></label>
          <button type="submit">Create rule</button>
        </form>
      )}
      {error && <p className="error-box" role="alert">{error}</p>}
      {(create.error || del.error) && <ErrorBox error={create.error || del.error} />}
    </section>
  );
}

/** A human score for one queued span (it leaves the queue once the score is stored). */
function Annotate({ projectId, scoreName, traceId, spanId }: { projectId: string; scoreName: string; traceId: string; spanId: string }) {
  const qc = useQueryClient();
  const [value, setValue] = useState("");
  const save = useMutation({
    mutationFn: () => api("/scores", { method: "POST", project: projectId, body: {
      trace_id: traceId, span_id: spanId, name: scoreName, source: "human",
      value: value.trim() !== "" && Number.isFinite(Number(value)) ? Number(value) : value } }),
    onSuccess: () => setTimeout(() => qc.invalidateQueries({ queryKey: ["review", projectId, scoreName] }), 1500),
  });
  if (save.isSuccess) return <span role="status">saved</span>;
  return (
    <form className="inline-form" onSubmit={(e) => { e.preventDefault(); save.mutate(); }}>
      <input aria-label={`${scoreName} for ${spanId}`} value={value} onChange={(e) => setValue(e.target.value)} required size={6} />
      <button type="submit" disabled={save.isPending}>Save</button>
      {save.error && <ErrorBox error={save.error} retry={() => save.mutate()} />}
    </form>
  );
}

function Review() {
  const { projectId } = useProject();
  const [scoreName, setScoreName] = useState("");
  const [judge, setJudge] = useState("");
  const queue = useQuery({
    queryKey: ["review", projectId, scoreName], enabled: !!scoreName,
    queryFn: () => api<{ items: Array<{ trace_id: string; span_id: string; name: string; model: string; input_preview: string; output_preview: string }> }>("/review-queue", { project: projectId, params: { score_name: scoreName } }),
  });
  const agreement = useQuery({
    queryKey: ["agreement", projectId, scoreName, judge], enabled: !!scoreName && !!judge,
    queryFn: () => api("/scores/agreement", { project: projectId, params: { human: scoreName, judge } }),
  });
  return (
    <section aria-labelledby="review-h"><h2 id="review-h">Review queue and agreement</h2>
      <form className="inline-form" onSubmit={(e) => { e.preventDefault(); const f = new FormData(e.currentTarget); setScoreName(String(f.get("s") || "")); setJudge(String(f.get("j") || "")); }}>
        <label>Human score<input name="s" defaultValue={scoreName} required /></label>
        <label>Judge score<input name="j" defaultValue={judge} /></label>
        <button type="submit">Show</button>
      </form>
      {scoreName && <Resource q={queue} what="review queue">{(d) => d.items.length === 0 ? <p className="muted">Nothing to review.</p> : (
        <table className="list"><thead><tr><th>Span</th><th>Model</th><th>Input</th><th>Output</th><th>Annotate</th></tr></thead>
          <tbody>{d.items.map((i) => (
            <tr key={i.span_id}><td><Link to={`/projects/${projectId}/traces/${i.trace_id}?span=${i.span_id}`}>{i.name}</Link></td><td>{i.model}</td>
              <td className="clip">{i.input_preview}</td><td className="clip">{i.output_preview}</td>
              <td><Annotate projectId={projectId} scoreName={scoreName} traceId={i.trace_id} spanId={i.span_id} /></td></tr>
          ))}</tbody></table>
      )}</Resource>}
      {scoreName && judge && <Resource q={agreement} what="agreement">{(d) => <JsonTree value={d} />}</Resource>}
    </section>
  );
}
