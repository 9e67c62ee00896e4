// Shapes of /api/v1/models answers (query_api/routers/models.py).

export interface ModelEntry {
  id: string;
  provider: string;
  name: string;
  snapshots: string[];
  context_window: number | null;
  max_output_tokens: number | null;
  modalities: { input: string[]; output: string[] };
  capabilities: Record<string, boolean>;
  deprecation_date: string | null;
  metadata: Record<string, unknown>;
  source: string;
  price: { source: string; entry: string; prices: Record<string, number> } | null;
}

export interface Observed {
  window: { from: string; to: string };
  calls: number;
  errors?: number;
  error_rate?: number | null;
  errors_by_class?: Record<string, number>;
  latency_ms?: { p50: number | null; p95: number | null };
  ttft_ms?: { p50: number | null; p95: number | null; n: number };
  cost_per_call?: number | null;
  cost_per_1k_calls?: number | null;
  output_tokens_per_second?: { p50: number | null; n: number };
}

export interface ExperimentEvidence {
  experiment_id: string;
  name: string;
  dataset_id: string | null;
  dataset_version: number | null;
  benchmark: string | null;
  finished_at: string | null;
  scores: Record<string, { mean: number; ci_low: number | null; ci_high: number | null; n: number }>;
}

export interface Candidate {
  model: string;
  evidence: { n: number; score: number; ci: [number | null, number | null]; p95_latency_ms: number | null;
              cost_per_1k_calls: number | null; sources: string[] };
}

export interface Recommendation {
  task: Record<string, string | null>;
  window: { from: string; to: string };
  candidates: Candidate[];
  excluded: { model: string; reasons: string[] }[];
  decision: { winner: string | null; confident: boolean; why: string };
  proposed_experiment: null | { models: string[]; dataset_id: string | null; benchmark: string | null;
    items_needed: number | null; effect_size: number; difference: number; formula: string; note?: string;
    alpha: number; power: number; correction: string;
    comparisons: { models: string[]; items_needed: number | null; difference: number; effect_size: number }[] };
}

/** Fixed-precision numbers, so that what the page shows can be checked against the API's values. */
export const fixed = (v: number | null | undefined, digits: number): string =>
  v == null || !Number.isFinite(v) ? "–" : v.toFixed(digits);
