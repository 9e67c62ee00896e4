import { describe, expect, it } from "vitest";
import { buildTree, flattenTree, searchTree, SpanLike } from "./tree";

const s = (id: string, parent: string, name = id): SpanLike => ({
  span_id: id, parent_span_id: parent, name, start_time: "2026-01-01T00:00:00Z", end_time: "2026-01-01T00:00:01Z",
});

describe("buildTree / flattenTree", () => {
  it("nests children under parents in order and keeps orphans as roots", () => {
    const roots = buildTree([s("a", ""), s("b", "a"), s("c", "a"), s("d", "b"), s("x", "missing")]);
    expect(roots.map((r) => r.span_id)).toEqual(["a", "x"]);
    const rows = flattenTree(roots);
    expect(rows.map((r) => [r.span.span_id, r.depth, r.hasChildren])).toEqual([
      ["a", 0, true], ["b", 1, true], ["d", 2, false], ["c", 1, false], ["x", 0, false]]);
  });

  it("hides the children of collapsed spans", () => {
    const rows = flattenTree(buildTree([s("a", ""), s("b", "a"), s("d", "b"), s("c", "a")]), new Set(["b"]));
    expect(rows.map((r) => r.span.span_id)).toEqual(["a", "b", "c"]);
  });

  it("survives a parent cycle and a 10,000-deep chain", () => {
    const cyc = buildTree([s("a", "b"), s("b", "a")]);
    expect(flattenTree(cyc).length).toBe(2);
    const chain = Array.from({ length: 10_000 }, (_, i) => s(`s${i}`, i ? `s${i - 1}` : ""));
    const rows = flattenTree(buildTree(chain));
    expect(rows.length).toBe(10_000);
    expect(rows[9_999].depth).toBe(9_999);
  });
});

describe("searchTree", () => {
  it("keeps matches and their ancestors", () => {
    const roots = buildTree([s("a", "", "root"), s("b", "a", "plan"), s("c", "b", "search web"), s("d", "a", "answer")]);
    const found = searchTree(roots, "WEB")!;
    expect(found.matches).toEqual(["c"]);
    expect(flattenTree(roots, new Set(), found.keep).map((r) => r.span.span_id)).toEqual(["a", "b", "c"]);
    expect(searchTree(roots, "  ")).toBeNull();
  });
});
