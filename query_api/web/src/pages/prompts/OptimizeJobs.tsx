import { FormEvent, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, useSearchParams } from "react-router";
import { api } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { fmtCost, fmtInt, fmtMs, fmtP, fmtTime } from "../../lib/format";

// The shape of GET /prompts/{name}/optimize/{job_id} (evaluators/routers/optimize.py, evaluators/optimizer/job.py).
interface Progress { round?: number; rounds?: number; stage?: string; calls?: number; usd?: number; max_calls?: number; max_usd?: number; best?: string | null }
interface Candidate { id: string; round: number; prompt: unknown; rationale: string; status: string; dev: { n: number; mean: number | null }; race: { items: number; mean: number | null }[] }
interface HoldoutSide { experiment_id: string; mean: number | null; cost_per_item: number | null; latency_p95_ms: number | null }
interface Test { test: string; n: number; p_value: number; mean_base: number | null; mean_other: number | null; delta: number | null; improved: number; regressed: number }
interface Decision {
  accepted: boolean; reason: string; objective: string | null; best_candidate: string; stopped_early: string | null;
  dev: { baseline: number | null; best: number | null }; holdout?: { items: number; baseline: HoldoutSide; candidate: HoldoutSide }; test?: Test;
}
export interface Job {
  job_id: string; prompt_name: string; base_version: number; dataset_id: string; dataset_version: number; status: string;
  progress: Progress | null; history: Candidate[] | null; decision: Decision | null; result_version: number | null;
  experiments: { baseline: string | null; candidate: string | null }; error: string | null; created_at: string; finished_at: string | null;
}

const ALPHA = 0.05; // the optimiser's significance level (evaluators/optimizer/search.py ALPHA)
const LIVE = new Set(["queued", "running"]);
const mean = (v: number | null | undefined) => (v == null ? "–" : v.toFixed(3));
const jobPath = (name: string, id = "") => `/prompts/${encodeURIComponent(name)}/optimize${id ? `/${id}` : ""}`;

/** This prompt's optimisations, newest first; a row opens the job (``?job=``). Polls while one is live. */
export function OptimizeJobList({ name }: { name: string }) {
  const { projectId } = useProject();
  const [params, setParams] = useSearchParams();
  const jobs = useQuery({
    queryKey: ["optimize", projectId, name, "list"],
    queryFn: () => api<{ jobs: Job[] }>(jobPath(name), { project: projectId }),
    refetchInterval: (q) => (q.state.data?.jobs.some((j) => LIVE.has(j.status)) ? 2000 : false),
  });
  const open = params.get("job");
  return (
    <Resource q={jobs} what="optimisations">{(d) => d.jobs.length === 0 ? <p className="muted">No optimisation of this prompt yet.</p> : (
      <table className="list" aria-label="Optimisations"><thead><tr><th>Job</th><th>Status</th><th>Round</th><th>Calls</th><th>USD</th><th>Result</th><th>Created</th></tr></thead>
        <tbody>{d.jobs.map((j) => (
          <tr key={j.job_id} aria-selected={j.job_id === open} data-job-id={j.job_id}>
            <td><button type="button" className="link mono" onClick={() => setParams({ prompt: name, tab: "optimise", job: j.job_id })}>{j.job_id.slice(0, 8)}</button></td>
            <td>{j.status}</td>
            <td>{j.progress?.round ?? 0} / {j.progress?.rounds ?? "–"}</td>
            <td>{fmtInt(j.progress?.calls ?? 0)}</td><td>{fmtCost(j.progress?.usd ?? 0)}</td>
            <td>{j.result_version != null ? `v${j.result_version}` : j.decision ? "no new version" : "–"}</td>
            <td>{fmtTime(j.created_at)}</td>
          </tr>
        ))}</tbody></table>
    )}</Resource>
  );
}

