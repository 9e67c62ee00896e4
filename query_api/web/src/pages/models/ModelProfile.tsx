import { useQuery } from "@tanstack/react-query";
import { api } from "../../api";
import { Resource } from "../../components/Resource";
import { fmtInt, fmtTime } from "../../lib/format";
import { useProject } from "../../session";
import { ExperimentEvidence, fixed, ModelEntry, Observed } from "./types";

/** One model: what production traffic showed over the window, and its finished experiments' scores. */
export function ModelProfile({ id, days }: { id: string; days: number }) {
  const { projectId } = useProject();
  const q = useQuery({
    queryKey: ["model", projectId, id, days],
    queryFn: () => api<ModelEntry & { observed: Observed; experiments: ExperimentEvidence[] }>(
      `/models/${id.split("/").map(encodeURIComponent).join("/")}`, { project: projectId, params: { days } }),
  });
  return (
    <section aria-labelledby="profile-h" data-testid="profile">
      <h2 id="profile-h">Profile of {id} <span className="small muted">last {days} days</span></h2>
      <Resource q={q} what="profile">
        {(m) => {
          const o = m.observed;
          return (
            <>
              <table className="tokens" aria-label="Observed profile">
                <tbody>
                  <tr><th>Calls</th><td data-field="calls">{fmtInt(o.calls)}</td></tr>
                  <tr><th>Latency p50 / p95 (ms)</th><td data-field="latency">{fixed(o.latency_ms?.p50, 1)} / {fixed(o.latency_ms?.p95, 1)}</td></tr>
                  <tr><th>Time to first token p50 / p95 (ms)</th><td data-field="ttft">{fixed(o.ttft_ms?.p50, 1)} / {fixed(o.ttft_ms?.p95, 1)}</td></tr>
                  <tr><th>Error rate</th><td data-field="error_rate">{fixed(o.error_rate, 4)}</td></tr>
                  <tr><th>Errors by class</th><td data-field="errors_by_class">
                    {Object.entries(o.errors_by_class ?? {}).map(([k, v]) => `${k} ${v}`).join(", ") || "–"}</td></tr>
                  <tr><th>Cost per 1k calls ($)</th><td data-field="cost_per_1k">{fixed(o.cost_per_1k_calls, 4)}</td></tr>
                  <tr><th>Output tokens/s (p50)</th><td data-field="tokens_per_second">{fixed(o.output_tokens_per_second?.p50, 1)}</td></tr>
                </tbody>
              </table>
              <h3>Experiments</h3>
              {m.experiments.length === 0 ? <p className="muted">No finished experiment with this model.</p> : (
                <table className="list" aria-label="Experiment scores">
                  <thead><tr><th>Experiment</th><th>Dataset / benchmark</th><th>Score</th><th>Mean</th><th>95 % CI</th><th>n</th><th>Finished</th></tr></thead>
                  <tbody>
                    {m.experiments.flatMap((e) => Object.entries(e.scores).map(([name, s]) => (
                      <tr key={`${e.experiment_id}-${name}`}>
                        <td>{e.name}</td><td>{e.benchmark ?? `${e.dataset_id} v${e.dataset_version}`}</td><td>{name}</td>
                        <td>{fixed(s.mean, 3)}</td><td>[{fixed(s.ci_low, 3)}, {fixed(s.ci_high, 3)}]</td><td>{s.n}</td>
                        <td>{fmtTime(e.finished_at)}</td>
                      </tr>
                    )))}
                  </tbody>
                </table>
              )}
            </>
          );
        }}
      </Resource>
    </section>
  );
}
