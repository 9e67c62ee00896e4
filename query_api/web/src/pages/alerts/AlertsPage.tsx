import { FormEvent, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, WRITE_ROLES } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { JsonTree } from "../../components/JsonTree";

interface Rule { id: string; name: string; metric: string; aggregation: string; comparator: string; threshold: number; window_seconds: number; enabled: boolean; state?: unknown }

export default function AlertsPage() {
  const { projectId, project } = useProject();
  const canWrite = !!project && WRITE_ROLES.has(project.role);
  const qc = useQueryClient();
  const rules = useQuery({ queryKey: ["alert-rules", projectId], queryFn: () => api<{ rules?: Rule[] } | Rule[]>("/alert-rules", { project: projectId }) });
  const [form, setForm] = useState({ name: "", metric: "error_rate", aggregation: "avg", comparator: ">", threshold: "0.1", window_seconds: "300", slack_webhook_url: "" });
  const create = useMutation({
    mutationFn: () => api("/alert-rules", { method: "POST", project: projectId, body: {
      ...form, threshold: Number(form.threshold), window_seconds: Number(form.window_seconds), slack_webhook_url: form.slack_webhook_url || undefined } }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["alert-rules", projectId] }),
  });
  const del = useMutation({ mutationFn: (id: string) => api(`/alert-rules/${id}`, { method: "DELETE", project: projectId }),
                            onSuccess: () => qc.invalidateQueries({ queryKey: ["alert-rules", projectId] }) });
  return (
    <div className="page">
      <h1>Alerts</h1>
      <Resource q={rules} what="alert rules">{(d) => {
        const list = Array.isArray(d) ? d : d.rules ?? [];
        return list.length === 0 ? <p className="muted">No alert rules.</p> : (
          <table className="list"><thead><tr><th>Name</th><th>Condition</th><th>Window</th><th>Enabled</th><th>State</th><th /></tr></thead>
            <tbody>{list.map((r) => (
              <tr key={r.id}><td>{r.name}</td><td className="mono">{r.aggregation}({r.metric}) {r.comparator} {r.threshold}</td><td>{r.window_seconds} s</td>
                <td>{r.enabled ? "yes" : "muted"}</td><td>{r.state ? <JsonTree value={r.state} /> : "–"}</td>
                <td>{canWrite && <button type="button" onClick={() => del.mutate(r.id)}>Delete</button>}</td></tr>
            ))}</tbody></table>
        );
      }}</Resource>
      {canWrite && (
        <form className="inline-form" onSubmit={(e: FormEvent) => { e.preventDefault(); create.mutate(); }} aria-label="New alert rule">
          {(Object.keys(form) as Array<keyof typeof form>).map((k) => (
            <label key={k}>{k.replace(/_/g, " ")}<input value={form[k]} required={k !== "slack_webhook_url"} onChange={(e) => setForm({ ...form, [k]: e.target.value })} size={12} /></label>
          ))}
          <button type="submit">Create alert rule</button>
        </form>
      )}
      {(create.error || del.error) && <ErrorBox error={create.error || del.error} />}
    </div>
  );
}
