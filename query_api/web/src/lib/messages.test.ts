import { describe, expect, it } from "vitest";
import { renderPayload, structured } from "./messages";

describe("renderPayload", () => {
  it("reads OTel GenAI messages with tool calls and results", () => {
    const raw = JSON.stringify([
      { role: "system", parts: [{ type: "text", content: "be brief" }] },
      { role: "assistant", parts: [{ type: "tool_call", id: "c1", name: "get_weather", arguments: { city: "Paris" } }] },
      { role: "tool", parts: [{ type: "tool_call_response", id: "c1", response: '{"temp": 18}' }] },
    ]);
    const r = renderPayload(raw);
    expect(r.kind).toBe("messages");
    if (r.kind !== "messages") return;
    expect(r.messages.map((m) => m.role)).toEqual(["system", "assistant", "tool"]);
    expect(r.messages[1].parts[0]).toEqual({ type: "tool_call", id: "c1", name: "get_weather", arguments: { city: "Paris" } });
    expect(r.messages[2].parts[0]).toEqual({ type: "tool_result", id: "c1", content: { temp: 18 } });
  });

  it("reads OpenAI chat messages (tool_calls with JSON-string arguments, tool role)", () => {
    const r = renderPayload(JSON.stringify({ messages: [
      { role: "user", content: [{ type: "text", text: "hi" }] },
      { role: "assistant", content: null, tool_calls: [{ id: "t", type: "function", function: { name: "f", arguments: '{"a":1}' } }] },
      { role: "tool", tool_call_id: "t", content: "done" },
    ] }));
    expect(r.kind === "messages" && r.messages.map((m) => m.parts)).toEqual([
      [{ type: "text", text: "hi" }],
      [{ type: "tool_call", id: "t", name: "f", arguments: { a: 1 } }],
      [{ type: "tool_result", id: "t", content: "done" }],
    ]);
  });

  it("reads Anthropic content blocks", () => {
    const r = renderPayload(JSON.stringify([{ role: "assistant", content: [
      { type: "text", text: "checking" }, { type: "tool_use", id: "u", name: "search", input: { q: "x" } }] }]));
    expect(r.kind === "messages" && r.messages[0].parts[1]).toEqual({ type: "tool_call", id: "u", name: "search", arguments: { q: "x" } });
  });

  it("falls back to a JSON tree or plain text, and keeps markup as text", () => {
    expect(renderPayload('{"answer": 42}')).toEqual({ kind: "json", value: { answer: 42 } });
    expect(renderPayload("<script>alert(1)</script>")).toEqual({ kind: "text", text: "<script>alert(1)</script>" });
    expect(renderPayload("")).toEqual({ kind: "empty" });
    expect(renderPayload("[1, 2")).toEqual({ kind: "text", text: "[1, 2" });
  });

  it("spots structured output in a message's text", () => {
    expect(structured('{"name": "x"}')).toEqual({ name: "x" });
    expect(structured("plain")).toBeUndefined();
  });
});
