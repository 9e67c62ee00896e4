import { FormEvent, useState } from "react";
import { useNavigate } from "react-router";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { api, WRITE_ROLES } from "../../api";
import { useProject } from "../../session";
import { fmtCost, fmtInt, fmtMs, fmtNumber, fmtTime } from "../../lib/format";
import { ErrorBox, Loading } from "../../components/ErrorBox";
import { JsonTree } from "../../components/JsonTree";
import { Payload } from "./Messages";
import { AddToDataset } from "./AddToDataset";
import type { Score } from "./TraceDetailPage";

interface SpanFull {
  span_id: string; trace_id: string; name: string; kind: string; model: string; provider: string; status: string;
  status_message: string; error_type: string; start_time: string; end_time: string; duration_ms: number;
  ttft_ms: number | null; tokens_per_second: number | null; input_tokens: number; output_tokens: number;
  cache_read_tokens: number; cache_creation_tokens: number; reasoning_tokens: number; total_tokens: number;
  tokens_estimated: number; cost: number | null; cost_source: string; input: string | null; output: string | null;
  input_error?: string; output_error?: string; attributes: Record<string, unknown>;
  events: Array<{ name: string; time?: string; timestamp?: string; attributes?: Record<string, unknown> }>;
  cost_details: Record<string, number> | null; scores: Score[]; tags: string[]; session_id: string; user_id: string; environment: string; release: string;
}

/** One span, fetched when opened (full payloads from the blob store are read only here). */
export function SpanPanel({ projectId, traceId, spanId }: { projectId: string; traceId: string; spanId: string }) {
  const span = useQuery({
    queryKey: ["span", projectId, traceId, spanId],
    queryFn: ({ signal }) => api<SpanFull>(`/traces/${encodeURIComponent(traceId)}/spans/${encodeURIComponent(spanId)}`, { project: projectId, signal }),
  });
  return (
    <aside className="span-panel" aria-label="Span details" data-testid="span-panel">
      {span.error ? <ErrorBox error={span.error} retry={() => span.refetch()} /> :
       !span.data ? <Loading what="span" /> : <SpanBody s={span.data} projectId={projectId} />}
    </aside>
  );
}

function SpanBody({ s, projectId }: { s: SpanFull; projectId: string }) {
  const navigate = useNavigate();
  const { project } = useProject();
  const filterBy = (key: string, value: unknown) => {
    const p = new URLSearchParams();
    p.append("attribute", `${key}=${typeof value === "string" ? value : JSON.stringify(value)}`);
    navigate(`/projects/${projectId}/traces?${p}`);
  };
  const exceptions = s.events.filter((e) => e.name === "exception");
  const otherEvents = s.events.filter((e) => e.name !== "exception");
  return (
    <>
      <h2>{s.name} <span className={`status status-${s.status}`}>{s.status}</span></h2>
      {s.status_message && <p className="error-text">{s.error_type && <strong>{s.error_type}: </strong>}{s.status_message}</p>}
      <dl className="stats">
        <div><dt>Kind</dt><dd>{s.kind || "span"}</dd></div>
        {s.model && <div><dt>Model</dt><dd>{s.provider ? `${s.provider} / ` : ""}{s.model}</dd></div>}
        <div><dt>Start</dt><dd>{fmtTime(s.start_time)}</dd></div>
        <div><dt>Duration</dt><dd>{fmtMs(s.duration_ms)}</dd></div>
        {s.ttft_ms != null && <div><dt>TTFT</dt><dd data-testid="ttft">{fmtMs(s.ttft_ms)}</dd></div>}
        {s.tokens_per_second != null && <div><dt>Tokens/s</dt><dd>{fmtNumber(s.tokens_per_second)}</dd></div>}
        <div><dt>Cost</dt><dd>{fmtCost(s.cost)}{s.cost_source && <span className="muted"> ({s.cost_source})</span>}</dd></div>
      </dl>
      {s.total_tokens > 0 && (
        <table className="tokens" aria-label="Tokens and cost by type" data-testid="token-table">
          <thead><tr><th>Tokens</th><th>count</th>{s.cost_details && <th>cost</th>}</tr></thead>
          <tbody>
            {tokenRows(s).map(([label, count, key]) => (
              <tr key={label}><td>{label}</td><td>{fmtInt(count)}</td>
                {s.cost_details && <td>{key && s.cost_details[key] != null ? fmtCost(s.cost_details[key]) : ""}</td>}</tr>
            ))}
            <tr><td>total{s.tokens_estimated ? " (estimated)" : ""}</td><td>{fmtInt(s.total_tokens)}</td>
              {s.cost_details && <td>{fmtCost(s.cost)}</td>}</tr>
          </tbody>
        </table>
      )}
      {s.input_error && <p className="error-box">Input: {s.input_error}</p>}
      <Payload raw={s.input} label="Input" />
      {s.output_error && <p className="error-box">Output: {s.output_error}</p>}
      <Payload raw={s.output} label="Output" />
      {exceptions.length > 0 && (
        <section aria-label="Exceptions"><h3>Exceptions</h3>
          {exceptions.map((e, i) => (
            <div key={i} className="exception">
              <strong>{String(e.attributes?.["exception.type"] ?? "exception")}</strong>: {String(e.attributes?.["exception.message"] ?? "")}
              {e.attributes?.["exception.stacktrace"] != null && <pre className="payload">{String(e.attributes["exception.stacktrace"])}</pre>}
            </div>
          ))}
        </section>
      )}
      {otherEvents.length > 0 && (
        <section aria-label="Events"><h3>Events</h3>
          <ul className="events">{otherEvents.map((e, i) => (
            <li key={i}><strong>{e.name}</strong> <span className="muted">{fmtTime(e.time ?? e.timestamp)}</span>
              {e.attributes && Object.keys(e.attributes).length > 0 && <JsonTree value={e.attributes} />}</li>
          ))}</ul>
        </section>
      )}
      <section aria-label="Attributes"><h3>Attributes</h3>
        <div className="pills">
          {[["model", s.model], ["provider", s.provider], ["user_id", s.user_id], ["session_id", s.session_id],
            ["environment", s.environment], ["release", s.release]].filter(([, v]) => v).map(([k, v]) => (
            <button type="button" key={k} className="pill" title={`Traces with ${k} = ${v}`}
                    onClick={() => navigate(`/projects/${projectId}/traces?${new URLSearchParams({ [k as string]: v as string })}`)}>
              <span className="pill-key">{k}</span> {v}</button>
          ))}
          {s.tags.map((t) => (
            <button type="button" key={`tag-${t}`} className="pill" onClick={() => navigate(`/projects/${projectId}/traces?${new URLSearchParams({ tag: t })}`)}>
              <span className="pill-key">tag</span> {t}</button>
          ))}
          {Object.entries(s.attributes).map(([k, v]) => (
            <button type="button" key={k} className="pill" title={`Traces with ${k} = this value`} onClick={() => filterBy(k, v)}>
              <span className="pill-key">{k}</span> {typeof v === "string" ? v : JSON.stringify(v)}</button>
          ))}
        </div>
      </section>
      <Scores s={s} projectId={projectId} />
      {project && WRITE_ROLES.has(project.role) && <AddToDataset key={s.span_id} projectId={projectId} traceId={s.trace_id} spanId={s.span_id} />}
    </>
  );
}

