import { useMemo } from "react";
import { useNavigate, useSearchParams } from "react-router";
import { useQueries, useQuery } from "@tanstack/react-query";
import { api } from "../../api";
import { useProject } from "../../session";
import { Chart, Series } from "../../components/Chart";
import { ErrorBox } from "../../components/ErrorBox";
import { fmtCost, fmtInt, fmtMs, fmtNumber } from "../../lib/format";
import { withParam } from "../../lib/url";

const RANGES: Record<string, { ms: number; interval: string; seconds: number }> = {
  "1h": { ms: 3_600_000, interval: "minute", seconds: 60 },
  "24h": { ms: 86_400_000, interval: "hour", seconds: 3600 },
  "7d": { ms: 7 * 86_400_000, interval: "hour", seconds: 3600 },
  "30d": { ms: 30 * 86_400_000, interval: "day", seconds: 86400 },
};
const GROUPS = ["", "model", "provider", "name", "user_id", "environment", "release", "tag", "status", "prompt_name", "prompt_version"];

interface MetricData { data: Array<{ bucket: string | null; group: Record<string, string>; value: number | null; n: number; values?: Record<string, number | null> }> }
// ``together``: the chart's percentiles of this metric, asked for in one request (one scan of the spans).
interface Spec { key: string; metric: string; aggregation?: string; score_name?: string; label: string; together?: string[] }

const pct = (v: number | null) => (v == null ? "–" : `${(v * 100).toFixed(1)}%`);
const CHARTS: Array<{ title: string; specs: (group: boolean, score: string) => Spec[]; format: (v: number | null) => string }> = [
  { title: "Requests", format: (v) => fmtInt(v), specs: () => [{ key: "requests", metric: "requests", label: "requests" }] },
  { title: "Error rate", format: pct, specs: () => [{ key: "error_rate", metric: "error_rate", label: "error rate" }] },
  { title: "Latency", format: (v) => fmtMs(v), specs: (g) => (g ? ["p95"] : ["p50", "p90", "p95", "p99"]).map((a, _i, all) => ({ key: `latency_${a}`, metric: "latency", aggregation: a, label: a, together: all })) },
  { title: "Tokens", format: (v) => fmtInt(v), specs: (g) => (g ? ["output_tokens"] : ["input_tokens", "output_tokens"]).map((m) => ({ key: m, metric: m, aggregation: "sum", label: m.replace("_tokens", "") })) },
  { title: "Cost", format: (v) => fmtCost(v), specs: () => [{ key: "cost", metric: "cost", aggregation: "sum", label: "cost" }] },
  { title: "Score average", format: (v) => fmtNumber(v), specs: (_g, score) => (score ? [{ key: `score_${score}`, metric: "score", aggregation: "avg", score_name: score, label: score }] : []) },
];

