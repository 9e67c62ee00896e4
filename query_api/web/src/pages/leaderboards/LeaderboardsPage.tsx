import { FormEvent } from "react";
import { Link, useSearchParams } from "react-router";
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { fmtCi, fmtCost, fmtMs, fmtNumber } from "../../lib/format";
import { DatasetRow } from "../datasets/DatasetsPage";

interface Entry {
  rank: number; entry: string; experiment_id: string; experiment_name: string; score: string | null; mean: number | null;
  ci_low: number | null; ci_high: number | null; n: number; cost_per_1000_items: number | null; latency_p50_ms: number | null;
}
interface Rating { entry: string; elo: number; elo_ci_low: number; elo_ci_high: number; comparisons: number; wins: number }
interface PairwiseResult {
  judge: string; calls: number; complete: boolean; stopped: { reason: string; retry_after: number | null } | null;
  errors: Array<{ item_id: string; error: string }>;
  pairs: Array<{ experiment_a: string; experiment_b: string; judged_now: number; wins_a: number; wins_b: number; ties: number }>;
}
interface Board {
  score: string | null; entries: Entry[]; bradley_terry: Rating[];
  bradley_terry_source?: "judge" | "scores" | "judge+scores" | null; bradley_terry_judge?: string | null;
}

/** Where the ratings come from: one judge's verdicts, per-item score outcomes, or both (the judge's
 * pairs from it, the pairs it did not compare from the scores). */
function ratingSource(b: Board): string {
  if (b.bradley_terry_source === "judge") return `pairwise verdicts of ${b.bradley_terry_judge}`;
  if (b.bradley_terry_source === "judge+scores")
    return `pairwise verdicts of ${b.bradley_terry_judge}; per-item score outcomes for the pairs it did not judge`;
  return "per-item score outcomes";
}

/** Models / agents on one dataset (``?dataset_id=``) or benchmark (``?benchmark=``): ranked by score
 * ± CI with n, cost per 1,000 items and p50 latency, and their Bradley–Terry ratings. */
export default function LeaderboardsPage() {
  const { projectId } = useProject();
  const [params, setParams] = useSearchParams();
  const datasetId = params.get("dataset_id") ?? "";
  const benchmark = params.get("benchmark") ?? "";
  const datasets = useQuery({ queryKey: ["datasets", projectId], queryFn: () => api<{ datasets: DatasetRow[] }>("/datasets", { project: projectId }) });
  const benches = useQuery({ queryKey: ["benchmarks", projectId], queryFn: () => api<{ benchmarks: Array<{ name: string }> }>("/benchmarks", { project: projectId }), staleTime: Infinity });
  const board = useQuery({
    queryKey: ["leaderboard", projectId, datasetId, benchmark],
    queryFn: ({ signal }) => api<Board>("/leaderboards", { project: projectId, params: { dataset_id: datasetId, benchmark }, signal }),
    enabled: Boolean(datasetId || benchmark),
    placeholderData: keepPreviousData,
  });
  const pick = (value: string) => {
    const [kind, id] = value.split(":", 2);
    setParams(kind === "d" ? { dataset_id: id } : kind === "b" ? { benchmark: id } : {});
  };
  const current = datasetId ? `d:${datasetId}` : benchmark ? `b:${benchmark}` : "";
  return (
    <div className="page">
      <div className="page-head">
        <h1>Leaderboards</h1>
        <label>Dataset or benchmark
          <select value={current} onChange={(e) => pick(e.target.value)}>
            <option value="">choose…</option>
            <optgroup label="Datasets">{(datasets.data?.datasets ?? []).map((d) => <option key={d.id} value={`d:${d.id}`}>{d.name}</option>)}</optgroup>
            <optgroup label="Benchmarks">{(benches.data?.benchmarks ?? []).map((b) => <option key={b.name} value={`b:${b.name}`}>{b.name}</option>)}</optgroup>
          </select></label>
      </div>
      {!current ? <p className="muted">Choose a dataset or a benchmark.</p> : (
        <Resource q={board} what="leaderboard">{(b) => b.entries.length === 0 ? <p className="muted">No completed runs on it yet.</p> : (
          <>
            <h2>Ranking by {b.score ?? "score"}</h2>
            <table className="list" data-testid="leaderboard-table">
              <thead><tr><th>Rank</th><th>Model / agent</th><th>Mean ± 95 % CI</th><th>n</th><th>Cost per 1,000 items</th><th>Latency p50</th><th>Run</th></tr></thead>
              <tbody>{b.entries.map((e) => (
                <tr key={e.entry} data-testid="leaderboard-row" data-entry={e.entry}>
                  <td>{e.rank}</td><td>{e.entry}</td><td>{fmtCi(e.mean, e.ci_low, e.ci_high)}</td><td>{e.n}</td>
                  <td>{fmtCost(e.cost_per_1000_items)}</td><td>{fmtMs(e.latency_p50_ms)}</td>
                  <td><Link to={`/projects/${projectId}/experiments/${e.experiment_id}`}>{e.experiment_name}</Link></td></tr>))}</tbody>
            </table>
            {b.entries.length > 1 && <PairwiseForm experimentIds={b.entries.map((e) => e.experiment_id)} />}
            {b.bradley_terry.length > 0 && (
              <>
                <h2>Bradley–Terry ratings <span className="muted small">
                  (from {ratingSource(b)}; Elo scale, 95 % bootstrap CI)</span></h2>
                <table className="list" data-testid="bt-table">
                  <thead><tr><th>Model / agent</th><th>Rating [95 % CI]</th><th>Comparisons</th><th>Wins</th></tr></thead>
                  <tbody>{b.bradley_terry.map((r) => (
                    <tr key={r.entry} data-testid="bt-row" data-entry={r.entry}><td>{r.entry}</td>
                      <td>{fmtCi(r.elo, r.elo_ci_low, r.elo_ci_high, 0)}</td><td>{r.comparisons}</td><td>{fmtNumber(r.wins)}</td></tr>))}</tbody>
                </table>
              </>
            )}
          </>
        )}</Resource>
      )}
    </div>
  );
}

