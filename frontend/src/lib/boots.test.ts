import { describe, expect, it } from "vitest";
import { driftRows, waterfall, type BootLike } from "./boots";

// Shaped like Machine.boots(last: 5)[0] (graph/discovery.graphqls).
const boot: BootLike = {
  trace: "t-1",
  start: "2026-12-02T05:00:00.000Z",
  durationMs: 4000,
  steps: [
    { kind: "lease.offered", what: "10.0.0.5", at: "2026-12-02T05:00:00.000Z", durationMs: null, status: null, error: null },
    { kind: "boot.http", what: "script", at: "2026-12-02T05:00:00.500Z", durationMs: 500, status: "200", error: null },
    { kind: "boot.http", what: "discovery/initrd", at: "2026-12-02T05:00:01.000Z", durationMs: 2000, status: "404", error: null },
    { kind: "agent.task.end", what: "task burnin end", at: "2026-12-02T05:00:03.000Z", durationMs: 1000, status: "failed", error: "exit 1" },
  ],
};

describe("waterfall", () => {
  it("offsets each step from the boot's start and sizes it by duration", () => {
    const { spanMs, bars } = waterfall(boot);
    expect(spanMs).toBe(4000);
    expect(bars.map((b) => b.offsetMs)).toEqual([0, 500, 1000, 3000]);
    expect(bars.map((b) => b.leftPct)).toEqual([0, 12.5, 25, 75]);
    expect(bars[1]!.widthPct).toBe(12.5);
    expect(bars[2]!.widthPct).toBe(50);
    expect(bars[0]!.widthPct).toBe(0.5); // an instant still shows
    expect(bars.map((b) => b.failed)).toEqual([false, false, true, true]);
  });

  it("stretches the span to a step that ends after durationMs and keeps bars inside it", () => {
    const { spanMs, bars } = waterfall({ ...boot, durationMs: 0, steps: [boot.steps[3]!] });
    expect(spanMs).toBe(4000);
    expect(bars[0]!.leftPct + bars[0]!.widthPct).toBeLessThanOrEqual(100);
  });
});

describe("driftRows", () => {
  it("gives no rows for null or {}", () => {
    expect(driftRows(null)).toEqual([]);
    expect(driftRows({})).toEqual([]);
  });

  it("flattens each difference into planned-vs-found rows", () => {
    const rows = driftRows({
      nics: { missing: ["52:54:00:00:00:01"], extra: ["52:54:00:00:00:09"] },
      disks: { planned: 2, found: 1, missing: [{ name: "sdb", sizeBytes: 500e9 }], extra: [] },
      cpuCount: { planned: 8, found: 4 },
      memoryBytes: { planned: 16 * 2 ** 30, found: 8 * 2 ** 30 },
    });
    expect(rows).toEqual([
      { fact: "CPUs", planned: "8", found: "4" },
      { fact: "Disk count", planned: "2", found: "1" },
      { fact: "Disk", planned: "sdb (500 GB)", found: "missing" },
      { fact: "Memory", planned: "16 GiB", found: "8 GiB" },
      { fact: "NIC", planned: "52:54:00:00:00:01", found: "missing" },
      { fact: "NIC", planned: "not planned", found: "52:54:00:00:00:09" },
    ]);
  });
});
