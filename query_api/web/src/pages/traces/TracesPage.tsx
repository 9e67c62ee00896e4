import { useMemo, useRef, useState, KeyboardEvent } from "react";
import { Link, useNavigate, useSearchParams } from "react-router";
import { useInfiniteQuery } from "@tanstack/react-query";
import { ColumnDef, flexRender, getCoreRowModel, useReactTable, VisibilityState } from "@tanstack/react-table";
import { useVirtualizer } from "@tanstack/react-virtual";
import { api } from "../../api";
import { useProject } from "../../session";
import { apiParams, withParam } from "../../lib/url";
import { fmtCost, fmtInt, fmtMs, fmtTime, fmtNumber } from "../../lib/format";
import { ErrorBox, Loading } from "../../components/ErrorBox";
import { EmptyProject } from "../../components/EmptyProject";
import { FilterBar } from "./FilterBar";

export interface TraceRow {
  trace_id: string; name: string; start_time: string; duration_ms: number; cost: number | null;
  input_tokens: number; output_tokens: number; total_tokens: number; status: string; span_count: number;
  user_id: string; session_id: string; tags: string[]; models: string[]; input_preview: string;
  scores: Array<{ name: string; value: number | null; string_value: string }>;
}

const SORTABLE: Record<string, string> = { start_time: "start_time", duration_ms: "duration_ms", cost: "cost", total_tokens: "total_tokens" };
const ROW_HEIGHT = 34;

