import { describe, expect, it } from "vitest";
import { barLayout, MIN_BAR_PERCENT, ticks, traceBounds } from "./timeline";

describe("timeline layout", () => {
  const bounds = traceBounds([
    { start_time: "2026-01-01T00:00:00.000Z", end_time: "2026-01-01T00:00:01.000Z" },
    { start_time: "2026-01-01T00:00:00.250Z", end_time: "2026-01-01T00:00:02.000Z" },
  ]);
  it("spans the earliest start to the latest end", () => {
    expect(bounds.end - bounds.start).toBe(2000);
  });
  it("places bars in percent of the trace", () => {
    const t0 = bounds.start;
    expect(barLayout(t0 + 500, t0 + 1500, bounds)).toEqual({ left: 25, width: 50 });
    expect(barLayout(t0, t0 + 2000, bounds)).toEqual({ left: 0, width: 100 });
  });
  it("keeps zero-length and out-of-range spans visible and inside the axis", () => {
    const t0 = bounds.start;
    expect(barLayout(t0 + 1000, t0 + 1000, bounds).width).toBe(MIN_BAR_PERCENT);
    const late = barLayout(t0 + 5000, t0 + 6000, bounds);
    expect(late.left + late.width).toBeLessThanOrEqual(100);
  });
  it("puts ticks on round values", () => {
    expect(ticks(2000).map((t) => t.ms)).toEqual([0, 500, 1000, 1500, 2000]);
  });
});
