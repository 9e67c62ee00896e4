import { FormEvent, useState } from "react";
import { Link, useNavigate } from "react-router";
import { useQuery } from "@tanstack/react-query";
import { api } from "../../api";
import { useProject } from "../../session";
import { Resource } from "../../components/Resource";
import { fmtCost, fmtInt } from "../../lib/format";

interface Group { group: Record<string, string>; value: number | null; n: number }

/** Recent sessions and users (by request count over the last 30 days), and a jump box. */
export default function SessionsPage() {
  const { projectId } = useProject();
  const navigate = useNavigate();
  const [id, setId] = useState("");
  const from = new Date(Math.floor(Date.now() / 60_000) * 60_000 - 30 * 86_400_000).toISOString();
  const useTop = (dim: string) => useQuery({
    queryKey: ["top", projectId, dim],
    queryFn: () => Promise.all([
      api<{ data: Group[] }>("/metrics", { project: projectId, params: { metric: "requests", group_by: dim, limit: 50, from } }),
      api<{ data: Group[] }>("/metrics", { project: projectId, params: { metric: "cost", aggregation: "sum", group_by: dim, limit: 1000, from } }),
    ]),
  });
  const sessions = useTop("session_id");
  const users = useTop("user_id");
  const go = (kind: string) => (e: FormEvent) => { e.preventDefault(); if (id) navigate(`/projects/${projectId}/${kind}/${encodeURIComponent(id)}`); };
  const table = (dim: string, kind: string, q: typeof sessions) => (
    <Resource q={q} what={kind}>{([req, cost]) => {
      const costOf = new Map(cost.data.map((r) => [r.group[dim], r.value]));
      const rows = req.data.filter((r) => r.group[dim]);
      return rows.length === 0 ? <p className="muted">None in the last 30 days.</p> : (
        <table className="list"><thead><tr><th>{dim === "user_id" ? "User" : "Session"}</th><th>Spans</th><th>Cost</th></tr></thead>
          <tbody>{rows.map((r) => (
            <tr key={r.group[dim]}><td><Link to={`/projects/${projectId}/${kind}/${encodeURIComponent(r.group[dim])}`}>{r.group[dim]}</Link></td>
              <td>{fmtInt(r.value)}</td><td>{fmtCost(costOf.get(r.group[dim]))}</td></tr>
          ))}</tbody></table>
      );
    }}</Resource>
  );
  return (
    <div className="page">
      <h1>Sessions and users</h1>
      <form className="inline-form" onSubmit={go("sessions")}>
        <label>Session or user id<input value={id} onChange={(e) => setId(e.target.value)} /></label>
        <button type="submit">Open session</button>
        <button type="button" onClick={go("users")}>Open user</button>
      </form>
      <div className="two-col">
        <section aria-labelledby="s-h"><h2 id="s-h">Sessions</h2>{table("session_id", "sessions", sessions)}</section>
        <section aria-labelledby="u-h"><h2 id="u-h">Users</h2>{table("user_id", "users", users)}</section>
      </div>
    </div>
  );
}
