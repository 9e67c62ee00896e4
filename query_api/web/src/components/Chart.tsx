import { useEffect, useRef } from "react";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

export interface Series {
  label: string;
  values: Array<number | null>;
}

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#65a30d"];

/** The same series name gets the same colour on every chart. */
export function colorFor(label: string): string {
  let h = 0;
  for (let i = 0; i < label.length; i++) h = (h * 31 + label.charCodeAt(i)) >>> 0;
  return COLORS[h % COLORS.length];
}

/** A time series chart (uPlot: canvas, smooth at 10,000+ points). Clicking near a point calls
 * ``onPick(x index, series index)``. The same numbers are in a visually hidden table, for screen
 * readers (and tests). */
export function Chart({ title, xs, series, format, onPick, xRange, height = 220 }: {
  title: string; xs: number[]; series: Series[]; format: (v: number | null) => string; xRange?: [number, number];
  onPick?: (xIndex: number, seriesIndex: number) => void; height?: number;
}) {
  const host = useRef<HTMLDivElement>(null);
  const pickRef = useRef(onPick);
  pickRef.current = onPick;
  useEffect(() => {
    const el = host.current;
    if (!el) return;
    const opts: uPlot.Options = {
      width: Math.max(300, el.clientWidth), height,
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: series.length === 1 ? COLORS[0] : colorFor(s.label), width: 1.5,
                                              points: { show: xs.length < 60 }, value: (_u: uPlot, v: number | null) => format(v) }))],
      axes: [{}, { values: (_u: uPlot, vals: number[]) => vals.map((v) => format(v)), size: 70 }],
      cursor: { focus: { prox: 30 } },
      scales: xRange ? { x: { time: true, range: () => xRange } } : undefined,
      legend: { show: series.length > 1 },
    };
    const plot = new uPlot(opts, [xs, ...series.map((s) => s.values)] as uPlot.AlignedData, el);
    const click = () => {
      const idx = plot.cursor.idx;
      if (idx == null || !pickRef.current) return;
      const y = plot.posToVal(plot.cursor.top ?? 0, "y");
      let best = 0;
      let dist = Infinity;
      series.forEach((s, i) => {
        const v = s.values[idx];
        if (v != null && Math.abs(v - y) < dist) { dist = Math.abs(v - y); best = i; }
      });
      pickRef.current(idx, best);
    };
    plot.over.addEventListener("click", click);
    const resize = new ResizeObserver(() => plot.setSize({ width: Math.max(300, el.clientWidth), height }));
    resize.observe(el);
    return () => { resize.disconnect(); plot.destroy(); };
  }, [xs, series, height, format, xRange?.[0], xRange?.[1]]); // eslint-disable-line react-hooks/exhaustive-deps
  return (
    <figure className="chart" aria-label={title} data-testid={`chart-${title}`} data-drawn={xs.length > 0 ? "1" : "0"}>
      <figcaption>{title}</figcaption>
      <div ref={host} className="chart-canvas" />
      <table className="sr-only" data-testid="chart-data">
        <caption>{title}</caption>
        <thead><tr><th>time</th>{series.map((s) => <th key={s.label}>{s.label}</th>)}</tr></thead>
        <tbody>
          {xs.map((x, i) => (
            <tr key={x}>
              <td data-x={x}>{new Date(x * 1000).toISOString()}</td>
              {series.map((s) => <td key={s.label} data-value={s.values[i] ?? ""}>{format(s.values[i])}</td>)}
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}
