import { FormEvent, useState } from "react";
import { useMutation, useQueryClient } from "@tanstack/react-query";
import { api } from "../../api";
import { ErrorBox } from "../../components/ErrorBox";

export interface EvalRule { id: string; name: string; evaluator: string; config: unknown; filter: Record<string, unknown>; sampling_rate: number; enabled: boolean }

/** Edit an eval rule in place: the fields the create form has, prefilled, plus enabled; sends only what changed. */
export function EditRule({ projectId, rule, onDone }: { projectId: string; rule: EvalRule; onDone: () => void }) {
  const qc = useQueryClient();
  const [f, setF] = useState({ name: rule.name, evaluator: rule.evaluator, config: JSON.stringify(rule.config ?? {}),
                               filter: JSON.stringify(rule.filter ?? {}), sampling_rate: String(rule.sampling_rate), enabled: rule.enabled });
  const [error, setError] = useState("");
  const save = useMutation({
    mutationFn: (body: Record<string, unknown>) => api(`/eval-rules/${rule.id}`, { method: "PATCH", project: projectId, body }),
    onSuccess: () => { qc.invalidateQueries({ queryKey: ["eval-rules", projectId] }); onDone(); },
  });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    let config: unknown, filter: unknown;
    try { config = JSON.parse(f.config || "{}"); } catch { setError("Config: not valid JSON"); return; }
    try { filter = JSON.parse(f.filter || "{}"); } catch { setError("Filter: not valid JSON"); return; }
    setError("");
    const next: Record<string, unknown> = { name: f.name, evaluator: f.evaluator, config, filter, sampling_rate: Number(f.sampling_rate), enabled: f.enabled };
    const before: Record<string, unknown> = { name: rule.name, evaluator: rule.evaluator, config: rule.config ?? {}, filter: rule.filter ?? {},
                                              sampling_rate: rule.sampling_rate, enabled: rule.enabled };
    const changed = Object.fromEntries(Object.entries(next).filter(([k, v]) => JSON.stringify(v) !== JSON.stringify(before[k])));
    if (Object.keys(changed).length === 0) { onDone(); return; }
    save.mutate(changed);
  };
  return (
    <form className="inline-form" onSubmit={submit} aria-label="Edit eval rule">
      <label>Name<input required value={f.name} onChange={(e) => setF({ ...f, name: e.target.value })} /></label>
      <label>Evaluator<input required value={f.evaluator} onChange={(e) => setF({ ...f, evaluator: e.target.value })} /></label>
      <label>Config (JSON)<input value={f.config} onChange={(e) => setF({ ...f, config: e.target.value })} /></label>
      <label>Filter (JSON)<input value={f.filter} onChange={(e) => setF({ ...f, filter: e.target.value })} /></label>
      <label>Sample rate<input type="number" min="0" max="1" step="0.01" required value={f.sampling_rate} onChange={(e) => setF({ ...f, sampling_rate: e.target.value })} /></label>
      <label><input type="checkbox" checked={f.enabled} onChange={(e) => setF({ ...f, enabled: e.target.checked })} /> Enabled</label>
      <button type="submit" disabled={save.isPending}>Save rule</button>
      <button type="button" onClick={onDone}>Cancel</button>
      {error && <p className="error-box" role="alert">{error}</p>}
      {save.error && <ErrorBox error={save.error} />}
    </form>
  );
}
