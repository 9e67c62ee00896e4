// Span trees: built from flat spans, flattened into the rows a virtualised list draws.
// Iterative walks only: a 10,000-span chain must not overflow the call stack.

export interface SpanLike {
  span_id: string;
  parent_span_id: string;
  name: string;
  start_time: string;
  end_time: string;
  children?: SpanLike[];
  [key: string]: unknown;
}

export interface TreeRow<S extends SpanLike = SpanLike> {
  span: S;
  depth: number;
  hasChildren: boolean;
}

/** Nest flat spans under their parents, keeping the given order; a span whose parent is
 * missing (not stored yet, or dropped) becomes a root rather than disappearing, and so does a
 * span caught in a parent cycle (bad input). Linear time. */
export function buildTree<S extends SpanLike>(spans: S[]): S[] {
  const byId = new Map<string, S>();
  for (const s of spans) byId.set(s.span_id, { ...s, children: [] });
  const roots: S[] = [];
  for (const s of spans) {
    const node = byId.get(s.span_id)!;
    const parent = s.parent_span_id ? byId.get(s.parent_span_id) : undefined;
    if (parent && parent !== node) (parent.children as S[]).push(node);
    else roots.push(node);
  }
  // Spans not reachable from a root sit on a cycle: cut each cycle at the first such span.
  const reached = new Set<string>();
  const walk = (start: S) => {
    const stack = [start];
    while (stack.length) {
      const n = stack.pop()!;
      if (reached.has(n.span_id)) continue;
      reached.add(n.span_id);
      for (const c of n.children as S[]) stack.push(c);
    }
  };
  roots.forEach(walk);
  for (const s of spans) {
    const node = byId.get(s.span_id)!;
    if (reached.has(node.span_id)) continue;
    const parent = byId.get(node.parent_span_id)!;
    parent.children = (parent.children as S[]).filter((c) => c !== node);
    roots.push(node);
    walk(node);
  }
  return roots;
}

/** Depth-first rows of the tree, skipping the children of collapsed spans; when ``keep`` is
 * given, only spans in it are shown (search results and their ancestors). */
export function flattenTree<S extends SpanLike>(roots: S[], collapsed: Set<string> = new Set(),
                                                 keep?: Set<string>): TreeRow<S>[] {
  const rows: TreeRow<S>[] = [];
  const stack: Array<[S, number]> = [];
  for (let i = roots.length - 1; i >= 0; i--) stack.push([roots[i], 0]);
  while (stack.length) {
    const [span, depth] = stack.pop()!;
    if (keep && !keep.has(span.span_id)) continue;
    const children = (span.children ?? []) as S[];
    rows.push({ span, depth, hasChildren: children.length > 0 });
    if (collapsed.has(span.span_id)) continue;
    for (let i = children.length - 1; i >= 0; i--) stack.push([children[i], depth + 1]);
  }
  return rows;
}

/** Spans whose name, model, kind, status or previews contain ``query`` (case-insensitive), plus
 * their ancestors so matches stay in context. Null when the query is empty. */
export function searchTree<S extends SpanLike>(roots: S[], query: string): { keep: Set<string>; matches: string[] } | null {
  const q = query.trim().toLowerCase();
  if (!q) return null;
  const keep = new Set<string>();
  const matches: string[] = [];
  const stack: Array<[S, S[]]> = roots.map((r) => [r, []] as [S, S[]]).reverse();
  while (stack.length) {
    const [span, path] = stack.pop()!;
    const hay = ["name", "model", "kind", "status", "status_message", "input_preview", "output_preview", "span_id"]
      .map((k) => String(span[k] ?? "")).join("\n").toLowerCase();
    if (hay.includes(q)) {
      matches.push(span.span_id);
      keep.add(span.span_id);
      for (const a of path) keep.add(a.span_id);
    }
    const children = (span.children ?? []) as S[];
    for (let i = children.length - 1; i >= 0; i--) stack.push([children[i], [...path, span]]);
  }
  return { keep, matches };
}

/** Every span in the tree, depth first. */
export function allSpans<S extends SpanLike>(roots: S[]): S[] {
  return flattenTree(roots).map((r) => r.span);
}
