import { useMemo, useRef, useState, KeyboardEvent } from "react";
import { Link, useParams, useSearchParams } from "react-router";
import { useQuery } from "@tanstack/react-query";
import { useVirtualizer } from "@tanstack/react-virtual";
import { api } from "../../api";
import { useProject } from "../../session";
import { buildTree, flattenTree, searchTree, SpanLike } from "../../lib/tree";
import { barLayout, ticks, toMs, traceBounds } from "../../lib/timeline";
import { fmtCost, fmtInt, fmtMs, fmtTime, fmtNumber } from "../../lib/format";
import { withParam } from "../../lib/url";
import { ErrorBox, Loading } from "../../components/ErrorBox";
import { SpanPanel } from "./SpanPanel";

export interface SpanSummary extends SpanLike {
  kind: string; model: string; status: string; duration_ms: number; cost: number | null; total_tokens: number;
  input_preview: string; output_preview: string; children: SpanSummary[];
}

export interface Score { score_id: string; span_id: string; name: string; value: number | null; string_value: string; comment: string; source: string; evaluator: string }

interface Trace {
  trace_id: string; name: string; start_time: string; duration_ms: number; cost: number | null; total_tokens: number;
  status: string; span_count: number; user_id: string; session_id: string; spans: SpanSummary[]; scores: Score[];
}

// The lean answer (``view=lean``): one array per span field, spans in start order; the tree is built here.
type LeanTrace = Omit<Trace, "spans"> & { span_columns: Record<string, unknown[]> };

function fromColumns({ span_columns: cols, ...trace }: LeanTrace): Trace {
  const fields = Object.keys(cols);
  const spans = (cols.span_id ?? []).map((_, i) => {
    const span: Record<string, unknown> = {};
    for (const f of fields) span[f] = cols[f][i];
    return span as unknown as SpanSummary;
  });
  return { ...trace, spans: buildTree(spans) };
}

/** A trace for the tree and timeline (the trace page and the compare page share it, and its cache key);
 * each span's payloads are fetched when it is opened (SpanPanel). */
export function fetchTrace(projectId: string, traceId: string, signal?: AbortSignal): Promise<Trace> {
  return api<LeanTrace>(`/traces/${encodeURIComponent(traceId)}`, { params: { view: "lean" }, project: projectId, signal })
    .then(fromColumns);
}

const ROW = 26;

export default function TraceDetailPage() {
  const { traceId = "" } = useParams();
  const { projectId } = useProject();
  const trace = useQuery({
    queryKey: ["trace", projectId, traceId],
    queryFn: ({ signal }) => fetchTrace(projectId, traceId, signal),
  });
  if (trace.error) return <div className="page"><ErrorBox error={trace.error} retry={() => trace.refetch()} /></div>;
  if (!trace.data) return <div className="page"><Loading what="trace" /></div>;
  return <TraceView trace={trace.data} projectId={projectId} />;
}

