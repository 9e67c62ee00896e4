import { useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, WRITE_ROLES } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { fmtNumber, fmtTime } from "../../lib/format";
import { AlertRule, AlertState, RuleForm } from "./RuleForm";
import { History } from "./History";

function StateBadge({ s }: { s: AlertState }) {
  const text = s.status === "muted" ? (s.muted_indefinitely ? "muted until unmuted" : `muted until ${fmtTime(s.muted_until)}`)
    : s.status === "unknown" ? "not evaluated yet" : s.status;
  const cls = s.status === "firing" ? "status-error" : s.status === "ok" ? "status-ok" : "";
  return <span className={`status ${cls}`} data-testid="alert-state" title={s.since ? `since ${fmtTime(s.since)}` : undefined}>{text}</span>;
}

export default function AlertsPage() {
  const { projectId, project } = useProject();
  const canWrite = !!project && WRITE_ROLES.has(project.role);
  const qc = useQueryClient();
  const key = ["alert-rules", projectId];
  const refresh = () => qc.invalidateQueries({ queryKey: key });
  // The engine evaluates every 30 s: look again as often, so the state badges stay current.
  const rules = useQuery({ queryKey: key, refetchInterval: 30_000,
                           queryFn: () => api<{ rules: AlertRule[] }>("/alert-rules", { project: projectId }) });
  const [editing, setEditing] = useState<string | null>(null);
  const [showing, setShowing] = useState<AlertRule | null>(null);
  const create = useMutation({ mutationFn: (body: unknown) => api("/alert-rules", { method: "POST", project: projectId, body }), onSuccess: refresh });
  const edit = useMutation({
    mutationFn: ({ id, body }: { id: string; body: unknown }) => api(`/alert-rules/${id}`, { method: "PATCH", project: projectId, body }),
    onSuccess: () => { setEditing(null); refresh(); },
  });
  const act = useMutation({
    mutationFn: ({ id, path, body }: { id: string; path: string; body?: unknown }) =>
      api(`/alert-rules/${id}${path}`, { method: path ? "POST" : "DELETE", project: projectId, body }),
    onSuccess: refresh,
  });
  return (
    <div className="page">
      <h1>Alerts</h1>
      <Resource q={rules} what="alert rules">{(d) => d.rules.length === 0 ? <p className="muted">No alert rules.</p> : (
        <table className="list"><thead><tr><th>Name</th><th>Condition</th><th>Window</th><th>State</th><th>Last value</th><th>Last evaluated</th><th /></tr></thead>
          <tbody>{d.rules.map((r) => [
            <tr key={r.id} data-testid="alert-rule" data-rule-id={r.id}>
              <td>{r.name}{!r.enabled && <span className="muted"> (disabled)</span>}</td>
              <td className="mono">{r.aggregation}({r.metric}) {r.comparator} {r.threshold}</td><td>{r.window_seconds} s</td>
              <td><StateBadge s={r.state} /></td><td>{fmtNumber(r.state.last_value)}</td><td>{fmtTime(r.state.last_evaluated_at)}</td>
              <td className="actions" role="group" aria-label={`Actions for ${r.name}`}>
                <button type="button" onClick={() => setShowing(r)}>History</button>
                {canWrite && <>
                  <button type="button" onClick={() => setEditing(editing === r.id ? null : r.id)}>Edit</button>
                  {r.state.status === "muted"
                    ? <button type="button" onClick={() => act.mutate({ id: r.id, path: "/unmute" })}>Unmute</button>
                    : <>
                      <button type="button" onClick={() => act.mutate({ id: r.id, path: "/mute", body: { minutes: 60 } })}>Mute 1 h</button>
                      <button type="button" onClick={() => act.mutate({ id: r.id, path: "/mute", body: { minutes: 24 * 60 } })}>Mute 24 h</button>
                      <button type="button" onClick={() => act.mutate({ id: r.id, path: "/mute", body: { indefinitely: true } })}>Mute until unmuted</button>
                    </>}
                  <button type="button" onClick={() => act.mutate({ id: r.id, path: "" })}>Delete</button>
                </>}
              </td>
            </tr>,
            editing === r.id && canWrite && (
              <tr key={`${r.id}-edit`}><td colSpan={7}>
                <RuleForm rule={r} label="Edit alert rule" submitLabel="Save changes" pending={edit.isPending} error={edit.error}
                          onSubmit={(body) => edit.mutate({ id: r.id, body })} onCancel={() => setEditing(null)} />
              </td></tr>
            ),
          ])}</tbody></table>
      )}</Resource>
      {act.error && <ErrorBox error={act.error} retry={() => act.variables && act.mutate(act.variables)} />}
      {showing && <History key={showing.id} projectId={projectId} ruleId={showing.id} ruleName={showing.name} />}
      {canWrite && <>
        <h2>New alert rule</h2>
        <RuleForm label="New alert rule" submitLabel="Create alert rule" pending={create.isPending} error={create.error}
                  onSubmit={(body) => create.mutate(body)} />
      </>}
    </div>
  );
}