/** One job: progress (polled while live), candidates with the race, the holdout decision, the new version. */
export function OptimizeJobView({ name, jobId, canWrite }: { name: string; jobId: string; canWrite: boolean }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const job = useQuery({
    queryKey: ["optimize", projectId, name, "job", jobId],
    queryFn: () => api<Job>(jobPath(name, jobId), { project: projectId }),
    refetchInterval: (q) => (q.state.data && LIVE.has(q.state.data.status) ? 2000 : false),
  });
  const cancel = useMutation({
    mutationFn: () => api(`${jobPath(name, jobId)}/cancel`, { method: "POST", project: projectId }),
    onSettled: () => qc.invalidateQueries({ queryKey: ["optimize", projectId, name] }),
  });
  return (
    <section role="region" aria-label="Optimisation job">
      <h3>Optimisation <span className="mono">{jobId.slice(0, 8)}</span></h3>
      <Resource q={job} what="optimisation">{(j) => (
        <>
          <dl className="stats" aria-label="Progress">
            <div><dt>Status</dt><dd data-testid="job-status">{j.status}{j.progress?.stage && LIVE.has(j.status) ? ` (${j.progress.stage})` : ""}</dd></div>
            <div><dt>Round</dt><dd data-testid="job-round">{j.progress?.round ?? 0} / {j.progress?.rounds ?? "–"}</dd></div>
            <div><dt>Calls</dt><dd data-testid="job-calls">{fmtInt(j.progress?.calls ?? 0)} / {fmtInt(j.progress?.max_calls)}</dd></div>
            <div><dt>USD</dt><dd data-testid="job-usd">{fmtCost(j.progress?.usd ?? 0)} / {fmtCost(j.progress?.max_usd)}</dd></div>
            <div><dt>Base</dt><dd>v{j.base_version} · dataset v{j.dataset_version}</dd></div>
            <div><dt>Created</dt><dd>{fmtTime(j.created_at)}</dd></div>
          </dl>
          {j.error && <p className="error-box" role="note">Error: {j.error}</p>}
          {canWrite && LIVE.has(j.status) && (
            <button type="button" onClick={() => cancel.mutate()} disabled={cancel.isPending}>Cancel optimisation</button>)}
          {cancel.error && <ErrorBox error={cancel.error} retry={() => cancel.mutate()} />}
          <Candidates list={j.history ?? []} best={j.progress?.best ?? null} />
          {j.decision && <DecisionView name={name} job={j} decision={j.decision} />}
          {j.result_version != null && <NewVersion name={name} version={j.result_version} canWrite={canWrite} />}
        </>
      )}</Resource>
    </section>
  );
}

function promptText(prompt: unknown): string {
  if (typeof prompt === "string") return prompt;
  if (Array.isArray(prompt)) return prompt.map((m: { role?: string; content?: string }) => `${m.role}: ${m.content}`).join("\n");
  return JSON.stringify(prompt);
}

function Candidates({ list, best }: { list: Candidate[]; best: string | null }) {
  if (list.length === 0) return <p className="muted">No candidate scored yet.</p>;
  return (
    <table className="list" aria-label="Candidates"><thead><tr><th>Candidate</th><th>Round</th><th>Status</th><th>Dev mean</th><th>Dev items</th><th>Race (items: mean)</th><th>Prompt</th></tr></thead>
      <tbody>{list.map((c) => (
        <tr key={c.id} data-candidate={c.id}>
          <td>{c.id}{c.id === best ? " ★" : ""}</td><td>{c.round}</td><td>{c.status}</td>
          <td>{mean(c.dev.mean)}</td><td>{c.dev.n}</td>
          <td>{c.race.length ? c.race.map((s) => `${s.items}: ${mean(s.mean)}`).join(" → ") : "–"}</td>
          <td><details><summary>{c.rationale || "prompt"}</summary><pre className="payload">{promptText(c.prompt)}</pre></details></td>
        </tr>
      ))}</tbody></table>
  );
}

