export function fmtMs(ms: number | null | undefined): string {
  if (ms == null || !Number.isFinite(ms)) return "–";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(2)} s`;
  return `${(ms / 60_000).toFixed(1)} min`;
}

export function fmtCost(usd: number | null | undefined): string {
  if (usd == null || !Number.isFinite(usd)) return "–";
  if (usd === 0) return "$0";
  if (usd < 0.01) return `$${usd.toPrecision(3)}`;
  return `$${usd.toFixed(usd < 10 ? 4 : 2)}`;
}

export function fmtInt(n: number | null | undefined): string {
  return n == null ? "–" : Math.round(n).toLocaleString("en-US");
}

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return "–";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtNumber(v: number | null | undefined, digits = 3): string {
  if (v == null || !Number.isFinite(v)) return "–";
  return Number.isInteger(v) ? v.toLocaleString("en-US") : v.toPrecision(digits);
}

/** A mean with its 95 % CI: "0.840 [0.740, 0.920]". */
export function fmtCi(mean: number | null | undefined, low: number | null | undefined, high: number | null | undefined, digits = 3): string {
  if (mean == null || !Number.isFinite(mean)) return "–";
  const f = (v: number) => v.toFixed(digits);
  return low == null || high == null ? f(mean) : `${f(mean)} [${f(low)}, ${f(high)}]`;
}

export function fmtPct(v: number | null | undefined, digits = 1): string {
  return v == null || !Number.isFinite(v) ? "–" : `${(v * 100).toFixed(digits)} %`;
}

/** A p-value as scipy gives it, to 4 significant digits (tiny ones in exponent form). */
export function fmtP(p: number | null | undefined): string {
  if (p == null || !Number.isFinite(p)) return "–";
  return p < 1e-4 ? p.toExponential(3) : p.toPrecision(4);
}
