// Waterfall layout: where each span's bar sits on the trace's time axis, in percent.

export interface Bounds {
  start: number; // ms since epoch
  end: number;
}

export function toMs(iso: string): number {
  return Date.parse(iso);
}

/** Earliest start and latest end over the spans. */
export function traceBounds(spans: Array<{ start_time: string; end_time: string }>): Bounds {
  let start = Infinity;
  let end = -Infinity;
  for (const s of spans) {
    start = Math.min(start, toMs(s.start_time));
    end = Math.max(end, toMs(s.end_time));
  }
  if (!Number.isFinite(start)) return { start: 0, end: 0 };
  return { start, end: Math.max(end, start) };
}

export const MIN_BAR_PERCENT = 0.3; // a zero-length span stays visible and clickable

/** Left offset and width of a span's bar, in percent of the trace; clamped to [0, 100]. */
export function barLayout(spanStart: number, spanEnd: number, bounds: Bounds): { left: number; width: number } {
  const total = bounds.end - bounds.start;
  if (total <= 0) return { left: 0, width: 100 };
  const left = Math.min(100, Math.max(0, ((spanStart - bounds.start) / total) * 100));
  const right = Math.min(100, Math.max(left, ((spanEnd - bounds.start) / total) * 100));
  const width = Math.max(MIN_BAR_PERCENT, right - left);
  return { left: Math.min(left, 100 - MIN_BAR_PERCENT), width: Math.min(width, 100 - Math.min(left, 100 - MIN_BAR_PERCENT)) };
}

/** About ``count`` round tick marks over a duration: 1, 2 or 5 times a power of ten ms. */
export function ticks(durationMs: number, count = 5): Array<{ percent: number; ms: number }> {
  if (durationMs <= 0) return [{ percent: 0, ms: 0 }];
  const raw = durationMs / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? raw;
  const out = [];
  for (let ms = 0; ms <= durationMs + 1e-9; ms += step) out.push({ percent: (ms / durationMs) * 100, ms });
  return out;
}
