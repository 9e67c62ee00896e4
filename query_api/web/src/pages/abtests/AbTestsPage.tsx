import { FormEvent, useState } from "react";
import { useSearchParams } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, WRITE_ROLES } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { fmtInt, fmtNumber, fmtTime } from "../../lib/format";
import { withParam } from "../../lib/url";

interface Variant { name: string; weight: number; traffic: number; model?: string; prompt?: { name: string; version?: number; label?: string } }
interface AbTest {
  id: string; name: string; status: string; unit: string; variants: Variant[]; winner: string | null;
  primary_metric: { kind: string; score_name?: string; direction: string };
  design: { type: string; alpha: number; mde: number }; created_at: string;
}
interface Comparison {
  variant: string; against: string; p_value: number | null; significant: boolean; winner: string | null; verdict: string;
  difference?: { value: number; ci?: (number | null)[] } | null; required_per_arm?: number | null; sample_size_reached?: boolean;
  sequential?: { p_value: number | null; ci: (number | null)[] };
  guardrails: { metric: string; status: string; value: number | null; control_value: number | null; p_value?: number | null }[];
}
interface Results {
  verdict: string; alpha_per_comparison: number; comparisons: Comparison[];
  variants: { name: string; n: number; observations: number; primary: { mean?: number | null; mean_ci?: (number | null)[]; rate?: number | null; rate_ci?: (number | null)[] } }[];
}

const METRICS = ["latency", "cost", "error_rate", "score"];

/** Online A/B tests: the list, a new test, and one test's results with its significance and controls. */
export default function AbTestsPage() {
  const { projectId, project } = useProject();
  const canWrite = !!project && WRITE_ROLES.has(project.role);
  const [params, setParams] = useSearchParams();
  const selected = params.get("test");
  const tests = useQuery({ queryKey: ["ab-tests", projectId], queryFn: () => api<{ tests: AbTest[] }>("/ab-tests", { project: projectId }) });
  return (
    <div className="page">
      <h1>A/B tests</h1>
      <Resource q={tests} what="A/B tests">{(d) => d.tests.length === 0 ? <p className="muted">No A/B tests yet.</p> : (
        <table className="list" data-testid="ab-tests-table">
          <thead><tr><th>Name</th><th>Status</th><th>Unit</th><th>Primary metric</th><th>Traffic</th><th>Created</th></tr></thead>
          <tbody>{d.tests.map((t) => (
            <tr key={t.id} data-testid="ab-test-row" aria-selected={t.id === selected}>
              <td><button type="button" className="link" onClick={() => setParams(withParam(params, "test", t.id))}>{t.name}</button></td>
              <td>{t.status}{t.winner ? ` (winner: ${t.winner})` : ""}</td><td>{t.unit}</td>
              <td>{t.primary_metric.kind}{t.primary_metric.score_name ? ` · ${t.primary_metric.score_name}` : ""} ({t.design.type})</td>
              <td>{t.variants.map((v) => `${v.name} ${Math.round(v.traffic * 1000) / 10}%`).join(" · ")}</td>
              <td>{fmtTime(t.created_at)}</td>
            </tr>))}</tbody>
        </table>)}
      </Resource>
      {selected && <TestDetail id={selected} canWrite={canWrite} />}
      {canWrite && <CreateForm onCreated={(id) => setParams(withParam(params, "test", id))} />}
    </div>
  );
}

