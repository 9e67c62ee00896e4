import { useState } from "react";

const SIZE_GATE = 200_000; // characters: above this, plain text instead of a tree (keeps the page responsive)

/** Structured values as a collapsible tree; text only (no HTML is ever interpreted). */
export function JsonTree({ value, name, depth = 0 }: { value: unknown; name?: string; depth?: number }) {
  if (depth === 0) {
    const text = JSON.stringify(value);
    if (text && text.length > SIZE_GATE) return <pre className="payload">{JSON.stringify(value, null, 2)}</pre>;
  }
  return <Node value={value} name={name} depth={depth} />;
}

function Node({ value, name, depth }: { value: unknown; name?: string; depth: number }) {
  const [open, setOpen] = useState(depth < 2);
  const label = name !== undefined ? <span className="json-key">{name}: </span> : null;
  if (value === null || typeof value !== "object") {
    const cls = typeof value === "string" ? "json-str" : "json-lit";
    return <div className="json-row">{label}<span className={cls}>{typeof value === "string" ? JSON.stringify(value) : String(value)}</span></div>;
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [String(i), v] as const) : Object.entries(value);
  const brackets = Array.isArray(value) ? ["[", "]"] : ["{", "}"];
  return (
    <div className="json-row">
      <button type="button" className="json-toggle" aria-expanded={open} onClick={() => setOpen(!open)}>
        {open ? "▾" : "▸"}
      </button>
      {label}{brackets[0]}{!open && <span className="muted"> {entries.length} items {brackets[1]}</span>}
      {open && (
        <div className="json-children">
          {entries.map(([k, v]) => <Node key={k} name={k} value={v} depth={depth + 1} />)}
        </div>
      )}
      {open && brackets[1]}
    </div>
  );
}
