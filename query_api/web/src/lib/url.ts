// Filters live in the URL (a view is a link). Their names are the query API's own parameters,
// so the page passes them through unchanged; ``range`` is the page's preset for ``from``.

export const TRACE_FILTERS = [
  "q", "model", "provider", "status", "user_id", "session_id", "tag", "metadata", "attribute", "name",
  "environment", "release", "min_latency_ms", "max_latency_ms", "min_cost", "max_cost", "score_name",
  "min_score", "max_score", "from", "to",
] as const;

export const RANGES: Record<string, number | null> = {
  "15m": 15 * 60_000, "1h": 3_600_000, "24h": 86_400_000, "7d": 7 * 86_400_000, "30d": 30 * 86_400_000, all: null,
};

/** The API parameters of a page's URL: the filters, with ``range`` turned into ``from``. */
export function apiParams(search: URLSearchParams, now: number, extra: string[] = []): URLSearchParams {
  const out = new URLSearchParams();
  for (const key of [...TRACE_FILTERS, ...extra]) {
    for (const v of search.getAll(key)) if (v !== "") out.append(key, v);
  }
  const range = search.get("range");
  if (range && !out.has("from") && RANGES[range]) {
    out.set("from", new Date(now - (RANGES[range] as number)).toISOString());
  }
  return out;
}

/** A copy of ``search`` with ``key`` set to ``values`` (removed when empty). */
export function withParam(search: URLSearchParams, key: string, values: string | string[] | null): URLSearchParams {
  const out = new URLSearchParams(search);
  out.delete(key);
  for (const v of values == null ? [] : Array.isArray(values) ? values : [values]) if (v !== "") out.append(key, v);
  return out;
}