export default function DashboardPage() {
  const { projectId } = useProject();
  const [params, setParams] = useSearchParams();
  const navigate = useNavigate();
  // A custom range (from / to in the URL) wins over the presets; its buckets follow its length.
  const custom = params.get("from") && params.get("to") && Date.parse(params.get("to")!) > Date.parse(params.get("from")!)
    ? { from: new Date(params.get("from")!).toISOString(), to: new Date(params.get("to")!).toISOString() } : null;
  const rangeKey = custom ? "custom" : RANGES[params.get("range") ?? ""] ? params.get("range")! : "24h";
  const range = custom ? customRange(custom.from, custom.to) : RANGES[rangeKey];
  const group = params.get("group_by") ?? "";
  // Minute-aligned window: the API then serves it from the per-minute rollups.
  const { from, to } = useMemo(() => {
    if (custom) return custom;
    const end = Math.ceil(Date.now() / 60_000) * 60_000;
    return { from: new Date(end - range.ms).toISOString(), to: new Date(end).toISOString() };
  }, [rangeKey, custom?.from, custom?.to, params.get("t")]); // eslint-disable-line react-hooks/exhaustive-deps
  const names = useQuery({
    queryKey: ["score-names", projectId, from],
    queryFn: () => api<{ data?: Array<{ name: string }>; scores?: Array<{ name: string }> }>("/scores/summary", { project: projectId, params: { from, to } }),
  });
  const scoreNames = [...new Set(((names.data?.data ?? names.data?.scores) ?? []).map((s) => s.name))];
  const score = params.get("score") ?? scoreNames[0] ?? "";
  const base = { from, to, interval: range.interval, group_by: group || undefined, limit: 8 };
  const charts = CHARTS.map((c) => ({ ...c, list: c.specs(!!group, score) }));
  const allSpecs = charts.flatMap((c) => c.list);
  const results = useQueries({
    queries: allSpecs.map((s) => s.together ? {
      // one query key for the percentiles asked together: react-query makes one request, each spec picks its values
      queryKey: ["metric", projectId, `${s.metric}:${s.together.join(",")}`, base],
      queryFn: () => api<MetricData>("/metrics", { project: projectId, params: { ...base, metric: s.metric, aggregation: s.together } }),
      select: (d: MetricData): MetricData => ({ data: d.data.map((r) => ({ ...r, value: r.values ? r.values[s.aggregation!] ?? null : r.value })) }),
    } : {
      queryKey: ["metric", projectId, s.key, base],
      queryFn: () => api<MetricData>("/metrics", { project: projectId, params: { ...base, metric: s.metric, aggregation: s.aggregation, score_name: s.score_name } }),
    }),
  });
  const bySpec = new Map(allSpecs.map((s, i) => [s.key, results[i]]));
  // Ungrouped, the charts hold every bucket of the range, so the totals are their sums: five fewer
  // requests queueing for the server's one ClickHouse connection. Grouped (top groups only): asked.
  const asked = useQueries({
    queries: ["requests", "error_rate", "cost", "total_tokens"].map((m) => ({
      queryKey: ["total", projectId, m, from, to],
      enabled: !!group,
      queryFn: () => m === "total_tokens"
        ? Promise.all(["input_tokens", "output_tokens"].map((t) => api<MetricData>("/metrics", { project: projectId, params: { from, to, metric: t, aggregation: "sum" } })))
            .then((rs) => rs.reduce((sum, r) => sum + (r.data[0]?.value ?? 0), 0))
        : api<MetricData>("/metrics", { project: projectId, params: { from, to, metric: m, aggregation: m === "cost" ? "sum" : undefined } }).then((r) => r.data[0]?.value ?? null),
    })),
  });
  const totals: Array<{ data: number | null | undefined; error: unknown }> = group ? asked : [
    fromCharts(["requests"], (rows) => sum(rows[0], (r) => r.value ?? 0)),
    // error rate per bucket is errors / requests with n = requests: the range's rate is their totals' ratio
    fromCharts(["error_rate"], ([rows]) => {
      const n = sum(rows, (r) => r.n);
      return n ? sum(rows, (r) => Math.round((r.value ?? 0) * r.n)) / n : null;
    }),
    fromCharts(["cost"], (rows) => sum(rows[0], (r) => r.value ?? 0)),
    fromCharts(["input_tokens", "output_tokens"], (rows) => sum(rows[0], (r) => r.value ?? 0) + sum(rows[1], (r) => r.value ?? 0)),
  ];
  function fromCharts(keys: string[], total: (rows: MetricData["data"][]) => number | null) {
    const rs = keys.map((k) => bySpec.get(k));
    const error = rs.find((r) => r?.error)?.error ?? null;
    return { error, data: error || rs.some((r) => !r?.data) ? undefined : total(rs.map((r) => r!.data!.data)) };
  }
  const open = (bucketSec: number, groupValue: string) => {
    let p = new URLSearchParams();
    p.set("from", new Date(bucketSec * 1000).toISOString());
    p.set("to", new Date((bucketSec + range.seconds) * 1000).toISOString());
    if (group && groupValue) p = withParam(p, group === "tag" ? "tag" : group, groupValue);
    navigate(`/projects/${projectId}/traces?${p}`);
  };
  return (
    <div className="page">
      <div className="page-head">
        <h1>Dashboard</h1>
        <div role="group" aria-label="Time range" className="presets">
          {Object.keys(RANGES).map((r) => (
            <button type="button" key={r} aria-pressed={r === rangeKey}
                    onClick={() => setParams(withParam(withParam(withParam(params, "from", null), "to", null), "range", r))}>{r}</button>
          ))}
        </div>
        <form className="inline-form" aria-label="Custom range" key={`${from}-${to}`} onSubmit={(e) => {
          e.preventDefault();
          const f = new FormData(e.currentTarget);
          const a = Date.parse(String(f.get("from"))), b = Date.parse(String(f.get("to")));
          if (a < b) setParams(withParam(withParam(withParam(params, "range", null), "from", new Date(a).toISOString()), "to", new Date(b).toISOString()));
        }}>
          <label>From<input type="datetime-local" name="from" required defaultValue={localInput(from)} /></label>
          <label>To<input type="datetime-local" name="to" required defaultValue={localInput(to)} /></label>
          <button type="submit">Apply range</button>
        </form>
        <label>Group by
          <select value={group} onChange={(e) => setParams(withParam(params, "group_by", e.target.value || null))}>
            {GROUPS.map((g) => <option key={g} value={g}>{g || "none"}</option>)}
          </select>
        </label>
        {scoreNames.length > 0 && (
          <label>Score
            <select value={score} onChange={(e) => setParams(withParam(params, "score", e.target.value))}>
              {scoreNames.map((n) => <option key={n} value={n}>{n}</option>)}
            </select>
          </label>
        )}
      </div>
      <dl className="stats totals" aria-label="Totals">
        {["Requests", "Error rate", "Cost", "Tokens"].map((label, i) => {
          const t = totals[i];
          const v = t.data as number | null | undefined;
          return (
            <div key={label}><dt>{label}</dt><dd data-testid={`total-${label}`}>
              {t.error ? "error" : v === undefined ? "…" : i === 0 || i === 3 ? fmtInt(v) : i === 1 ? pct(v) : fmtCost(v)}
            </dd></div>
          );
        })}
      </dl>
      <div className="charts">
        {charts.map((c) => {
          const rs = c.list.map((s) => bySpec.get(s.key)!);
          const failed = rs.find((r) => r?.error);
          if (failed) return <div key={c.title} className="chart"><h3>{c.title}</h3><ErrorBox error={failed.error} retry={() => failed.refetch()} /></div>;
          if (c.list.length === 0) return <div key={c.title} className="chart"><h3>{c.title}</h3><p className="muted">No scores in this range.</p></div>;
          if (rs.some((r) => !r?.data)) return <div key={c.title} className="chart"><h3>{c.title}</h3><p className="muted">Loading…</p></div>;
          return <MetricChart key={c.title + group} title={c.title} specs={c.list} datas={rs.map((r) => r!.data!)}
                              group={group} format={c.format} open={open}
                              xRange={[Date.parse(from) / 1000, Date.parse(to) / 1000]} />;
        })}
      </div>
    </div>
  );
}

