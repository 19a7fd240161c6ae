import { describe, expect, it } from "vitest";
import { latestSeq, SeqGate } from "./seq";

function log(n: number) {
  let calls = 0;
  const probe = async (afters: number[]) => { calls++; return afters.map((a) => a < n); };
  return { probe, calls: () => calls };
}

describe("latestSeq", () => {
  for (const n of [0, 1, 2, 15, 16, 17, 1023, 1024, 1025, 99_999, 1_234_567]) {
    it(`finds ${n}`, async () => {
      const l = log(n);
      expect(await latestSeq(l.probe)).toBe(n);
      expect(l.calls()).toBeLessThanOrEqual(10);
    });
  }
});

describe("SeqGate", () => {
  it("drops repeats and old seqs after a resume", () => {
    const g = new SeqGate(5);
    expect([4, 5, 6, 6, 7, 3, 8].filter((s) => g.accept(s))).toEqual([6, 7, 8]);
    expect(g.last).toBe(8);
  });
});
