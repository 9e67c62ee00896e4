import { describe, expect, it } from "vitest";
import { decidingP, significance } from "./significance";

describe("significance", () => {
  it("reads the raw p-value for two runs", () => {
    expect(significance({ p_value: 0.0078125 })).toBe("significant at 95 %");
    expect(significance({ p_value: 0.05 })).toBe("not significant");
  });

  it("reads the Holm-adjusted p-value when there is one", () => {
    expect(decidingP({ p_value: 0.03, p_value_holm: 0.06 })).toBe(0.06);
    expect(significance({ p_value: 0.03, p_value_holm: 0.06 })).toBe("not significant");
    expect(significance({ p_value: 0.01, p_value_holm: 0.02 })).toBe("significant at 95 %");
  });
});
