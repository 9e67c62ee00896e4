"""Traffic allocation of an A/B test: which slice of the hash space each variant owns.

The assignment scheme (reproduce it in any language; the Python SDK's ``sdk/evalforge/ab.py`` implements it)::

    digest = SHA-256(UTF-8(salt + ":" + unit_id))
    bucket = (first 8 bytes of digest read as an unsigned big-endian 64-bit integer) mod 1_000_000
    variant = the variant whose segment [start, end) contains bucket

``salt`` is the test's random hex salt (fixed when the test is created, so ramps and restarts never
reshuffle units, and two tests assign independently). The allocation is a list of segments
``[start, end, variant_index]`` covering [0, 1_000_000) exactly.

Ramps keep units where they are whenever possible: a variant whose weight shrinks gives up the end of
its last segments, a variant whose weight grows takes the freed ranges; every other unit keeps its
variant. The share of units that move is exactly the total-variation distance between old and new
weights (e.g. 50/50 -> 70/30 moves 20 % of units, all from B to A). Starting from scratch, variants
get contiguous segments in declared order (cumulative weights).
"""

from __future__ import annotations

import hashlib

BUCKETS = 1_000_000

Segment = list[int]  # [start, end, variant_index]


def widths_for(weights: list[float]) -> list[int]:
    """Integer bucket counts proportional to ``weights`` summing to BUCKETS (largest remainder)."""
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("weights must sum to more than 0")
    exact = [w / total * BUCKETS for w in weights]
    widths = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - widths[i], reverse=True)
    for i in by_remainder[: BUCKETS - sum(widths)]:
        widths[i] += 1
    return widths


def initial_allocation(weights: list[float]) -> list[Segment]:
    """Contiguous segments in declared order (cumulative weights)."""
    segments, start = [], 0
    for index, width in enumerate(widths_for(weights)):
        if width:
            segments.append([start, start + width, index])
            start += width
    return segments


def owned(segments: list[Segment], n_variants: int) -> list[int]:
    """Buckets each variant owns."""
    sizes = [0] * n_variants
    for start, end, index in segments:
        sizes[index] += end - start
    return sizes


def ramp(segments: list[Segment], weights: list[float]) -> list[Segment]:
    """New segments for ``weights`` moving as few buckets as possible (see module doc)."""
    target = widths_for(weights)
    current = owned(segments, len(weights))
    excess = [max(0, c - t) for c, t in zip(current, target)]
    kept: list[Segment] = []
    freed: list[list[int]] = []
    # shrinking variants give up the tail of their segments (walked from the end of the space)
    for start, end, index in sorted(segments, key=lambda s: s[0], reverse=True):
        give = min(excess[index], end - start)
        excess[index] -= give
        if give:
            freed.append([end - give, end])
        if end - give > start:
            kept.append([start, end - give, index])
    freed.sort()
    need = [max(0, t - c) for c, t in zip(current, target)]
    for index in range(len(weights)):
        while need[index]:
            start, end = freed[0]
            take = min(need[index], end - start)
            kept.append([start, start + take, index])
            need[index] -= take
            if start + take == end:
                freed.pop(0)
            else:
                freed[0][0] = start + take
    return merge(kept)


def merge(segments: list[Segment]) -> list[Segment]:
    """Sorted, with touching segments of one variant joined."""
    out: list[Segment] = []
    for start, end, index in sorted(segments):
        if out and out[-1][1] == start and out[-1][2] == index:
            out[-1][1] = end
        else:
            out.append([start, end, index])
    return out


def moved_share(before: list[Segment], after: list[Segment]) -> float:
    """Share of the hash space whose variant differs between two allocations."""
    cuts = sorted({0, BUCKETS, *(s[0] for s in before + after), *(s[1] for s in before + after)})

    def owner(segments: list[Segment], at: int) -> int:
        return next(s[2] for s in segments if s[0] <= at < s[1])

    moved = sum(b - a for a, b in zip(cuts, cuts[1:]) if owner(before, a) != owner(after, a))
    return moved / BUCKETS


def bucket_of(salt: str, unit_id: str) -> int:
    """The unit's bucket in [0, BUCKETS) (the scheme in the module doc)."""
    digest = hashlib.sha256(f"{salt}:{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS
