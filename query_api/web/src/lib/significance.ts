// A compared metric's verdict in words, from the p-value the compare API gives.

export const ALPHA = 0.05;

export interface TestedMetric { p_value: number; p_value_holm?: number | null }

/** The p-value a verdict rests on: Holm-adjusted when more than two runs were compared (the API adds
 * ``p_value_holm`` only then). */
export function decidingP(m: TestedMetric): number {
  return m.p_value_holm ?? m.p_value;
}

export function significance(m: TestedMetric): string {
  return decidingP(m) < ALPHA ? "significant at 95 %" : "not significant";
}
