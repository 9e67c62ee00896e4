import { FormEvent, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useSearchParams } from "react-router";
import { api } from "../../api";
import { useProject } from "../../session";
import { ErrorBox } from "../../components/ErrorBox";

interface DatasetRef { id: string; name: string; version?: number; item_count?: number }

// Names from evaluators/registry.py (evaluator_names) that score an output; any other
// registered name can be typed in, its config goes in the JSON box.
const EVALUATORS = ["exact_match", "contains", "regex", "json_valid", "json_schema", "length", "semantic_similarity", "llm_judge"];

function parseJson(text: string, field: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(text || "{}");
  } catch {
    throw new Error(`${field}: not valid JSON`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error(`${field}: must be a JSON object`);
  return value as Record<string, unknown>;
}

/** Start an optimisation of this prompt (``POST /prompts/{name}/optimize``); the server's 400 names the
 * bad field and shows inline. On success the new job opens (``?job=``). */
export function OptimizeStart({ name }: { name: string }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const [params, setParams] = useSearchParams();
  const datasets = useQuery({ queryKey: ["datasets", projectId],
                              queryFn: () => api<{ datasets: DatasetRef[] }>("/datasets", { project: projectId }) });
  const [f, setF] = useState({
    dataset: "", baseBy: "label", base: "production", evaluator: "exact_match", config: "{}", objective: "",
    provider: "openai", model: "", baseUrl: "", maxCalls: "500", maxUsd: "5", rounds: "3", candidates: "4",
  });
  const set = (k: keyof typeof f) => (e: { target: { value: string } }) => setF({ ...f, [k]: e.target.value });
  const start = useMutation({
    mutationFn: () => {
      if (f.baseBy === "version" && f.base.trim() !== "" && !/^\d+$/.test(f.base.trim())) throw new Error("base.version: a version number");
      const base = f.base.trim() === "" ? undefined
        : f.baseBy === "version" ? { version: Number(f.base) } : { label: f.base.trim() };
      const target = { provider: f.provider, model: f.model, base_url: f.baseUrl.trim() || undefined };
      return api<{ job_id: string }>(`/prompts/${encodeURIComponent(name)}/optimize`, { method: "POST", project: projectId, body: {
        dataset_id: f.dataset || (datasets.data?.datasets[0]?.id ?? ""), base,
        evaluators: [{ evaluator: f.evaluator.trim(), config: parseJson(f.config, "evaluators.0.config") }],
        objective: f.objective.trim() || undefined, target,
        budget: { max_calls: Number(f.maxCalls), max_usd: Number(f.maxUsd) },
        rounds: Number(f.rounds), candidates_per_round: Number(f.candidates) } });
    },
    onSuccess: (r) => {
      qc.invalidateQueries({ queryKey: ["optimize", projectId, name] });
      setParams({ prompt: name, tab: "optimise", job: r.job_id });
    },
  });
  return (
    <details open={!params.get("job")}>
      <summary>Start an optimisation</summary>
      <form className="stack-form" aria-label="Start optimisation" onSubmit={(e: FormEvent) => { e.preventDefault(); start.mutate(); }}>
        <div className="inline-form">
          <label>Dataset<select required value={f.dataset || (datasets.data?.datasets[0]?.id ?? "")} onChange={set("dataset")}>
            {(datasets.data?.datasets ?? []).map((d) => <option key={d.id} value={d.id}>{d.name}</option>)}</select></label>
          <label>Base by<select value={f.baseBy} onChange={set("baseBy")}><option value="label">label</option><option value="version">version</option></select></label>
          <label>Base<input value={f.base} onChange={set("base")} size={12} placeholder="production" /></label>
        </div>
        {datasets.error && <ErrorBox error={datasets.error} retry={() => datasets.refetch()} />}
        <div className="inline-form">
          <label>Evaluator<input required list="optimize-evaluators" value={f.evaluator} onChange={set("evaluator")} size={16} /></label>
          <datalist id="optimize-evaluators">{EVALUATORS.map((e) => <option key={e} value={e} />)}</datalist>
          <label>Evaluator config (JSON)<input className="mono" value={f.config} onChange={set("config")} size={30} /></label>
          <label>Objective<input value={f.objective} onChange={set("objective")} size={16} placeholder="first score" /></label>
        </div>
        <div className="inline-form">
          <label>Provider<select value={f.provider} onChange={set("provider")}>
            <option value="openai">openai</option><option value="anthropic">anthropic</option></select></label>
          <label>Target model<input required value={f.model} onChange={set("model")} size={18} /></label>
          <label>Base URL<input value={f.baseUrl} onChange={set("baseUrl")} size={28} placeholder="provider default" /></label>
        </div>
        <div className="inline-form">
          <label>Max calls<input type="number" min={1} required value={f.maxCalls} onChange={set("maxCalls")} size={8} /></label>
          <label>Max USD<input type="number" min={0} step="any" required value={f.maxUsd} onChange={set("maxUsd")} size={8} /></label>
          <label>Rounds<input type="number" min={1} required value={f.rounds} onChange={set("rounds")} size={4} /></label>
          <label>Candidates per round<input type="number" min={1} required value={f.candidates} onChange={set("candidates")} size={4} /></label>
          <button type="submit" disabled={start.isPending}>Start optimisation</button>
        </div>
      </form>
      {start.error && <ErrorBox error={start.error} />}
    </details>
  );
}