export default function TracesPage() {
  const { projectId } = useProject();
  const [params, setParams] = useSearchParams();
  const navigate = useNavigate();
  const live = params.get("live") === "1";
  const sort = params.get("sort") ?? "start_time";
  const order = params.get("order") ?? "desc";
  const filterKey = params.toString();
  const result = useInfiniteQuery({
    queryKey: ["traces", projectId, filterKey],
    queryFn: ({ pageParam, signal }) => {
      const p = apiParams(params, Date.now());
      p.set("sort", sort); p.set("order", order); p.set("limit", "100");
      if (pageParam) p.set("cursor", pageParam);
      return api<{ data: TraceRow[]; next_cursor: string | null }>("/traces", { params: p, project: projectId, signal });
    },
    initialPageParam: "",
    getNextPageParam: (last) => last.next_cursor ?? undefined,
    refetchInterval: live ? 1500 : false, // live mode: new traces within 2 s
  });
  const rows = useMemo(() => result.data?.pages.flatMap((p) => p.data) ?? [], [result.data]);
  const [visibility, setVisibility] = useState<VisibilityState>(() => {
    const hidden = params.get("hide")?.split(",") ?? ["session_id"];
    return Object.fromEntries(hidden.map((h) => [h, false]));
  });
  const columns = useMemo<ColumnDef<TraceRow>[]>(() => [
    { id: "start_time", header: "Time", cell: (c) => fmtTime(c.row.original.start_time) },
    { id: "name", header: "Name", cell: (c) => <Link to={`/projects/${projectId}/traces/${c.row.original.trace_id}`}>{c.row.original.name || c.row.original.trace_id.slice(0, 12)}</Link> },
    { id: "user_id", header: "User", cell: (c) => c.row.original.user_id && <Link to={`/projects/${projectId}/users/${encodeURIComponent(c.row.original.user_id)}`}>{c.row.original.user_id}</Link> },
    { id: "session_id", header: "Session", cell: (c) => c.row.original.session_id && <Link to={`/projects/${projectId}/sessions/${encodeURIComponent(c.row.original.session_id)}`}>{c.row.original.session_id}</Link> },
    { id: "models", header: "Models", cell: (c) => c.row.original.models.join(", ") },
    { id: "duration_ms", header: "Latency", cell: (c) => fmtMs(c.row.original.duration_ms) },
    { id: "total_tokens", header: "Tokens", cell: (c) => fmtInt(c.row.original.total_tokens) },
    { id: "cost", header: "Cost", cell: (c) => fmtCost(c.row.original.cost) },
    { id: "status", header: "Status", cell: (c) => <span className={`status status-${c.row.original.status}`}>{c.row.original.status}</span> },
    { id: "scores", header: "Scores", cell: (c) => c.row.original.scores.map((s) => `${s.name}: ${s.string_value || fmtNumber(s.value)}`).join(", ") },
    { id: "tags", header: "Tags", cell: (c) => c.row.original.tags.map((t) => <span key={t} className="tag">{t}</span>) },
  ], [projectId]);
  const table = useReactTable({
    data: rows, columns, state: { columnVisibility: visibility }, onColumnVisibilityChange: setVisibility,
    getCoreRowModel: getCoreRowModel(), manualSorting: true, getRowId: (r) => r.trace_id,
  });
  const scroller = useRef<HTMLDivElement>(null);
  const virtual = useVirtualizer({ count: rows.length, getScrollElement: () => scroller.current, estimateSize: () => ROW_HEIGHT, overscan: 10 });
  const [focus, setFocus] = useState(0);
  const onKey = (e: KeyboardEvent) => {
    if (!rows.length) return;
    const move = e.key === "ArrowDown" || e.key === "j" ? 1 : e.key === "ArrowUp" || e.key === "k" ? -1 : 0;
    if (move) {
      e.preventDefault();
      const next = Math.min(rows.length - 1, Math.max(0, focus + move));
      setFocus(next);
      virtual.scrollToIndex(next);
    } else if (e.key === "Enter") {
      navigate(`/projects/${projectId}/traces/${rows[focus].trace_id}`);
    }
  };
  const setSort = (id: string) => {
    if (!SORTABLE[id]) return;
    const nextOrder = sort === id && order === "desc" ? "asc" : "desc";
    setParams(withParam(withParam(params, "sort", id), "order", nextOrder));
  };
  const hasFilters = [...params.keys()].some((k) => !["sort", "order", "live", "hide"].includes(k));
  const visibleCols = table.getVisibleLeafColumns();
  const grid = visibleCols.map((c) => (c.id === "name" ? "minmax(160px, 2fr)" : c.id === "start_time" ? "minmax(150px, 1fr)" : c.id === "scores" || c.id === "tags" ? "minmax(100px, 1.5fr)" : "minmax(80px, 1fr)")).join(" ");
  return (
    <div className="page">
      <div className="page-head">
        <h1>Traces</h1>
        <label className="inline"><input type="checkbox" checked={live} onChange={(e) => setParams(withParam(params, "live", e.target.checked ? "1" : null))} /> Live</label>
        <details className="columns">
          <summary>Columns</summary>
          {table.getAllLeafColumns().map((c) => (
            <label key={c.id} className="inline"><input type="checkbox" checked={c.getIsVisible()} onChange={c.getToggleVisibilityHandler()} /> {String(c.columnDef.header)}</label>
          ))}
        </details>
      </div>
      <FilterBar />
      {result.error ? <ErrorBox error={result.error} retry={() => result.refetch()} /> :
       result.isLoading ? <Loading what="traces" /> :
       rows.length === 0 ? (hasFilters ? <p className="muted" data-testid="no-match">No traces match these filters.</p> : <EmptyProject />) : (
        <div className="table" role="grid" aria-label="Traces" aria-rowcount={rows.length} tabIndex={0} onKeyDown={onKey} data-testid="traces-table">
          <div className="thead" role="row" style={{ gridTemplateColumns: grid }}>
            {visibleCols.map((c) => (
              <div role="columnheader" key={c.id} aria-sort={sort === c.id ? (order === "asc" ? "ascending" : "descending") : undefined}>
                {SORTABLE[c.id] ? <button type="button" className="sort" onClick={() => setSort(c.id)}>
                  {String(c.columnDef.header)}{sort === c.id ? (order === "asc" ? " ▲" : " ▼") : ""}</button> : String(c.columnDef.header)}
              </div>
            ))}
          </div>
          <div className="tbody" ref={scroller}>
            <div style={{ height: virtual.getTotalSize(), position: "relative" }}>
              {virtual.getVirtualItems().map((v) => {
                const row = table.getRowModel().rows[v.index];
                return (
                  <div role="row" key={row.id} data-testid="trace-row" data-trace-id={row.id} aria-rowindex={v.index + 1}
                       className={`tr ${v.index === focus ? "focused" : ""}`} onClick={() => setFocus(v.index)}
                       style={{ transform: `translateY(${v.start}px)`, height: ROW_HEIGHT, gridTemplateColumns: grid }}>
                    {row.getVisibleCells().map((cell) => <div role="gridcell" key={cell.id}>{flexRender(cell.column.columnDef.cell, cell.getContext())}</div>)}
                  </div>
                );
              })}
            </div>
          </div>
          <div className="tfoot">
            <span data-testid="row-count">{rows.length} traces</span>
            {result.hasNextPage && <button type="button" onClick={() => result.fetchNextPage()} disabled={result.isFetchingNextPage}>
              {result.isFetchingNextPage ? "Loading…" : "Load more"}</button>}
          </div>
        </div>
      )}
    </div>
  );
}
