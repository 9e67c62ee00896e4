import { FormEvent, useState } from "react";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, ADMIN_ROLES } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { ErrorBox } from "../../components/ErrorBox";
import { fmtTime } from "../../lib/format";

export default function SettingsPage() {
  const { project } = useProject();
  const admin = !!project && ADMIN_ROLES.has(project.role);
  return (
    <div className="page">
      <h1>Settings</h1>
      {!admin && <p className="muted" role="note">Your role is {project?.role}: settings are read-only for you.</p>}
      <ApiKeys admin={admin} />
      <Members admin={admin} />
      <Prices admin={admin} />
    </div>
  );
}

interface Key { id: string; prefix: string; scope: string; created_at: string; revoked_at: string | null }

function ApiKeys({ admin }: { admin: boolean }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const keys = useQuery({ queryKey: ["keys", projectId], queryFn: () => api<{ keys: Key[] }>("/api-keys", { project: projectId }), enabled: admin });
  const [scope, setScope] = useState("ingest");
  const [secret, setSecret] = useState<{ key: string; scope: string } | null>(null);
  const create = useMutation({
    mutationFn: () => api<{ key: string; scope: string }>("/api-keys", { method: "POST", project: projectId, body: { scope } }),
    onSuccess: (r) => { setSecret(r); qc.invalidateQueries({ queryKey: ["keys", projectId] }); },
  });
  const revoke = useMutation({
    mutationFn: (id: string) => api(`/api-keys/${id}`, { method: "DELETE", project: projectId }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["keys", projectId] }),
  });
  if (!admin) return <section aria-labelledby="keys-h"><h2 id="keys-h">API keys</h2><p className="muted">Only admins manage API keys.</p></section>;
  return (
    <section aria-labelledby="keys-h">
      <h2 id="keys-h">API keys</h2>
      <form className="inline-form" onSubmit={(e: FormEvent) => { e.preventDefault(); create.mutate(); }}>
        <label>Scope
          <select value={scope} onChange={(e) => setScope(e.target.value)}>
            <option value="ingest">ingest (send spans and scores only)</option>
            <option value="full">full (read and administer)</option>
          </select>
        </label>
        <button type="submit" disabled={create.isPending}>Create API key</button>
      </form>
      {create.error && <ErrorBox error={create.error} />}
      {secret && (
        <div className="secret" role="status">
          <p>New {secret.scope} key — shown once, copy it now:</p>
          <code data-testid="new-key">{secret.key}</code>
          <button type="button" onClick={() => navigator.clipboard?.writeText(secret.key)}>Copy</button>
          <button type="button" onClick={() => setSecret(null)}>Done</button>
        </div>
      )}
      <Resource q={keys} what="API keys">{(d) => (
        <table className="list"><thead><tr><th>Key</th><th>Scope</th><th>Created</th><th>State</th><th /></tr></thead>
          <tbody>{d.keys.map((k) => (
            <tr key={k.id}><td className="mono">{k.prefix}</td><td>{k.scope}</td><td>{fmtTime(k.created_at)}</td>
              <td>{k.revoked_at ? `revoked ${fmtTime(k.revoked_at)}` : "active"}</td>
              <td>{!k.revoked_at && <button type="button" onClick={() => { if (confirm(`Revoke ${k.prefix}?`)) revoke.mutate(k.id); }}>Revoke</button>}</td></tr>
          ))}</tbody></table>
      )}</Resource>
    </section>
  );
}

interface Member { user_id: string; email: string; name: string; role: string }
const ROLES = ["viewer", "member", "admin", "owner"];

