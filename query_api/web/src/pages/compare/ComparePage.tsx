import { FormEvent, useState } from "react";
import { useSearchParams } from "react-router";
import { useMutation, useQuery } from "@tanstack/react-query";
import { api } from "../../api";
import { useProject } from "../../session";
import { ErrorBox, Loading } from "../../components/ErrorBox";
import { JsonTree } from "../../components/JsonTree";
import { fmtNumber } from "../../lib/format";
import { withParam } from "../../lib/url";
import { fetchTrace, TraceView } from "../trace/TraceDetailPage";

const METRICS = ["latency", "cost", "ttft", "output_tokens", "input_tokens", "error_rate", "score"];
const FIELDS = ["model", "provider", "release", "environment", "prompt_version", "name"];

/** Two cohorts through POST /compare (with its significance test), or two traces side by side. */
export default function ComparePage() {
  const [params, setParams] = useSearchParams();
  return (
    <div className="page">
      <h1>Compare</h1>
      <Cohorts />
      <h2>Two traces side by side</h2>
      <form className="inline-form" onSubmit={(e) => {
        e.preventDefault();
        const f = new FormData(e.currentTarget);
        setParams(withParam(withParam(params, "a", String(f.get("a") || "")), "b", String(f.get("b") || "")));
      }}>
        <label>Trace A<input name="a" defaultValue={params.get("a") ?? ""} size={34} /></label>
        <label>Trace B<input name="b" defaultValue={params.get("b") ?? ""} size={34} /></label>
        <button type="submit">Show</button>
      </form>
      {params.get("a") && params.get("b") && (
        <div className="two-col"><TraceById id={params.get("a")!} /><TraceById id={params.get("b")!} /></div>
      )}
    </div>
  );
}

function TraceById({ id }: { id: string }) {
  const { projectId } = useProject();
  const q = useQuery({ queryKey: ["trace", projectId, id], queryFn: ({ signal }) => fetchTrace(projectId, id, signal) });
  if (q.error) return <ErrorBox error={q.error} retry={() => q.refetch()} />;
  if (!q.data) return <Loading what="trace" />;
  return <TraceView trace={q.data} projectId={projectId} compact />;
}

function Cohorts() {
  const { projectId } = useProject();
  const [metric, setMetric] = useState("latency");
  const [field, setField] = useState("model");
  const [a, setA] = useState("");
  const [b, setB] = useState("");
  const [scoreName, setScoreName] = useState("");
  const run = useMutation({
    mutationFn: () => api<Record<string, unknown>>("/compare", { method: "POST", project: projectId, body: {
      metric, a: { [field]: a }, b: { [field]: b }, ...(metric === "score" ? { score_name: scoreName } : {}) } }),
  });
  const submit = (e: FormEvent) => { e.preventDefault(); run.mutate(); };
  const r = run.data as { verdict?: string; p_value?: number; test?: string } | undefined;
  return (
    <section aria-labelledby="cohorts-h">
      <h2 id="cohorts-h">Two cohorts</h2>
      <form className="inline-form" onSubmit={submit}>
        <label>Metric<select value={metric} onChange={(e) => setMetric(e.target.value)}>{METRICS.map((m) => <option key={m}>{m}</option>)}</select></label>
        {metric === "score" && <label>Score name<input value={scoreName} onChange={(e) => setScoreName(e.target.value)} required /></label>}
        <label>Split by<select value={field} onChange={(e) => setField(e.target.value)}>{FIELDS.map((f) => <option key={f}>{f}</option>)}</select></label>
        <label>Cohort A<input value={a} onChange={(e) => setA(e.target.value)} required placeholder="e.g. gpt-4o" /></label>
        <label>Cohort B<input value={b} onChange={(e) => setB(e.target.value)} required placeholder="e.g. gpt-4o-mini" /></label>
        <button type="submit" disabled={run.isPending}>Compare</button>
      </form>
      {run.error && <ErrorBox error={run.error} retry={() => run.mutate()} />}
      {r && (
        <div className="compare-result" data-testid="compare-result">
          <p><strong>{String(r.verdict ?? "").replace(/_/g, " ")}</strong>{r.p_value != null && <> · p = {fmtNumber(r.p_value, 4)}</>}{r.test && <> · {r.test}</>}</p>
          <JsonTree value={r} />
        </div>
      )}
    </section>
  );
}
