import { describe, expect, it } from "vitest";
import { normaliseMAC } from "./DataCentre";
import { patchFromEvent } from "./Rack";
import { machineAt } from "./RackSVG";
import { matches } from "./Events";

describe("normaliseMAC", () => {
  it("accepts the common spellings", () => {
    for (const s of ["52-54-00-A1-01-01", "5254.00a1.0101", "525400A10101", "52:54:00:a1:01:01"]) expect(normaliseMAC(s)).toBe("52:54:00:a1:01:01");
  });
  it("leaves other terms alone", () => {
    expect(normaliseMAC("web01")).toBe("web01");
    expect(normaliseMAC("10.10.0.11")).toBe("10.10.0.11");
  });
});

describe("patchFromEvent", () => {
  it("takes state and alive from machine events", () => {
    expect(patchFromEvent({ objectType: "machine", changes: { state: "ERROR", alive: false, model: "x" } })).toEqual({ state: "ERROR", alive: false });
  });
  it("ignores other objects and unknown states", () => {
    expect(patchFromEvent({ objectType: "nic", changes: { state: "ERROR" } })).toBeNull();
    expect(patchFromEvent({ objectType: "machine", changes: { state: "MELTED" } })).toBeNull();
    expect(patchFromEvent({ objectType: "machine", changes: null })).toBeNull();
  });
});

describe("machineAt", () => {
  const ms = [
    { id: "a", name: "a", uPosition: 1, uHeight: 2, state: "READY", alive: true },
    { id: "b", name: "b", uPosition: 5, uHeight: 1, state: "READY", alive: true },
  ];
  it("finds the machine spanning a U", () => {
    expect(machineAt(ms, 1)?.id).toBe("a");
    expect(machineAt(ms, 2)?.id).toBe("a");
    expect(machineAt(ms, 3)).toBeUndefined();
    expect(machineAt(ms, 5)?.id).toBe("b");
  });
});

describe("event filter", () => {
  const e = { kind: "machine.updated", siteID: "s", rackID: "r", machineID: "m" };
  it("matches by kind prefix and location", () => {
    expect(matches({ kind: "", site: "", rack: "", machine: "" }, e)).toBe(true);
    expect(matches({ kind: "machine.", site: "s", rack: "r", machine: "m" }, e)).toBe(true);
    expect(matches({ kind: "noderole.", site: "", rack: "", machine: "" }, e)).toBe(false);
    expect(matches({ kind: "", site: "other", rack: "", machine: "" }, e)).toBe(false);
  });
});
