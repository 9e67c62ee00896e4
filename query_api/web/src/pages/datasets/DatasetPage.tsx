import { FormEvent, useMemo } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import { keepPreviousData, useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { ColumnDef } from "@tanstack/react-table";
import { api } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { JsonTree } from "../../components/JsonTree";
import { VirtualTable } from "../../components/VirtualTable";
import { fmtTime } from "../../lib/format";
import { withParam } from "../../lib/url";

interface Item {
  item_id: string; input: unknown; expected_output: unknown; metadata: Record<string, unknown>; split: string | null;
  tags: string[] | null; source_trace_id: string | null; source_span_id: string | null;
}
interface Dataset { id: string; name: string; description: string; version: number; latest_version: number; created_at: string; items: Item[] }
interface ImportResult { version: number; added: number; rejected: Array<{ index: number; error: string }> }

const SPLITS = ["train", "dev", "test"];

/** One dataset at a version (``?version=``, default latest; ``?split=``): its items, upload and export. */
export default function DatasetPage() {
  const { projectId } = useProject();
  const { datasetId = "" } = useParams();
  const [params, setParams] = useSearchParams();
  const version = params.get("version") ?? "";
  const split = params.get("split") ?? "";
  const qc = useQueryClient();
  const ds = useQuery({
    queryKey: ["dataset", projectId, datasetId, version, split],
    queryFn: ({ signal }) => api<Dataset>(`/datasets/${datasetId}`, { project: projectId, params: { version, split }, signal }),
    placeholderData: keepPreviousData,
  });
  const upload = useMutation({
    mutationFn: (form: FormData) => api<ImportResult>(`/datasets/${datasetId}/import`, { method: "POST", body: form, project: projectId }),
    onSuccess: () => { qc.invalidateQueries({ queryKey: ["dataset", projectId, datasetId] }); qc.invalidateQueries({ queryKey: ["datasets", projectId] }); setParams(withParam(params, "version", null)); },
  });
  const onUpload = (e: FormEvent<HTMLFormElement>) => { e.preventDefault(); upload.mutate(new FormData(e.currentTarget)); };
  const columns = useMemo<ColumnDef<Item>[]>(() => [
    { id: "input", header: "Input", cell: (c) => <JsonTree value={c.row.original.input} /> },
    { id: "expected", header: "Expected output", cell: (c) => <JsonTree value={c.row.original.expected_output} /> },
    { id: "metadata", header: "Metadata", cell: (c) => <JsonTree value={c.row.original.metadata} /> },
    { id: "split", header: "Split", cell: (c) => c.row.original.split ?? "–" },
    { id: "source", header: "Source trace", cell: (c) => c.row.original.source_trace_id
        ? <Link to={`/projects/${projectId}/traces/${c.row.original.source_trace_id}`}>{c.row.original.source_trace_id.slice(0, 12)}</Link> : "–" },
  ], [projectId]);
  const exportHref = (fmt: string, v: number) =>
    `/api/v1/datasets/${datasetId}/export?format=${fmt}&version=${v}${split ? `&split=${split}` : ""}&project=${encodeURIComponent(projectId)}`;
  return (
    <div className="page">
      <Resource q={ds} what="dataset">{(d) => (
        <>
          <div className="page-head">
            <h1>{d.name}</h1>
            <label>Version
              <select value={version || String(d.latest_version)} onChange={(e) => setParams(withParam(params, "version", e.target.value === String(d.latest_version) ? null : e.target.value))}>
                {Array.from({ length: d.latest_version }, (_, i) => d.latest_version - i).map((v) => (
                  <option key={v} value={v}>v{v}{v === d.latest_version ? " (latest)" : ""}</option>))}
              </select></label>
            <label>Split
              <select value={split} onChange={(e) => setParams(withParam(params, "split", e.target.value || null))}>
                <option value="">all</option>{SPLITS.map((s) => <option key={s} value={s}>{s}</option>)}
              </select></label>
            <span className="muted">created {fmtTime(d.created_at)}</span>
            <span>Export: {["jsonl", "csv", "parquet"].map((f) => <a key={f} href={exportHref(f, d.version)} download style={{ marginRight: 8 }}>{f.toUpperCase()}</a>)}</span>
            <Link to={`/projects/${projectId}/experiments?dataset_id=${d.id}`}>Experiments on this dataset</Link>
          </div>
          {d.description && <p className="muted">{d.description}</p>}
          <VirtualTable rows={d.items} columns={columns} rowId={(r) => r.item_id} label="Dataset items" testId="items-table" rowTestId="item-row"
                        widths={{ input: "minmax(200px, 2fr)", expected: "minmax(160px, 1.5fr)", metadata: "minmax(140px, 1fr)", split: "70px", source: "120px" }} />
        </>
      )}</Resource>
      <h2>Upload items</h2>
      <form className="inline-form" onSubmit={onUpload} aria-label="Upload items">
        <label>File (JSONL, CSV or Parquet)<input type="file" name="file" required accept=".jsonl,.json,.csv,.parquet" /></label>
        <button type="submit" disabled={upload.isPending}>{upload.isPending ? "Uploading…" : "Upload as a new version"}</button>
      </form>
      {upload.error && <ErrorBox error={upload.error} />}
      {upload.data && (
        <div role="status" data-testid="upload-result">Added {upload.data.added} items as v{upload.data.version}.
          {upload.data.rejected.length > 0 && <ul>{upload.data.rejected.slice(0, 20).map((r) => <li key={r.index} className="error-text">{r.error}</li>)}</ul>}
        </div>
      )}
    </div>
  );
}