export function TraceView({ trace, projectId, compact = false }: { trace: Trace; projectId: string; compact?: boolean }) {
  const [params, setParams] = useSearchParams();
  const [search, setSearch] = useState("");
  const [collapsed, setCollapsed] = useState<Set<string>>(new Set());
  const found = useMemo(() => searchTree(trace.spans, search), [trace.spans, search]);
  const rows = useMemo(() => flattenTree(trace.spans, found ? new Set() : collapsed, found?.keep), [trace.spans, collapsed, found]);
  const bounds = useMemo(() => traceBounds(rows.length ? rows.map((r) => r.span) : []), [rows]);
  const selected = compact ? null : params.get("span") ?? rows[0]?.span.span_id ?? null;
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({ count: rows.length, getScrollElement: () => scroller.current, estimateSize: () => ROW, overscan: 20 });
  const select = (id: string) => setParams(withParam(params, "span", id), { replace: true });
  const toggle = (id: string) => setCollapsed((prev) => {
    const next = new Set(prev);
    if (next.has(id)) next.delete(id); else next.add(id);
    return next;
  });
  const onKey = (e: KeyboardEvent) => {
    const i = rows.findIndex((r) => r.span.span_id === selected);
    const go = (j: number) => { if (rows[j]) { e.preventDefault(); select(rows[j].span.span_id); virtual.scrollToIndex(j); } };
    if (e.key === "ArrowDown") go(i + 1);
    else if (e.key === "ArrowUp") go(i - 1);
    else if ((e.key === "ArrowLeft" || e.key === "ArrowRight") && i >= 0 && rows[i].hasChildren) {
      const isCollapsed = collapsed.has(rows[i].span.span_id);
      if ((e.key === "ArrowLeft") !== isCollapsed) { e.preventDefault(); toggle(rows[i].span.span_id); }
    }
  };
  const total = bounds.end - bounds.start;
  return (
    <div className={compact ? "trace compact" : "page trace"}>
      <div className="page-head">
        <h1>{trace.name || "Trace"} <span className="muted mono">{trace.trace_id}</span></h1>
        {!compact && <Link className="small" to={`/projects/${projectId}/compare?a=${trace.trace_id}`}>Compare with another trace</Link>}
      </div>
      <dl className="stats">
        <div><dt>Start</dt><dd>{fmtTime(trace.start_time)}</dd></div>
        <div><dt>Latency</dt><dd>{fmtMs(trace.duration_ms)}</dd></div>
        <div><dt>Spans</dt><dd data-testid="span-count">{fmtInt(trace.span_count)}</dd></div>
        <div><dt>Tokens</dt><dd>{fmtInt(trace.total_tokens)}</dd></div>
        <div><dt>Cost</dt><dd>{fmtCost(trace.cost)}</dd></div>
        <div><dt>Status</dt><dd className={`status status-${trace.status}`}>{trace.status}</dd></div>
        {trace.user_id && <div><dt>User</dt><dd><Link to={`/projects/${projectId}/users/${encodeURIComponent(trace.user_id)}`}>{trace.user_id}</Link></dd></div>}
        {trace.session_id && <div><dt>Session</dt><dd><Link to={`/projects/${projectId}/sessions/${encodeURIComponent(trace.session_id)}`}>{trace.session_id}</Link></dd></div>}
      </dl>
      {!compact && trace.scores.length > 0 && (
        <ul className="scores" aria-label="Trace scores">
          {trace.scores.filter((s) => !s.span_id).map((s) => (
            <li key={s.score_id}><strong>{s.name}</strong>: {s.string_value || fmtNumber(s.value)} <span className="muted">({s.source}{s.evaluator ? ` · ${s.evaluator}` : ""})</span>{s.comment && <q>{s.comment}</q>}</li>
          ))}
        </ul>
      )}
      <div className={compact ? "trace-body" : "trace-body with-panel"}>
        <section className="tree-pane" aria-label="Span tree and timeline">
          <label className="tree-search">Search in trace
            <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="name, model, text…" />
          </label>
          {found && <p className="muted" role="status">{found.matches.length} matching spans</p>}
          <div className="axis" aria-hidden="true">
            {ticks(total).map((t) => <span key={t.percent} style={{ left: `${t.percent}%` }}>{fmtMs(t.ms)}</span>)}
          </div>
          <div className="tree" ref={scroller} role="tree" aria-label="Spans" tabIndex={0} onKeyDown={onKey} data-testid="span-tree">
            <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
              {virtual.getVirtualItems().map((v) => {
                const r = rows[v.index];
                const s = r.span as SpanSummary;
                const bar = barLayout(toMs(s.start_time), toMs(s.end_time), bounds);
                return (
                  <div key={s.span_id} role="treeitem" aria-level={r.depth + 1} aria-selected={s.span_id === selected}
                       aria-expanded={r.hasChildren ? !collapsed.has(s.span_id) : undefined}
                       className={`tree-row ${s.span_id === selected ? "selected" : ""}`} data-testid="span-row"
                       style={{ transform: `translateY(${v.start}px)`, height: ROW }} onClick={() => select(s.span_id)}>
                    <div className="tree-label" style={{ paddingLeft: r.depth * 14 }}>
                      {r.hasChildren ? (
                        <button type="button" className="twisty" aria-label={collapsed.has(s.span_id) ? "Expand" : "Collapse"}
                                onClick={(e) => { e.stopPropagation(); toggle(s.span_id); }}>{collapsed.has(s.span_id) ? "▸" : "▾"}</button>
                      ) : <span className="twisty" />}
                      <span className={`kind kind-${s.kind}`}>{s.kind || "span"}</span>
                      <span className="span-name">{s.name}</span>
                      {s.model && <span className="muted"> {s.model}</span>}
                    </div>
                    <div className="tree-bar" data-testid="timeline-bar">
                      <span className={`bar ${s.status === "error" ? "bar-error" : ""}`} style={{ left: `${bar.left}%`, width: `${bar.width}%` }}
                            title={`${s.name}: ${fmtMs(s.duration_ms)}`} />
                      <span className="bar-label">{fmtMs(s.duration_ms)}</span>
                    </div>
                  </div>
                );
              })}
            </div>
          </div>
        </section>
        {!compact && selected && (
          <SpanPanel key={selected} projectId={projectId} traceId={trace.trace_id} spanId={selected} />
        )}
      </div>
    </div>
  );
}
