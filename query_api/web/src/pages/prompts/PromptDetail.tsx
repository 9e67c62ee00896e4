import { FormEvent, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { Link, useSearchParams } from "react-router";
import { api } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { JsonTree } from "../../components/JsonTree";
import { fmtTime } from "../../lib/format";
import { OptimizeStart } from "./OptimizeStart";
import { OptimizeJobList, OptimizeJobView } from "./OptimizeJobs";

type Message = { role: string; content: string };
export interface Version {
  name: string; version: number; type: "text" | "chat"; prompt: string | Message[]; config: Record<string, unknown>;
  tags: string[]; message: string; author: string | null; labels: string[]; created_at: string;
}
interface Diff { from: number; to: number; prompt: string; config: string; messages: { index: number; status: string; diff: string }[] }

const VARIABLE = /\{\{\s*([A-Za-z_][\w]*(?:\.[\w]+)*)\s*\}\}/g;

function variablesOf(prompt: Version["prompt"]): string[] {
  const texts = typeof prompt === "string" ? [prompt] : prompt.map((m) => m.content);
  const seen = new Set<string>();
  for (const t of texts) for (const m of t.matchAll(VARIABLE)) seen.add(m[1].split(".")[0]);
  return [...seen];
}

/** One prompt, in two tabs (``?tab=``): its versions, or its optimisations. */
export function PromptDetail({ name, canWrite }: { name: string; canWrite: boolean }) {
  const [params, setParams] = useSearchParams();
  const tab = params.get("tab") === "optimise" ? "optimise" : "versions";
  const job = params.get("job");
  return (
    <section aria-labelledby="prompt-h">
      <h2 id="prompt-h">Prompt {name}</h2>
      <div role="tablist" aria-label="Prompt views" className="inline-form">
        <button type="button" role="tab" aria-selected={tab === "versions"} onClick={() => setParams({ prompt: name })}>Versions</button>
        <button type="button" role="tab" aria-selected={tab === "optimise"} onClick={() => setParams({ prompt: name, tab: "optimise" })}>Optimise</button>
      </div>
      {tab === "versions" ? <VersionsTab name={name} canWrite={canWrite} /> : (
        <div role="tabpanel" aria-label="Optimise">
          {canWrite && <OptimizeStart name={name} />}
          <OptimizeJobList name={name} />
          {job && <OptimizeJobView key={job} name={name} jobId={job} canWrite={canWrite} />}
        </div>
      )}
    </section>
  );
}

/** Versions with labels, the selected version (``?v=``), a diff (``?from=&to=``), label moves, playground. */
function VersionsTab({ name, canWrite }: { name: string; canWrite: boolean }) {
  const { projectId } = useProject();
  const [params, setParams] = useSearchParams();
  const versions = useQuery({ queryKey: ["prompt", projectId, name, "versions"],
                              queryFn: () => api<{ versions: Version[] }>(`/prompts/${encodeURIComponent(name)}/versions`, { project: projectId }) });
  const go = (extra: Record<string, string>) => setParams({ prompt: name, ...extra });
  return (
    <div role="tabpanel" aria-label="Versions">
      <Resource q={versions} what="versions">{(d) => {
        const shown = Number(params.get("v")) || d.versions[0]?.version;
        const version = d.versions.find((v) => v.version === shown);
        return (
          <>
            <table className="list" aria-label="Versions"><thead><tr><th>Version</th><th>Labels</th><th>Message</th><th>Author</th><th>Created</th></tr></thead>
              <tbody>{d.versions.map((v) => (
                <tr key={v.version} aria-selected={v.version === shown}>
                  <td><button type="button" className="link" onClick={() => go({ v: String(v.version) })}>v{v.version}</button></td>
                  <td>{v.labels.map((l) => <span key={l} className="chip">{l}</span>)}</td>
                  <td>{v.message}</td><td>{v.author ?? "–"}</td><td>{fmtTime(v.created_at)}</td>
                </tr>
              ))}</tbody></table>
            <DiffPicker versions={d.versions} />
            {params.get("from") && params.get("to")
              ? <DiffView name={name} from={params.get("from")!} to={params.get("to")!} />
              : version && <VersionView version={version} />}
            {canWrite && <MoveLabel name={name} versions={d.versions} />}
            <LabelHistory name={name} />
            {canWrite && version && <Playground key={version.version} version={version} />}
          </>
        );
      }}</Resource>
    </div>
  );
}

function VersionView({ version }: { version: Version }) {
  return (
    <div aria-label={`Version ${version.version}`} role="region">
      <h3>v{version.version} <span className="muted">({version.type})</span></h3>
      {typeof version.prompt === "string"
        ? <pre className="payload" data-testid="prompt-text">{version.prompt}</pre>
        : version.prompt.map((m, i) => (
          <div key={i} className="message"><strong>{m.role}</strong><pre className="payload">{m.content}</pre></div>
        ))}
      <h4>Config</h4>
      <JsonTree value={version.config} />
      {version.tags.length > 0 && <p>Tags: {version.tags.map((t) => <span key={t} className="chip">{t}</span>)}</p>}
    </div>
  );
}

function DiffPicker({ versions }: { versions: Version[] }) {
  const [params, setParams] = useSearchParams();
  const newest = versions[0]?.version ?? 1;
  const [from, setFrom] = useState(params.get("from") ?? String(Math.max(1, newest - 1)));
  const [to, setTo] = useState(params.get("to") ?? String(newest));
  if (versions.length < 2) return null;
  const options = versions.map((v) => <option key={v.version} value={v.version}>v{v.version}</option>);
  return (
    <form className="inline-form" aria-label="Compare versions" onSubmit={(e: FormEvent) => {
      e.preventDefault(); setParams({ prompt: versions[0].name, from, to });
    }}>
      <label>From<select value={from} onChange={(e) => setFrom(e.target.value)}>{options}</select></label>
      <label>To<select value={to} onChange={(e) => setTo(e.target.value)}>{options}</select></label>
      <button type="submit">Show diff</button>
    </form>
  );
}

function DiffText({ text, label }: { text: string; label: string }) {
  if (!text) return <p className="muted">{label}: no change.</p>;
  return (
    <pre className="payload diff" aria-label={label}>{text.split("\n").map((line, i) => (
      <div key={i} className={line.startsWith("+") && !line.startsWith("+++") ? "diff-add"
        : line.startsWith("-") && !line.startsWith("---") ? "diff-del" : undefined}>{line}</div>
    ))}</pre>
  );
}

function DiffView({ name, from, to }: { name: string; from: string; to: string }) {
  const { projectId } = useProject();
  const diff = useQuery({ queryKey: ["prompt", projectId, name, "diff", from, to],
                          queryFn: () => api<Diff>(`/prompts/${encodeURIComponent(name)}/diff`, { project: projectId, params: { from, to } }) });
  return (
    <div role="region" aria-label="Diff">
      <h3>Diff v{from} → v{to}</h3>
      <Resource q={diff} what="diff">{(d) => (
        <>
          <DiffText text={d.prompt} label="Prompt diff" />
          {d.messages.length > 0 && (
            <table className="list" aria-label="Messages changed"><thead><tr><th>Message</th><th>Change</th><th>Diff</th></tr></thead>
              <tbody>{d.messages.map((m) => (
                <tr key={m.index}><td>#{m.index + 1}</td><td>{m.status}</td>
                  <td>{m.diff ? <DiffText text={m.diff} label={`Message ${m.index + 1} diff`} /> : "–"}</td></tr>
              ))}</tbody></table>
          )}
          <DiffText text={d.config} label="Config diff" />
        </>
      )}</Resource>
    </div>
  );
}

function MoveLabel({ name, versions }: { name: string; versions: Version[] }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const [label, setLabel] = useState("production");
  const [version, setVersion] = useState(String(versions[0]?.version ?? 1));
  const move = useMutation({
    mutationFn: () => api(`/prompts/${encodeURIComponent(name)}/labels`, { method: "POST", project: projectId, body: { label, version: Number(version) } }),
    onSuccess: () => { qc.invalidateQueries({ queryKey: ["prompt", projectId, name] }); qc.invalidateQueries({ queryKey: ["prompts", projectId] }); },
  });
  return (
    <form className="inline-form" aria-label="Move a label" onSubmit={(e: FormEvent) => { e.preventDefault(); move.mutate(); }}>
      <label>Label<input required value={label} onChange={(e) => setLabel(e.target.value)} size={14} /></label>
      <label>To version<select value={version} onChange={(e) => setVersion(e.target.value)}>
        {versions.map((v) => <option key={v.version} value={v.version}>v{v.version}</option>)}</select></label>
      <button type="submit" disabled={move.isPending}>Move label</button>
      {move.error && <ErrorBox error={move.error} />}
    </form>
  );
}

interface LabelEvent { label: string; from_version: number | null; to_version: number | null; moved_by: string | null; moved_at: string }

function LabelHistory({ name }: { name: string }) {
  const { projectId } = useProject();
  const history = useQuery({ queryKey: ["prompt", projectId, name, "label-history"],
                             queryFn: () => api<{ events: LabelEvent[] }>(`/prompts/${encodeURIComponent(name)}/labels/history`, { project: projectId }) });
  const v = (n: number | null) => (n == null ? "–" : `v${n}`);
  return (
    <details>
      <summary>Label history</summary>
      <Resource q={history} what="label history">{(d) => d.events.length === 0 ? <p className="muted">No label was ever set.</p> : (
        <table className="list" aria-label="Label history"><thead><tr><th>Label</th><th>From</th><th>To</th><th>By</th><th>When</th></tr></thead>
          <tbody>{d.events.map((e, i) => (
            <tr key={i}><td>{e.label}</td><td>{v(e.from_version)}</td><td>{e.to_version == null ? "removed" : v(e.to_version)}</td>
              <td>{e.moved_by ?? "–"}</td><td>{fmtTime(e.moved_at)}</td></tr>
          ))}</tbody></table>
      )}</Resource>
    </details>
  );
}

interface PlaygroundResult { output: string; model: string; input_tokens: number; output_tokens: number; latency_ms: number; trace_id: string }

function Playground({ version }: { version: Version }) {
  const { projectId } = useProject();
  const vars = variablesOf(version.prompt);
  const [values, setValues] = useState<Record<string, string>>(Object.fromEntries(vars.map((v) => [v, ""])));
  const [model, setModel] = useState(String(version.config.model ?? ""));
  const [provider, setProvider] = useState(String(version.config.provider ?? "openai"));
  const [baseUrl, setBaseUrl] = useState("");
  const run = useMutation({
    mutationFn: () => api<PlaygroundResult>(`/prompts/${encodeURIComponent(version.name)}/playground`, { method: "POST", project: projectId, body: {
      version: version.version, variables: values, model: model || undefined, provider, base_url: baseUrl || undefined } }),
  });
  return (
    <section aria-labelledby="playground-h">
      <h3 id="playground-h">Playground (v{version.version})</h3>
      <form className="inline-form" aria-label="Playground" onSubmit={(e: FormEvent) => { e.preventDefault(); run.mutate(); }}>
        {vars.map((v) => (
          <label key={v}>{`{{${v}}}`}<input value={values[v] ?? ""} onChange={(e) => setValues({ ...values, [v]: e.target.value })} /></label>
        ))}
        <label>Model<input required value={model} onChange={(e) => setModel(e.target.value)} size={16} /></label>
        <label>Provider<select value={provider} onChange={(e) => setProvider(e.target.value)}>
          <option value="openai">openai</option><option value="anthropic">anthropic</option></select></label>
        <label>Base URL<input value={baseUrl} onChange={(e) => setBaseUrl(e.target.value)} placeholder="provider default" size={28} /></label>
        <button type="submit" disabled={run.isPending}>Run</button>
      </form>
      {run.error && <ErrorBox error={run.error} retry={() => run.mutate()} />}
      {run.data && (
        <div role="status" aria-label="Playground output">
          <pre className="payload">{run.data.output}</pre>
          <p className="muted">{run.data.model} · {run.data.input_tokens} → {run.data.output_tokens} tokens · {Math.round(run.data.latency_ms)} ms ·{" "}
            <Link to={`/projects/${projectId}/traces/${run.data.trace_id}`}>trace</Link></p>
        </div>
      )}
    </section>
  );
}