function DecisionView({ name, job, decision: d }: { name: string; job: Job; decision: Decision }) {
  const { projectId } = useProject();
  const t = d.test;
  const { baseline, candidate } = job.experiments;
  const significant = t ? t.p_value < ALPHA : false;
  return (
    <div role="region" aria-label="Decision">
      <h4>Decision: {d.accepted ? "accepted" : "rejected"}</h4>
      <p data-testid="decision-reason">{d.accepted ? "" : "Why rejected: "}{d.reason}</p>
      <p className="muted">Objective {d.objective ?? "–"} · dev: baseline {mean(d.dev.baseline)}, best ({d.best_candidate}) {mean(d.dev.best)}
        {d.stopped_early ? ` · stopped early: ${d.stopped_early}` : ""}</p>
      {t && d.holdout && (
        <table className="list" aria-label="Holdout test"><tbody>
          <tr><th>Test</th><td data-testid="test-name">{t.test} (one-sided, {t.n} paired items)</td></tr>
          <tr><th>p-value</th><td data-testid="test-p">{fmtP(t.p_value)}</td></tr>
          <tr><th>Baseline mean</th><td data-testid="mean-baseline">{mean(t.mean_base)}</td></tr>
          <tr><th>Candidate mean</th><td data-testid="mean-candidate">{mean(t.mean_other)}</td></tr>
          <tr><th>Improved / regressed</th><td>{t.improved} / {t.regressed}</td></tr>
          <tr><th>Significant at 95 %</th><td data-testid="significant">{significant ? "yes" : "no"}</td></tr>
          <tr><th>Cost per item</th><td>{fmtCost(d.holdout.baseline.cost_per_item)} → {fmtCost(d.holdout.candidate.cost_per_item)}</td></tr>
          <tr><th>Latency p95</th><td>{fmtMs(d.holdout.baseline.latency_p95_ms)} → {fmtMs(d.holdout.candidate.latency_p95_ms)}</td></tr>
        </tbody></table>
      )}
      {baseline && candidate && (
        <p>Holdout runs: <Link to={`/projects/${projectId}/experiments/${baseline}`}>baseline experiment</Link> ·{" "}
          <Link to={`/projects/${projectId}/experiments/${candidate}`}>candidate experiment</Link> ·{" "}
          <Link to={`/projects/${projectId}/experiments/compare?ids=${baseline}&ids=${candidate}`}>compare the two</Link></p>
      )}
      <p className="muted small">Prompt {name} v{job.base_version} was the baseline.</p>
    </div>
  );
}

/** The accepted prompt, saved unlabelled; a person moves a label to it (never automatic). */
function NewVersion({ name, version, canWrite }: { name: string; version: number; canWrite: boolean }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const [, setParams] = useSearchParams();
  const [label, setLabel] = useState("production");
  const promote = useMutation({
    mutationFn: () => api(`/prompts/${encodeURIComponent(name)}/labels`, { method: "POST", project: projectId, body: { label, version } }),
    onSuccess: () => { qc.invalidateQueries({ queryKey: ["prompt", projectId, name] }); qc.invalidateQueries({ queryKey: ["prompts", projectId] }); },
  });
  return (
    <div role="region" aria-label="Proposed version">
      <p>Proposed version: <button type="button" className="link" onClick={() => setParams({ prompt: name, v: String(version) })}>v{version}</button> (saved unlabelled: a person promotes it)</p>
      {canWrite && (
        <form className="inline-form" aria-label="Promote to label" onSubmit={(e: FormEvent) => { e.preventDefault(); promote.mutate(); }}>
          <label>Promote v{version} to label<input required value={label} onChange={(e) => setLabel(e.target.value)} size={14} /></label>
          <button type="submit" disabled={promote.isPending}>Promote</button>
          {promote.isSuccess && <span role="status">{label} now points at v{version}</span>}
          {promote.error && <ErrorBox error={promote.error} retry={() => promote.mutate()} />}
        </form>
      )}
    </div>
  );
}
