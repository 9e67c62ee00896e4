import { FormEvent, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useSearchParams } from "react-router";
import { api, WRITE_ROLES } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { fmtTime } from "../../lib/format";
import { PromptDetail } from "./PromptDetail";

export interface PromptSummary { name: string; latest_version: number; type: string; tags: string[]; labels: Record<string, number>; updated_at: string }

/** Prompts: the list; a selected prompt (``?prompt=``) shows its versions, a version, a diff and the playground. */
export default function PromptsPage() {
  const { projectId, project } = useProject();
  const canWrite = !!project && WRITE_ROLES.has(project.role);
  const [params, setParams] = useSearchParams();
  const selected = params.get("prompt");
  const prompts = useQuery({ queryKey: ["prompts", projectId], queryFn: () => api<{ prompts: PromptSummary[] }>("/prompts", { project: projectId }) });
  return (
    <div className="page">
      <h1>Prompts</h1>
      <Resource q={prompts} what="prompts">{(d) => d.prompts.length === 0
        ? <p className="muted">No prompts yet{canWrite ? ": create the first one below." : "."}</p>
        : (
          <table className="list" aria-label="Prompts"><thead><tr><th>Name</th><th>Type</th><th>Latest</th><th>Labels</th><th>Updated</th></tr></thead>
            <tbody>{d.prompts.map((p) => (
              <tr key={p.name} aria-selected={p.name === selected}>
                <td><button type="button" className="link" onClick={() => setParams({ prompt: p.name })}>{p.name}</button></td>
                <td>{p.type}</td><td>v{p.latest_version}</td>
                <td>{Object.entries(p.labels).map(([l, v]) => <span key={l} className="chip">{l}: v{v}</span>)}</td>
                <td>{fmtTime(p.updated_at)}</td>
              </tr>
            ))}</tbody></table>
        )}</Resource>
      {selected && <PromptDetail key={selected} name={selected} canWrite={canWrite} />}
      {canWrite && <NewVersionForm initialName={selected ?? ""} key={`new-${selected ?? ""}`} />}
    </div>
  );
}

function parseJson(text: string, field: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${field}: not valid JSON`);
  }
}

/** A new version of a prompt (a new prompt when the name is new). */
function NewVersionForm({ initialName }: { initialName: string }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const [, setParams] = useSearchParams();
  const [form, setForm] = useState({ name: initialName, type: "text", text: "", messages: '[\n  {"role": "system", "content": ""},\n  {"role": "user", "content": "{{question}}"}\n]', config: "{}", labels: "", message: "" });
  const create = useMutation({
    mutationFn: async () => {
      const prompt = form.type === "text" ? form.text : parseJson(form.messages, "prompt");
      const labels = form.labels.split(",").map((l) => l.trim()).filter(Boolean);
      return api<{ name: string; version: number }>("/prompts", { method: "POST", project: projectId, body: {
        name: form.name, type: form.type, prompt, config: parseJson(form.config || "{}", "config"), labels, message: form.message } });
    },
    onSuccess: (v) => {
      qc.invalidateQueries({ queryKey: ["prompts", projectId] });
      qc.invalidateQueries({ queryKey: ["prompt", projectId, v.name] });
      setParams({ prompt: v.name, v: String(v.version) });
    },
  });
  const set = (k: keyof typeof form) => (e: { target: { value: string } }) => setForm({ ...form, [k]: e.target.value });
  return (
    <section aria-labelledby="new-version-h">
      <h2 id="new-version-h">New version</h2>
      <form className="stack-form" aria-label="New prompt version" onSubmit={(e: FormEvent) => { e.preventDefault(); create.mutate(); }}>
        <div className="inline-form">
          <label>Name<input required value={form.name} onChange={set("name")} size={24} /></label>
          <label>Type<select value={form.type} onChange={set("type")}><option value="text">text</option><option value="chat">chat</option></select></label>
          <label>Labels (comma separated)<input value={form.labels} onChange={set("labels")} placeholder="production, staging" size={20} /></label>
          <label>Commit message<input value={form.message} onChange={set("message")} size={30} /></label>
        </div>
        {form.type === "text"
          ? <label>Prompt text<textarea required rows={6} value={form.text} onChange={set("text")} placeholder="Answer {{question}}" /></label>
          : <label>Messages (JSON)<textarea required rows={8} className="mono" value={form.messages} onChange={set("messages")} /></label>}
        <label>Config (JSON)<textarea rows={3} className="mono" value={form.config} onChange={set("config")} /></label>
        <div><button type="submit" disabled={create.isPending}>Save version</button></div>
      </form>
      {create.error && <ErrorBox error={create.error} />}
    </section>
  );
}