function sum<T>(rows: T[], value: (row: T) => number): number {
  return rows.reduce((total, row) => total + value(row), 0);
}

/** Bucket size for a custom range: at most a few hundred points per series. */
function customRange(from: string, to: string): { ms: number; interval: string; seconds: number } {
  const ms = Date.parse(to) - Date.parse(from);
  if (ms <= 6 * 3_600_000) return { ms, interval: "minute", seconds: 60 };
  if (ms <= 14 * 86_400_000) return { ms, interval: "hour", seconds: 3600 };
  return { ms, interval: "day", seconds: 86400 };
}

/** ISO time -> the local "YYYY-MM-DDTHH:MM" a datetime-local input shows. */
function localInput(iso: string): string {
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function MetricChart({ title, specs, datas, group, format, open, xRange }: {
  title: string; specs: Spec[]; datas: MetricData[]; group: string; format: (v: number | null) => string;
  open: (bucketSec: number, groupValue: string) => void; xRange: [number, number];
}) {
  const { xs, series } = useMemo(() => toSeries(specs, datas, group), [...datas, group]); // eslint-disable-line react-hooks/exhaustive-deps
  return <Chart title={title} xs={xs} series={series} format={format} xRange={xRange}
                onPick={(xi, si) => { const g = series[si].label.split(" · ")[0]; open(xs[xi], g === "(none)" ? "" : g); }} />;
}

/** API rows -> one x axis (bucket seconds) and a series per spec (no group-by) or per group. */
export function toSeries(specs: Spec[], data: MetricData[], group: string): { xs: number[]; series: Series[] } {
  const xsSet = new Set<number>();
  for (const d of data) for (const r of d.data) if (r.bucket) xsSet.add(Date.parse(r.bucket) / 1000);
  const xs = [...xsSet].sort((a, b) => a - b);
  const index = new Map(xs.map((x, i) => [x, i]));
  const series: Series[] = [];
  specs.forEach((s, si) => {
    const byLabel = new Map<string, Array<number | null>>();
    for (const r of data[si].data) {
      if (!r.bucket) continue;
      const label = group ? `${r.group[group] || "(none)"}${specs.length > 1 ? ` · ${s.label}` : ""}` : s.label;
      if (!byLabel.has(label)) byLabel.set(label, xs.map(() => null));
      byLabel.get(label)![index.get(Date.parse(r.bucket) / 1000)!] = r.value;
    }
    for (const [label, values] of byLabel) series.push({ label, values });
  });
  return { xs, series };
}
