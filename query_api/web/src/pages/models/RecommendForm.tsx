import { FormEvent, useState } from "react";
import { useMutation } from "@tanstack/react-query";
import { api } from "../../api";
import { ErrorBox } from "../../components/ErrorBox";
import { useProject } from "../../session";
import { fixed, Recommendation } from "./types";

const TASKS = [["dataset_id", "Dataset id"], ["benchmark", "Benchmark"], ["eval_rule_id", "Eval rule id"]] as const;
const CAPABILITIES = ["tools", "json_output", "vision"];

const num = (v: FormDataEntryValue | null): number | undefined => (v == null || v === "" ? undefined : Number(v));

/** POST /models/recommend: candidates with their evidence, exclusions with reasons, the decision and,
 * when the evidence cannot decide, the experiment that would. */
export function RecommendForm() {
  const { projectId } = useProject();
  const [body, setBody] = useState<Record<string, unknown> | null>(null);
  const run = useMutation({
    mutationFn: (b: Record<string, unknown>) => api<Recommendation>("/models/recommend", { method: "POST", project: projectId, body: b }),
  });
  const submit = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const kind = String(f.get("task_kind"));
    const b = {
      task: { [kind]: String(f.get("task_value")), ...(f.get("score") ? { score: String(f.get("score")) } : {}) },
      constraints: { max_cost_per_1k_calls: num(f.get("max_cost")), max_p95_latency_ms: num(f.get("max_p95")),
                     min_score: num(f.get("min_score")), capabilities: CAPABILITIES.filter((c) => f.get(`cap_${c}`)) },
      days: num(f.get("days")) ?? 30,
    };
    setBody(b);
    run.mutate(b);
  };
  const r = run.data;
  return (
    <section aria-labelledby="recommend-h">
      <h2 id="recommend-h">Recommend a model</h2>
      <form className="inline-form" onSubmit={submit} aria-label="Recommendation">
        <label>Task<select name="task_kind" defaultValue="dataset_id">{TASKS.map(([k, l]) => <option key={k} value={k}>{l}</option>)}</select></label>
        <label>Task value<input name="task_value" required size={28} /></label>
        <label>Score name<input name="score" placeholder="if several" /></label>
        <label>Max $ per 1k calls<input name="max_cost" type="number" step="any" min="0" /></label>
        <label>Max p95 latency (ms)<input name="max_p95" type="number" step="any" min="0" /></label>
        <label>Min score<input name="min_score" type="number" step="any" /></label>
        <label>Days<input name="days" type="number" min="1" max="400" defaultValue={30} /></label>
        {CAPABILITIES.map((c) => <label key={c}><input type="checkbox" name={`cap_${c}`} />needs {c}</label>)}
        <button type="submit" disabled={run.isPending}>Recommend</button>
      </form>
      {run.error && <ErrorBox error={run.error} retry={() => body && run.mutate(body)} />}
      {r && (
        <div data-testid="recommendation">
          <p data-testid="decision"><strong>{r.decision.winner ? `Winner: ${r.decision.winner}` : "No confident winner"}</strong>
            {r.decision.winner && (r.decision.confident ? " (confident)" : " (not confident)")} — {r.decision.why}</p>
          <h3>Candidates (quality / cost / latency frontier)</h3>
          <table className="list" aria-label="Candidates">
            <thead><tr><th>Model</th><th>Score</th><th>95 % CI</th><th>n</th><th>p95 (ms)</th><th>$ per 1k calls</th><th>Evidence</th></tr></thead>
            <tbody>
              {r.candidates.map((c) => (
                <tr key={c.model} data-model={c.model}>
                  <td>{c.model}</td><td data-field="score">{fixed(c.evidence.score, 3)}</td>
                  <td data-field="ci">[{fixed(c.evidence.ci[0], 3)}, {fixed(c.evidence.ci[1], 3)}]</td>
                  <td data-field="n">{c.evidence.n}</td><td data-field="p95">{fixed(c.evidence.p95_latency_ms, 1)}</td>
                  <td data-field="cost">{fixed(c.evidence.cost_per_1k_calls, 4)}</td><td className="small">{c.evidence.sources.join("; ")}</td>
                </tr>
              ))}
            </tbody>
          </table>
          {r.proposed_experiment && (
            <div data-testid="proposed-experiment">
              <h3>Proposed experiment</h3>
              <p>Run {r.proposed_experiment.models.join(" vs ")} on {r.proposed_experiment.dataset_id ?? r.proposed_experiment.benchmark ?? "a dataset of production inputs"}:
                {" "}<strong data-field="items_needed">{r.proposed_experiment.items_needed ?? "–"}</strong> items per model
                to detect a difference of {fixed(r.proposed_experiment.difference, 3)} (effect size {fixed(r.proposed_experiment.effect_size, 3)};
                {" "}{r.proposed_experiment.formula}, α = {fixed(r.proposed_experiment.alpha, 4)}, power {r.proposed_experiment.power}).</p>
              <p>{r.proposed_experiment.correction}</p>
            </div>
          )}
          <h3>Excluded</h3>
          <table className="list" aria-label="Excluded models">
            <thead><tr><th>Model</th><th>Why</th></tr></thead>
            <tbody>{r.excluded.map((x) => <tr key={x.model} data-model={x.model}><td>{x.model}</td><td>{x.reasons.join("; ")}</td></tr>)}</tbody>
          </table>
        </div>
      )}
    </section>
  );
}
