import { JsonTree } from "../../components/JsonTree";
import { Message, Part, renderPayload, structured } from "../../lib/messages";

/** A span's input or output: chat messages, a JSON tree or text. Rendered as text nodes only. */
export function Payload({ raw, label }: { raw: string | null | undefined; label: string }) {
  const r = renderPayload(raw);
  return (
    <section className="payload-section" aria-label={label}>
      <h3>{label}</h3>
      {r.kind === "empty" && <p className="muted">none</p>}
      {r.kind === "text" && <pre className="payload" data-testid={`${label.toLowerCase()}-text`}>{r.text}</pre>}
      {r.kind === "json" && <JsonTree value={r.value} />}
      {r.kind === "messages" && r.messages.map((m, i) => <MessageView key={i} m={m} />)}
    </section>
  );
}

function MessageView({ m }: { m: Message }) {
  return (
    <div className={`message role-${m.role}`} data-testid="message" data-role={m.role}>
      <div className="role">{m.role}</div>
      {m.parts.map((p, i) => <PartView key={i} p={p} />)}
    </div>
  );
}

function PartView({ p }: { p: Part }) {
  if (p.type === "text") {
    const value = structured(p.text);
    return value === undefined ? <pre className="payload">{p.text}</pre> : <JsonTree value={value} />;
  }
  if (p.type === "tool_call") {
    return (
      <div className="tool-call" data-testid="tool-call">
        <span className="tool-tag">tool call</span> <strong>{p.name}</strong>{p.id && <span className="muted mono"> {p.id}</span>}
        {typeof p.arguments === "string" ? <pre className="payload">{p.arguments}</pre> : <JsonTree value={p.arguments} />}
      </div>
    );
  }
  if (p.type === "tool_result") {
    return (
      <div className="tool-result" data-testid="tool-result">
        <span className="tool-tag">tool result</span>{p.id && <span className="muted mono"> {p.id}</span>}
        {typeof p.content === "string" ? <pre className="payload">{p.content}</pre> : <JsonTree value={p.content} />}
      </div>
    );
  }
  return <JsonTree value={p.value} />;
}
