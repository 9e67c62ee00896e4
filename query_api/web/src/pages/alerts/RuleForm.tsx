import { FormEvent, useState } from "react";
import { ErrorBox } from "../../components/ErrorBox";

export interface AlertRule {
  id: string; name: string; metric: string; aggregation: string; comparator: string; threshold: number;
  window_seconds: number; min_samples: number; cooldown_seconds: number; enabled: boolean;
  slack_webhook_url: string | null; state: AlertState;
}

export interface AlertState {
  status: "ok" | "firing" | "muted" | "disabled" | "unknown"; condition: string; since: string | null; muted_until: string | null;
  muted_indefinitely: boolean; last_value: number | null; firing_groups: number; last_evaluated_at: string | null;
}

const METRICS = ["latency", "ttft", "cost", "score_avg", "error_rate", "errors", "requests"];
const AGGREGATIONS = ["avg", "p50", "p90", "p95", "p99", "sum", "count"];
const COMPARATORS = [">", ">=", "<", "<=", "==", "!="];

type Fields = { name: string; metric: string; aggregation: string; comparator: string; threshold: string;
                window_seconds: string; min_samples: string; cooldown_seconds: string; slack_webhook_url: string };

function fieldsOf(rule?: AlertRule): Fields {
  return {
    name: rule?.name ?? "", metric: rule?.metric ?? "error_rate", aggregation: rule?.aggregation ?? "avg",
    comparator: rule?.comparator ?? ">", threshold: String(rule?.threshold ?? "0.1"),
    window_seconds: String(rule?.window_seconds ?? 300), min_samples: String(rule?.min_samples ?? 1),
    cooldown_seconds: String(rule?.cooldown_seconds ?? 900), slack_webhook_url: "",
  };
}

/** The create form and the edit form (prefilled): the same fields. The webhook URL is a secret the API
 * never returns, so editing shows it redacted and sends it only when a new one is typed. */
export function RuleForm({ rule, label, submitLabel, pending, error, onSubmit, onCancel }: {
  rule?: AlertRule; label: string; submitLabel: string; pending: boolean; error: unknown;
  onSubmit: (body: Record<string, unknown>) => void; onCancel?: () => void;
}) {
  const [f, setF] = useState<Fields>(() => fieldsOf(rule));
  const set = (k: keyof Fields) => (e: { target: { value: string } }) => setF({ ...f, [k]: e.target.value });
  const submit = (e: FormEvent) => {
    e.preventDefault();
    const body: Record<string, unknown> = {
      name: f.name, metric: f.metric, aggregation: f.aggregation, comparator: f.comparator, threshold: Number(f.threshold),
      window_seconds: Number(f.window_seconds), min_samples: Number(f.min_samples), cooldown_seconds: Number(f.cooldown_seconds),
    };
    if (f.slack_webhook_url) body.slack_webhook_url = f.slack_webhook_url;
    onSubmit(body);
  };
  const metrics = METRICS.includes(f.metric.replace(/^anomaly:/, "")) ? [...METRICS, ...METRICS.map((m) => `anomaly:${m}`)] : [f.metric, ...METRICS];
  return (
    <form className="inline-form" onSubmit={submit} aria-label={label}>
      <label>Name<input value={f.name} onChange={set("name")} required size={16} /></label>
      <label>Metric<select value={f.metric} onChange={set("metric")}>{metrics.map((m) => <option key={m}>{m}</option>)}</select></label>
      <label>Aggregation<select value={f.aggregation} onChange={set("aggregation")}>{AGGREGATIONS.map((a) => <option key={a}>{a}</option>)}</select></label>
      <label>Comparator<select value={f.comparator} onChange={set("comparator")}>{COMPARATORS.map((c) => <option key={c}>{c}</option>)}</select></label>
      <label>Threshold<input type="number" step="any" value={f.threshold} onChange={set("threshold")} required size={8} /></label>
      <label>Window (s)<input type="number" min="10" value={f.window_seconds} onChange={set("window_seconds")} required size={6} /></label>
      <label>Min samples<input type="number" min="1" value={f.min_samples} onChange={set("min_samples")} required size={5} /></label>
      <label>Cooldown (s)<input type="number" min="0" value={f.cooldown_seconds} onChange={set("cooldown_seconds")} required size={6} /></label>
      <label>Slack webhook URL<input value={f.slack_webhook_url} onChange={set("slack_webhook_url")} size={24}
        placeholder={rule?.slack_webhook_url ? `unchanged (${rule.slack_webhook_url})` : "optional"} /></label>
      <button type="submit" disabled={pending}>{submitLabel}</button>
      {onCancel && <button type="button" onClick={onCancel}>Cancel</button>}
      {error != null && <ErrorBox error={error} />}
    </form>
  );
}