function Members({ admin }: { admin: boolean }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const members = useQuery({ queryKey: ["members", projectId], queryFn: () => api<Member[] | { members: Member[] }>("/members", { project: projectId }) });
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("member");
  const [invite, setInvite] = useState<{ url: string } | null>(null);
  const invitation = useMutation({
    mutationFn: () => api<{ token: string; url: string }>("/invitations", { method: "POST", project: projectId, body: { email, role } }),
    onSuccess: (r) => { setInvite(r); setEmail(""); },
  });
  const change = useMutation({
    mutationFn: ({ id, role }: { id: string; role: string }) => api(`/members/${id}`, { method: "PATCH", project: projectId, body: { role } }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["members", projectId] }),
  });
  const remove = useMutation({
    mutationFn: (id: string) => api(`/members/${id}`, { method: "DELETE", project: projectId }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["members", projectId] }),
  });
  return (
    <section aria-labelledby="members-h">
      <h2 id="members-h">Members and roles</h2>
      <Resource q={members} what="members">{(d) => {
        const list = Array.isArray(d) ? d : d.members;
        return (
          <table className="list"><thead><tr><th>Name</th><th>Email</th><th>Role</th><th /></tr></thead>
            <tbody>{list.map((m) => (
              <tr key={m.user_id}><td>{m.name}</td><td>{m.email}</td>
                <td>{admin ? (
                  <select aria-label={`Role of ${m.email}`} value={m.role} onChange={(e) => change.mutate({ id: m.user_id, role: e.target.value })}>
                    {ROLES.map((r) => <option key={r}>{r}</option>)}
                  </select>) : m.role}</td>
                <td>{admin && <button type="button" onClick={() => { if (confirm(`Remove ${m.email}?`)) remove.mutate(m.user_id); }}>Remove</button>}</td></tr>
            ))}</tbody></table>
        );
      }}</Resource>
      {(change.error || remove.error) && <ErrorBox error={change.error || remove.error} />}
      {admin && (
        <form className="inline-form" onSubmit={(e) => { e.preventDefault(); invitation.mutate(); }}>
          <label>Invite email<input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} /></label>
          <label>Role<select value={role} onChange={(e) => setRole(e.target.value)}>{ROLES.slice(0, 3).map((r) => <option key={r}>{r}</option>)}</select></label>
          <button type="submit">Invite</button>
        </form>
      )}
      {invitation.error && <ErrorBox error={invitation.error} />}
      {invite && <p className="secret" role="status">Invitation link (shown once): <code>{new URL(invite.url, location.origin).toString()}</code></p>}
    </section>
  );
}

interface Price { provider: string; model: string; prices: Record<string, number>; tiers: unknown[] }

function Prices({ admin }: { admin: boolean }) {
  const { projectId } = useProject();
  const qc = useQueryClient();
  const prices = useQuery({ queryKey: ["prices", projectId], queryFn: () => api<{ overrides: Price[] }>("/model-prices", { project: projectId }) });
  const [form, setForm] = useState({ provider: "", model: "", input: "", output: "" });
  const save = useMutation({
    mutationFn: () => api("/model-prices", { method: "PUT", project: projectId, body: {
      provider: form.provider, model: form.model, prices: { input: Number(form.input), output: Number(form.output) }, tiers: [] } }),
    onSuccess: () => { setForm({ provider: "", model: "", input: "", output: "" }); qc.invalidateQueries({ queryKey: ["prices", projectId] }); },
  });
  const del = useMutation({
    mutationFn: (p: Price) => api("/model-prices", { method: "DELETE", project: projectId, params: { provider: p.provider, model: p.model } }),
    onSuccess: () => qc.invalidateQueries({ queryKey: ["prices", projectId] }),
  });
  return (
    <section aria-labelledby="prices-h">
      <h2 id="prices-h">Model prices <span className="muted">(USD per 1M tokens; override the shipped table for this project)</span></h2>
      <Resource q={prices} what="model prices">{(d) => {
        const list = d.overrides;
        return list.length === 0 ? <p className="muted">No project prices: the shipped price table applies.</p> : (
          <table className="list"><thead><tr><th>Provider</th><th>Model</th><th>Prices</th><th /></tr></thead>
            <tbody>{list.map((p) => (
              <tr key={`${p.provider}/${p.model}`}><td>{p.provider}</td><td>{p.model}</td>
                <td className="mono">{Object.entries(p.prices).map(([k, v]) => `${k} ${v}`).join(", ")}</td>
                <td>{admin && <button type="button" onClick={() => del.mutate(p)}>Delete</button>}</td></tr>
            ))}</tbody></table>
        );
      }}</Resource>
      {admin && (
        <form className="inline-form" onSubmit={(e) => { e.preventDefault(); save.mutate(); }}>
          {(["provider", "model", "input", "output"] as const).map((k) => (
            <label key={k}>{k === "input" || k === "output" ? `${k} $/1M` : k}
              <input required={k !== "provider"} value={form[k]} inputMode={k === "input" || k === "output" ? "decimal" : undefined}
                     onChange={(e) => setForm({ ...form, [k]: e.target.value })} size={10} /></label>
          ))}
          <button type="submit">Save price</button>
        </form>
      )}
      {(save.error || del.error) && <ErrorBox error={save.error || del.error} />}
    </section>
  );
}