/** Ask a judge model which run answered each item better (both orders; disagreement = a tie): the
 * ratings above then come from its verdicts. Synchronous; when the judge rate limit stops it early,
 * running it again continues. */
function PairwiseForm({ experimentIds }: { experimentIds: string[] }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const run = useMutation({
    mutationFn: (body: unknown) => api<PairwiseResult>("/leaderboards/pairwise", { method: "POST", body, project: projectId }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["leaderboard", projectId] }),
  });
  const submit = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const judge: Record<string, unknown> = { provider: f.get("provider"), model: f.get("model") };
    if (f.get("base_url")) judge.base_url = f.get("base_url");
    if (f.get("rubric")) judge.rubric = f.get("rubric");
    run.mutate({ experiment_ids: experimentIds, judge, limit: Number(f.get("limit")) });
  };
  return (
    <details>
      <summary>Judge the entries pairwise</summary>
      <form className="score-form" onSubmit={submit} aria-label="Pairwise judge">
        <label>Provider<select name="provider" defaultValue="openai"><option value="openai">OpenAI-compatible</option><option value="anthropic">Anthropic</option></select></label>
        <label>Judge model<input name="model" required defaultValue="gpt-4o-mini" /></label>
        <label>Base URL (optional)<input name="base_url" type="url" /></label>
        <label className="grow">Criteria (optional)<input name="rubric" /></label>
        <label>Items per pair<input name="limit" type="number" min={1} max={1000} defaultValue={20} /></label>
        <button type="submit" disabled={run.isPending}>{run.isPending ? "Judging…" : "Judge"}</button>
      </form>
      {run.error && <ErrorBox error={run.error} />}
      {run.data && (
        <div role="status" data-testid="pairwise-result">
          {run.data.calls} judge calls by {run.data.judge}; {run.data.pairs.reduce((n, p) => n + p.judged_now, 0)} new verdicts.
          {run.data.stopped && <> Stopped early ({run.data.stopped.reason}): run it again to continue.</>}
          {run.data.errors.length > 0 && <ul>{run.data.errors.slice(0, 10).map((e, i) => <li key={i} className="error-text">{e.item_id}: {e.error}</li>)}</ul>}
        </div>
      )}
    </details>
  );
}
