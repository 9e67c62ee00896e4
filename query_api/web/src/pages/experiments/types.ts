// The experiment API's shapes, as the pages read them (evaluators/routers/experiments.py).

export interface ScoreSummary { mean: number; ci_low: number | null; ci_high: number | null; n: number; pass_rate: number | null }
export interface Summary {
  results: number; items: number; errors: number; error_rate: number | null; scores: Record<string, ScoreSummary>;
  latency_ms: { p50: number | null; p95: number | null };
  tokens: { input: number; output: number; total: number; per_item: number | null };
  cost: { total: number | null; per_item: number | null };
  consistency: { items: number; identical_outputs: number | null; scores: Record<string, number> } | null;
}
export interface Experiment {
  id: string; name: string; kind: string; status: string; dataset_id: string | null; dataset_version: number | null;
  benchmark: { name: string; limit: number | null; seed: number; subset: string | null } | null; split: string | null;
  target: { provider?: string; model?: string }; repetitions: number; error: string; created_at: string;
  finished_at: string | null; progress: { done: number; total: number }; summary?: Summary;
  main_score?: { name: string; mean: number; ci_low: number | null; ci_high: number | null; n: number } | null; cost?: number | null;
}
export interface ResultRow {
  item_id: string; repetition: number; input: unknown; expected_output: unknown; output: unknown;
  scores: Array<{ name: string; value: number | null; passed?: boolean | null; reason?: string }>;
  latency_ms: number | null; input_tokens: number; output_tokens: number; cost: number | null; error: string | null; trace_id: string | null;
}

export const RUNNING = new Set(["queued", "running"]);

export function ranOn(e: Experiment): string {
  if (e.benchmark) return `${e.benchmark.name}${e.benchmark.subset ? `/${e.benchmark.subset}` : ""}${e.benchmark.limit ? ` (${e.benchmark.limit})` : ""}`;
  return e.dataset_id ? `v${e.dataset_version}${e.split ? ` ${e.split}` : ""}` : "–";
}

export function targetOf(e: Experiment): string {
  return e.target?.model ? `${e.target.provider ?? "openai"}/${e.target.model}` : "client-side";
}