function TestDetail({ id, canWrite }: { id: string; canWrite: boolean }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const test = useQuery({ queryKey: ["ab-test", projectId, id], queryFn: () => api<AbTest>(`/ab-tests/${id}`, { project: projectId }) });
  const results = useQuery({ queryKey: ["ab-results", projectId, id], queryFn: () => api<Results>(`/ab-tests/${id}/results`, { project: projectId }) });
  const act = useMutation({
    mutationFn: ({ path, body }: { path: string; body?: unknown }) => api(`/ab-tests/${id}/${path}`, { method: "POST", project: projectId, body }),
    onSuccess: () => { for (const k of ["ab-tests", "ab-test", "ab-results"]) qc.invalidateQueries({ queryKey: [k, projectId] }); },
  });
  return (
    <section aria-labelledby="ab-detail-h" data-testid="ab-detail">
      <Resource q={test} what="A/B test">{(t) => (
        <>
          <h2 id="ab-detail-h">{t.name} <span className="muted">· {t.status}</span></h2>
          {canWrite && <Controls test={t} run={(path, body) => act.mutate({ path, body })} busy={act.isPending} />}
          {act.error && <ErrorBox error={act.error} retry={() => act.variables && act.mutate(act.variables)} />}
        </>)}
      </Resource>
      <Resource q={results} what="results">{(r) => <ResultsView r={r} />}</Resource>
    </section>
  );
}

function Controls({ test, run, busy }: { test: AbTest; run: (path: string, body?: unknown) => void; busy: boolean }) {
  const [weights, setWeights] = useState<Record<string, string>>(() => Object.fromEntries(test.variants.map((v) => [v.name, String(v.weight)])));
  const [winner, setWinner] = useState(test.variants[0]?.name ?? "");
  const [label, setLabel] = useState("");
  const open = test.status === "draft" || test.status === "running";
  return (
    <div className="inline-form" aria-label="Test controls">
      {test.status === "draft" && <button type="button" disabled={busy} onClick={() => run("start")}>Start</button>}
      {open && (
        <form className="inline-form" aria-label="Ramp" onSubmit={(e) => { e.preventDefault(); run("ramp", { weights: Object.fromEntries(Object.entries(weights).map(([k, v]) => [k, Number(v)])) }); }}>
          {test.variants.map((v) => (
            <label key={v.name}>Weight of {v.name}<input type="number" min={0} step="any" value={weights[v.name] ?? ""} size={6}
              onChange={(e) => setWeights({ ...weights, [v.name]: e.target.value })} /></label>))}
          <button type="submit" disabled={busy}>Ramp</button>
        </form>)}
      {test.status === "running" && <button type="button" disabled={busy} onClick={() => run("stop")}>Stop</button>}
      {(test.status === "running" || test.status === "stopped") && (
        <form className="inline-form" aria-label="Declare a winner" onSubmit={(e) => { e.preventDefault(); run("winner", { variant: winner, ...(label ? { label } : {}) }); }}>
          <label>Winning variant<select value={winner} onChange={(e) => setWinner(e.target.value)}>{test.variants.map((v) => <option key={v.name}>{v.name}</option>)}</select></label>
          <label>Move prompt label<input value={label} placeholder="e.g. production" onChange={(e) => setLabel(e.target.value)} size={12} /></label>
          <button type="submit" disabled={busy}>Declare winner</button>
        </form>)}
    </div>
  );
}

function ci(pair?: (number | null)[] | null): string {
  return pair && pair[0] != null && pair[1] != null ? `[${fmtNumber(pair[0], 4)}, ${fmtNumber(pair[1], 4)}]` : "–";
}

