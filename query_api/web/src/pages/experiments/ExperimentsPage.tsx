import { useState } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { useQuery } from "@tanstack/react-query";
import { api } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { fmtCi, fmtCost, fmtTime } from "../../lib/format";
import { withParam } from "../../lib/url";
import { DatasetRow } from "../datasets/DatasetsPage";
import { Experiment, RUNNING, ranOn, targetOf } from "./types";

/** Every run (``?dataset_id=`` narrows to one dataset): what it ran on, target, status with progress,
 * main score ± CI, cost; tick 2..N runs on the same dataset version to compare them. */
export default function ExperimentsPage() {
  const { projectId } = useProject();
  const navigate = useNavigate();
  const [params, setParams] = useSearchParams();
  const datasetId = params.get("dataset_id") ?? "";
  const [picked, setPicked] = useState<string[]>([]);
  const list = useQuery({
    queryKey: ["experiments", projectId, datasetId],
    queryFn: ({ signal }) => api<{ experiments: Experiment[] }>("/experiments", { project: projectId, params: { dataset_id: datasetId, summary: true, limit: 100 }, signal }),
    // Each poll summarises every listed run: slower than the run page's, which is the live view.
    refetchInterval: (q) => (q.state.data?.experiments.some((e) => RUNNING.has(e.status)) ? 5000 : false),
  });
  const datasets = useQuery({ queryKey: ["datasets", projectId], queryFn: () => api<{ datasets: DatasetRow[] }>("/datasets", { project: projectId }) });
  const names = new Map((datasets.data?.datasets ?? []).map((d) => [d.id, d.name]));
  const toggle = (id: string) => setPicked((p) => (p.includes(id) ? p.filter((x) => x !== id) : [...p, id]));
  return (
    <div className="page">
      <div className="page-head">
        <h1>Experiments</h1>
        <label>Dataset
          <select value={datasetId} onChange={(e) => setParams(withParam(params, "dataset_id", e.target.value || null))}>
            <option value="">all</option>
            {(datasets.data?.datasets ?? []).map((d) => <option key={d.id} value={d.id}>{d.name}</option>)}
          </select></label>
        <button type="button" disabled={picked.length < 2}
                onClick={() => navigate(`/projects/${projectId}/experiments/compare?${picked.map((id) => `ids=${id}`).join("&")}`)}>
          Compare selected ({picked.length})</button>
      </div>
      <Resource q={list} what="experiments">{(d) => d.experiments.length === 0 ? <p className="muted">No experiments yet.</p> : (
        <table className="list" data-testid="experiments-table">
          <thead><tr><th><span className="sr-only">Select</span></th><th>Name</th><th>Ran on</th><th>Target</th><th>Status</th><th>Main score ± 95 % CI</th><th>Cost</th><th>Created</th></tr></thead>
          <tbody>{d.experiments.map((e) => (
            <tr key={e.id} data-testid="experiment-row" data-experiment-id={e.id}>
              <td><input type="checkbox" aria-label={`Select ${e.name} for comparison`} checked={picked.includes(e.id)} onChange={() => toggle(e.id)} /></td>
              <td><Link to={`/projects/${projectId}/experiments/${e.id}`}>{e.name}</Link></td>
              <td>{e.dataset_id ? <Link to={`/projects/${projectId}/datasets/${e.dataset_id}?version=${e.dataset_version}`}>{names.get(e.dataset_id) ?? e.dataset_id.slice(0, 8)}</Link> : null} {ranOn(e)}</td>
              <td>{targetOf(e)}</td>
              <td><span className={`status status-${e.status}`}>{e.status}</span>{" "}
                {RUNNING.has(e.status) && <progress className="progress" max={e.progress.total} value={e.progress.done} aria-label={`${e.name} progress`} />}
                <span className="muted small"> {e.progress.done}/{e.progress.total}</span></td>
              <td>{e.main_score ? <>{e.main_score.name}: {fmtCi(e.main_score.mean, e.main_score.ci_low, e.main_score.ci_high)} <span className="muted small">n={e.main_score.n}</span></> : "–"}</td>
              <td>{fmtCost(e.cost)}</td><td>{fmtTime(e.created_at)}</td>
            </tr>
          ))}</tbody></table>
      )}</Resource>
    </div>
  );
}
