import { FormEvent, useState } from "react";
import { Link, useNavigate } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { fmtInt, fmtTime } from "../../lib/format";

export interface DatasetRow { id: string; name: string; description: string; version: number; items: number; updated_at: string }

/** Parses the create form's optional items: one JSON object a line ({input, expected_output, metadata}). */
export function parseJsonl(text: string): unknown[] {
  return text.split("\n").map((l) => l.trim()).filter(Boolean).map((l, i) => {
    try { return JSON.parse(l); } catch { throw new Error(`items line ${i + 1}: not JSON`); }
  });
}

/** The project's datasets (name, items, version, last change) and a form to create one. */
export default function DatasetsPage() {
  const { projectId } = useProject();
  const navigate = useNavigate();
  const qc = useQueryClient();
  const list = useQuery({ queryKey: ["datasets", projectId], queryFn: () => api<{ datasets: DatasetRow[] }>("/datasets", { project: projectId }) });
  const [formError, setFormError] = useState<Error | null>(null);
  const create = useMutation({
    mutationFn: (body: { name: string; items: unknown[] }) => api<{ id: string }>("/datasets", { method: "POST", body, project: projectId }),
    onSuccess: (r) => { qc.invalidateQueries({ queryKey: ["datasets", projectId] }); navigate(`/projects/${projectId}/datasets/${r.id}`); },
  });
  const submit = (e: FormEvent<HTMLFormElement>) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    try {
      setFormError(null);
      create.mutate({ name: String(f.get("name") || ""), items: parseJsonl(String(f.get("items") || "")) });
    } catch (err) { setFormError(err as Error); }
  };
  return (
    <div className="page">
      <div className="page-head"><h1>Datasets</h1></div>
      <Resource q={list} what="datasets">{(d) => d.datasets.length === 0 ? <p className="muted">No datasets yet.</p> : (
        <table className="list" data-testid="datasets-table"><thead><tr><th>Name</th><th>Items</th><th>Version</th><th>Updated</th></tr></thead>
          <tbody>{d.datasets.map((ds) => (
            <tr key={ds.id} data-testid="dataset-row" data-dataset-id={ds.id}>
              <td><Link to={`/projects/${projectId}/datasets/${ds.id}`}>{ds.name}</Link>{ds.description && <div className="muted small">{ds.description}</div>}</td>
              <td>{fmtInt(ds.items)}</td><td>v{ds.version}</td><td>{fmtTime(ds.updated_at)}</td></tr>
          ))}</tbody></table>
      )}</Resource>
      <h2>Create a dataset</h2>
      <form className="score-form" onSubmit={submit} aria-label="Create a dataset">
        <label>Name<input name="name" required maxLength={200} /></label>
        <label className="grow">Items (optional; one JSON object a line: {"{"}"input": …, "expected_output": …{"}"})
          <textarea name="items" rows={3} /></label>
        <button type="submit" disabled={create.isPending}>Create</button>
      </form>
      {(formError || create.error) && <ErrorBox error={formError ?? create.error} />}
    </div>
  );
}