/** (label, tokens, cost_details key) per token type; each token counted once, as core/pricing prices it. */
function tokenRows(s: SpanFull): Array<[string, number, string | null]> {
  const uncached = s.input_tokens - s.cache_read_tokens - s.cache_creation_tokens;
  const rows: Array<[string, number, string | null]> = [["input", uncached, "input"]];
  if (s.cache_read_tokens) rows.push(["cache read", s.cache_read_tokens, "cache_read"]);
  if (s.cache_creation_tokens) rows.push(["cache write", s.cache_creation_tokens, "cache_write_5m"]);
  rows.push(["output", s.output_tokens - s.reasoning_tokens, "output"]);
  if (s.reasoning_tokens) rows.push(["reasoning", s.reasoning_tokens, "reasoning"]);
  return rows;
}

function Scores({ s, projectId }: { s: SpanFull; projectId: string }) {
  const { project } = useProject();
  const qc = useQueryClient();
  const [name, setName] = useState("quality");
  const [value, setValue] = useState("");
  const [comment, setComment] = useState("");
  const add = useMutation({
    mutationFn: () => {
      const num = Number(value);
      return api("/scores", { method: "POST", project: projectId, body: {
        trace_id: s.trace_id, span_id: s.span_id, name, source: "human", comment: comment || undefined,
        value: value.trim() !== "" && Number.isFinite(num) ? num : value,
      } });
    },
    onSuccess: () => {
      setValue(""); setComment("");
      // The score goes through the bus to storage: look again once it has had time to land.
      for (const ms of [1000, 3000]) setTimeout(() => qc.invalidateQueries({ queryKey: ["span", projectId, s.trace_id] }), ms);
    },
  });
  const submit = (e: FormEvent) => { e.preventDefault(); add.mutate(); };
  return (
    <section aria-label="Scores"><h3>Scores</h3>
      {s.scores.length === 0 ? <p className="muted">No scores on this span.</p> : (
        <ul className="scores">{s.scores.map((sc) => (
          <li key={sc.score_id}><strong>{sc.name}</strong>: {sc.string_value || fmtNumber(sc.value)} <span className="muted">({sc.source}{sc.evaluator ? ` · ${sc.evaluator}` : ""})</span>
            {sc.comment && <div className="reason">{sc.comment}</div>}</li>
        ))}</ul>
      )}
      {project && WRITE_ROLES.has(project.role) && (
        <form className="score-form" onSubmit={submit} aria-label="Add a score">
          <label>Score name<input value={name} onChange={(e) => setName(e.target.value)} required /></label>
          <label>Value<input value={value} onChange={(e) => setValue(e.target.value)} required placeholder="1, 0.5, good…" /></label>
          <label className="grow">Comment<input value={comment} onChange={(e) => setComment(e.target.value)} /></label>
          <button type="submit" disabled={add.isPending}>Add score</button>
          {add.isSuccess && <span role="status">Saved.</span>}
          {add.error && <ErrorBox error={add.error} retry={() => add.mutate()} />}
        </form>
      )}
    </section>
  );
}