function ResultsView({ r }: { r: Results }) {
  return (
    <div data-testid="ab-results">
      <p><strong data-testid="ab-verdict">{r.verdict}</strong> <span className="muted">α per comparison {fmtNumber(r.alpha_per_comparison, 3)}</span></p>
      <table className="list" aria-label="Variants">
        <thead><tr><th>Variant</th><th>Units</th><th>Observations</th><th>Primary metric (mean per unit)</th><th>CI</th></tr></thead>
        <tbody>{r.variants.map((v) => (
          <tr key={v.name} data-testid="ab-variant-row" data-variant={v.name}>
            <td>{v.name}</td><td data-testid="ab-n">{fmtInt(v.n)}</td><td data-testid="ab-observations">{fmtInt(v.observations)}</td>
            <td data-testid="ab-value">{fmtNumber(v.primary.mean ?? v.primary.rate ?? null, 6)}</td>
            <td>{ci(v.primary.mean_ci ?? v.primary.rate_ci)}</td>
          </tr>))}</tbody>
      </table>
      <table className="list" aria-label="Comparisons">
        <thead><tr><th>Variant vs control</th><th>Difference</th><th>p-value</th><th>Sample size</th><th>Significant</th><th>Guardrails</th><th>Verdict</th></tr></thead>
        <tbody>{r.comparisons.map((c) => (
          <tr key={c.variant} data-testid="ab-comparison-row" data-variant={c.variant}>
            <td>{c.variant} vs {c.against}</td>
            <td>{fmtNumber(c.difference?.value ?? null, 4)} {ci(c.sequential?.ci ?? c.difference?.ci)}</td>
            <td data-testid="ab-p">{c.sequential ? <>always-valid {fmtNumber(c.sequential.p_value, 4)}</> : fmtNumber(c.p_value, 4)}</td>
            <td>{c.required_per_arm != null ? `${fmtInt(c.required_per_arm)} per arm${c.sample_size_reached ? " (reached)" : ""}` : "–"}</td>
            <td data-testid="ab-significant">{c.significant ? "yes" : "no"}</td>
            <td>{c.guardrails.length === 0 ? "–" : c.guardrails.map((g) => `${g.metric}: ${g.status.replace(/_/g, " ")}`).join(" · ")}</td>
            <td>{c.verdict}</td>
          </tr>))}</tbody>
      </table>
    </div>
  );
}

function CreateForm({ onCreated }: { onCreated: (id: string) => void }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const [f, setF] = useState({ name: "", variants: "control 50\ntreatment 50", unit: "user_id", metric: "latency", score_name: "", design: "fixed", mde: "" });
  const create = useMutation({
    mutationFn: () => api<AbTest>("/ab-tests", { method: "POST", project: projectId, body: {
      name: f.name, unit: f.unit, design: { type: f.design, mde: Number(f.mde) },
      primary_metric: { kind: f.metric, ...(f.metric === "score" ? { score_name: f.score_name } : {}) },
      // one variant a line: "name weight [model]"
      variants: f.variants.split("\n").map((l) => l.trim()).filter(Boolean).map((l) => {
        const [name, weight, model] = l.split(/\s+/);
        return { name, weight: Number(weight ?? 1), ...(model ? { model } : {}) };
      }) } }),
    onSuccess: (t) => { qc.invalidateQueries({ queryKey: ["ab-tests", projectId] }); onCreated(t.id); },
  });
  const set = (k: keyof typeof f) => (e: { target: { value: string } }) => setF({ ...f, [k]: e.target.value });
  return (
    <form className="inline-form" aria-label="New A/B test" onSubmit={(e: FormEvent) => { e.preventDefault(); create.mutate(); }}>
      <h2>New A/B test</h2>
      <label>Test name<input value={f.name} onChange={set("name")} required /></label>
      <label>Variants (name weight [model], one a line)<textarea value={f.variants} onChange={set("variants")} rows={3} cols={28} /></label>
      <label>Unit<input value={f.unit} onChange={set("unit")} size={10} /></label>
      <label>Primary metric<select value={f.metric} onChange={set("metric")}>{METRICS.map((m) => <option key={m}>{m}</option>)}</select></label>
      {f.metric === "score" && <label>Score name<input value={f.score_name} onChange={set("score_name")} required /></label>}
      <label>Design<select value={f.design} onChange={set("design")}><option>fixed</option><option>sequential</option></select></label>
      <label>Minimum detectable effect<input value={f.mde} onChange={set("mde")} required size={8} inputMode="decimal" /></label>
      <button type="submit" disabled={create.isPending}>Create A/B test</button>
      {create.error && <ErrorBox error={create.error} retry={() => create.mutate()} />}
    </form>
  );
}
