// One chat-message model for the span panel. Ingest already normalises most conventions to the
// OTel GenAI shape ({role, parts: [{type: text | tool_call | tool_call_response}]}); small adapters
// also read OpenAI chat and Anthropic content blocks, which arrive unchanged from JSON batches.
// Everything here is data: the page renders it as text nodes, never as HTML.

export type Part =
  | { type: "text"; text: string }
  | { type: "tool_call"; id: string; name: string; arguments: unknown }
  | { type: "tool_result"; id: string; content: unknown }
  | { type: "data"; value: unknown };

export interface Message {
  role: string;
  parts: Part[];
}

export type Rendered =
  | { kind: "messages"; messages: Message[] }
  | { kind: "json"; value: unknown }
  | { kind: "text"; text: string }
  | { kind: "empty" };

const ROLES = new Set(["system", "user", "assistant", "tool", "developer", "function", "model"]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** JSON text -> value, else undefined. */
export function tryJson(text: string): unknown {
  const t = text.trim();
  if (!t || !"[{\"".includes(t[0])) return undefined;
  try {
    return JSON.parse(t);
  } catch {
    return undefined;
  }
}

function str(v: unknown): string {
  return typeof v === "string" ? v : v == null ? "" : JSON.stringify(v);
}

function maybeJson(v: unknown): unknown {
  if (typeof v !== "string") return v;
  const parsed = tryJson(v);
  return parsed === undefined ? v : parsed;
}

function contentParts(content: unknown): Part[] {
  if (content == null) return [];
  if (typeof content === "string") return content ? [{ type: "text", text: content }] : [];
  if (!Array.isArray(content)) return [{ type: "data", value: content }];
  const parts: Part[] = [];
  for (const block of content) {
    if (typeof block === "string") parts.push({ type: "text", text: block });
    else if (!isObject(block)) parts.push({ type: "data", value: block });
    else if (block.type === "text" || block.type === "input_text" || block.type === "output_text")
      parts.push({ type: "text", text: str(block.text ?? block.content) });
    else if (block.type === "tool_call" || block.type === "tool_use" || block.type === "function_call")
      parts.push({ type: "tool_call", id: str(block.id ?? block.call_id), name: str(block.name),
                   arguments: maybeJson(block.arguments ?? block.input) });
    else if (block.type === "tool_call_response" || block.type === "tool_result")
      parts.push({ type: "tool_result", id: str(block.id ?? block.tool_use_id),
                   content: maybeJson(block.response ?? block.content) });
    else parts.push({ type: "data", value: block });
  }
  return parts;
}

function toMessage(m: Record<string, unknown>): Message {
  const role = str(m.role) || "assistant";
  const parts: Part[] = Array.isArray(m.parts) ? contentParts(m.parts) : [];
  if (!Array.isArray(m.parts)) {
    if (role === "tool" || role === "function") {
      parts.push({ type: "tool_result", id: str(m.tool_call_id ?? m.name), content: maybeJson(m.content) });
    } else {
      parts.push(...contentParts(m.content));
    }
  }
  for (const call of Array.isArray(m.tool_calls) ? m.tool_calls : []) {
    if (!isObject(call)) continue;
    const fn = isObject(call.function) ? call.function : call;
    parts.push({ type: "tool_call", id: str(call.id), name: str(fn.name), arguments: maybeJson(fn.arguments) });
  }
  if (isObject(m.function_call)) {
    parts.push({ type: "tool_call", id: "", name: str(m.function_call.name), arguments: maybeJson(m.function_call.arguments) });
  }
  return { role, parts };
}

function looksLikeMessage(v: unknown): v is Record<string, unknown> {
  return isObject(v) && typeof v.role === "string" && ROLES.has(v.role) &&
    ("content" in v || "parts" in v || "tool_calls" in v || "function_call" in v);
}

/** A payload (span input or output, as stored) -> what the panel shows. */
export function renderPayload(raw: string | null | undefined): Rendered {
  if (raw == null || raw === "") return { kind: "empty" };
  const value = tryJson(raw);
  if (value === undefined) return { kind: "text", text: raw };
  let list: unknown = value;
  if (isObject(value)) {
    if (Array.isArray(value.messages)) list = value.messages;
    else if (Array.isArray(value.choices)) list = value.choices.map((c) => (isObject(c) ? c.message : c));
    else if (looksLikeMessage(value)) list = [value];
  }
  if (Array.isArray(list) && list.length > 0 && list.every(looksLikeMessage)) {
    return { kind: "messages", messages: list.map(toMessage) };
  }
  if (typeof value === "string") return { kind: "text", text: value };
  return { kind: "json", value };
}

/** Text of a message part that is itself JSON (structured output) -> the value, else undefined. */
export function structured(text: string): unknown {
  const v = tryJson(text);
  return typeof v === "object" && v !== null ? v : undefined;
}
