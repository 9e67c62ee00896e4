import { Link, useParams } from "react-router";
import { useInfiniteQuery } from "@tanstack/react-query";
import { api } from "../../api";
import { useProject } from "../../session";
import { ErrorBox, Loading } from "../../components/ErrorBox";
import { fmtCost, fmtInt, fmtMs, fmtTime } from "../../lib/format";
import type { TraceRow } from "../traces/TracesPage";

interface SessionData {
  rollup: { trace_count: number; cost: number | null; total_tokens: number; error_count: number; duration_ms: number | null; user_ids: string[] };
  traces: TraceRow[]; next_cursor: string | null;
}

/** A session as a conversation: its turns in order, each turn's input and output, with totals. */
export default function SessionPage() {
  const { sessionId = "" } = useParams();
  const { projectId } = useProject();
  const q = useInfiniteQuery({
    queryKey: ["session", projectId, sessionId],
    queryFn: ({ pageParam }) => api<SessionData>(`/sessions/${encodeURIComponent(sessionId)}`, { project: projectId, params: { cursor: pageParam || undefined } }),
    initialPageParam: "", getNextPageParam: (l) => l.next_cursor ?? undefined,
  });
  if (q.error) return <div className="page"><ErrorBox error={q.error} retry={() => q.refetch()} /></div>;
  if (!q.data) return <div className="page"><Loading what="session" /></div>;
  const r = q.data.pages[0].rollup;
  const turns = q.data.pages.flatMap((p) => p.traces);
  return (
    <div className="page">
      <h1>Session <span className="mono">{sessionId}</span></h1>
      <dl className="stats">
        <div><dt>Turns</dt><dd>{fmtInt(r.trace_count)}</dd></div>
        <div><dt>Cost</dt><dd>{fmtCost(r.cost)}</dd></div>
        <div><dt>Tokens</dt><dd>{fmtInt(r.total_tokens)}</dd></div>
        <div><dt>Errors</dt><dd>{fmtInt(r.error_count)}</dd></div>
        <div><dt>Duration</dt><dd>{fmtMs(r.duration_ms)}</dd></div>
        <div><dt>Users</dt><dd>{r.user_ids.map((u) => <Link key={u} to={`/projects/${projectId}/users/${encodeURIComponent(u)}`}>{u} </Link>)}</dd></div>
      </dl>
      <ol className="conversation">
        {turns.map((t) => (
          <li key={t.trace_id} className="turn">
            <div className="turn-head"><Link to={`/projects/${projectId}/traces/${t.trace_id}`}>{t.name || t.trace_id}</Link>
              <span className="muted"> {fmtTime(t.start_time)} · {fmtMs(t.duration_ms)} · {fmtCost(t.cost)} · {fmtInt(t.total_tokens)} tokens</span></div>
            <div className="message role-user"><div className="role">input</div><pre className="payload">{t.input_preview}</pre></div>
            <div className="message role-assistant"><div className="role">output</div><pre className="payload">{(t as TraceRow & { output_preview: string }).output_preview}</pre></div>
          </li>
        ))}
      </ol>
      {q.hasNextPage && <button type="button" onClick={() => q.fetchNextPage()}>Load more turns</button>}
    </div>
  );
}
