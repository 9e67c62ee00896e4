import { useInfiniteQuery } from "@tanstack/react-query";
import { api } from "../../api";
import { ErrorBox, Loading } from "../../components/ErrorBox";
import { fmtNumber, fmtTime } from "../../lib/format";

interface Transition {
  kind: string; group: string; at: string; value: number | null; threshold: number; comparator: string;
  notification: string; notified_at: string | null;
}

const NOTIFICATION_TEXT: Record<string, string> = {
  sent: "sent", pending: "queued", failed: "failed", muted: "suppressed (muted)", cooldown: "held (cooldown)",
  not_announced: "not sent (firing was never announced)", no_webhook: "no webhook", rule_gone: "rule gone",
};

/** A rule's firing history, newest first, a page at a time. */
export function History({ projectId, ruleId, ruleName }: { projectId: string; ruleId: string; ruleName: string }) {
  const history = useInfiniteQuery({
    queryKey: ["alert-history", projectId, ruleId],
    initialPageParam: "",
    queryFn: ({ pageParam }) => api<{ data: Transition[]; next_cursor: string | null }>(
      `/alert-rules/${encodeURIComponent(ruleId)}/history`, { project: projectId, params: { cursor: pageParam, limit: 50 } }),
    getNextPageParam: (last) => last.next_cursor ?? undefined,
  });
  const rows = history.data?.pages.flatMap((p) => p.data) ?? [];
  return (
    <section aria-label={`History of ${ruleName}`} data-testid="alert-history"><h2>History: {ruleName}</h2>
      {history.error ? <ErrorBox error={history.error} retry={() => history.refetch()} /> :
       !history.data ? <Loading what="history" /> : rows.length === 0 ? <p className="muted">No transitions yet.</p> : (
        <table className="list"><thead><tr><th>Time</th><th>Transition</th><th>Group</th><th>Value</th><th>Threshold</th><th>Notification</th></tr></thead>
          <tbody>{rows.map((t, i) => (
            <tr key={i} data-testid="alert-transition"><td>{fmtTime(t.at)}</td>
              <td><span className={`status status-${t.kind === "firing" ? "error" : "ok"}`}>{t.kind}</span></td>
              <td>{t.group || "all"}</td><td>{fmtNumber(t.value)}</td><td className="mono">{t.comparator} {fmtNumber(t.threshold)}</td>
              <td>{NOTIFICATION_TEXT[t.notification] ?? t.notification}{t.notified_at && t.notification !== "sent" ? `; sent ${fmtTime(t.notified_at)}` : ""}</td></tr>
          ))}</tbody></table>
      )}
      {history.hasNextPage && <button type="button" onClick={() => history.fetchNextPage()} disabled={history.isFetchingNextPage}>Older</button>}
    </section>
  );
}
