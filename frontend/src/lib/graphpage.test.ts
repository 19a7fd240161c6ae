import { describe, expect, it } from "vitest";
import { DEFAULT_PER, MAX_NODE_PAGES, NODE_PAGE, loadAll, machineArgs, pageHref, pagePos, splitEdges, type Page } from "./graphpage";

/** A fake connection of n items served in pages of size, with opaque cursors, counting requests. */
function connection(n: number, size = NODE_PAGE) {
  const items = Array.from({ length: n }, (_, i) => ({ id: String(i + 1) }));
  const calls: (string | null)[] = [];
  let inFlight = 0, maxInFlight = 0;
  const fetchPage = async (after: string | null): Promise<Page<{ id: string }>> => {
    calls.push(after);
    inFlight++; maxInFlight = Math.max(maxInFlight, inFlight);
    await new Promise((r) => setTimeout(r, 1));
    inFlight--;
    const from = after ? Number(atob(after)) : 0;
    const nodes = items.slice(from, from + size);
    const end = from + nodes.length;
    return { nodes, hasNextPage: end < n, endCursor: nodes.length ? btoa(String(end)) : null };
  };
  return { fetchPage, calls, maxInFlight: () => maxInFlight };
}

describe("loadAll", () => {
  it("loads every page of a 10,000-machine deployment's node-roles, one request at a time", async () => {
    const c = connection(30_000);
    const progress: number[] = [];
    const { nodes, truncated } = await loadAll(c.fetchPage, { maxPages: 200, onPage: (s) => progress.push(s.length) });
    expect(truncated).toBe(false);
    expect(nodes.length).toBe(30_000);
    expect(new Set(nodes.map((n) => n.id)).size).toBe(30_000);
    expect(c.calls.length).toBe(Math.ceil(30_000 / NODE_PAGE));
    expect(c.calls.length).toBeLessThanOrEqual(MAX_NODE_PAGES * 3);
    expect(c.calls[0]).toBeNull();
    expect(c.maxInFlight()).toBe(1);
    expect(progress.at(-1)).toBe(30_000);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
  });

  it("asks once for a page that fits", async () => {
    const c = connection(3);
    expect((await loadAll(c.fetchPage)).nodes.map((n) => n.id)).toEqual(["1", "2", "3"]);
    expect(c.calls).toEqual([null]);
  });

  it("stops at maxPages and says so", async () => {
    const c = connection(1_000, 100);
    const r = await loadAll(c.fetchPage, { maxPages: 3 });
    expect(r).toMatchObject({ truncated: true });
    expect(r.nodes.length).toBe(300);
  });

  it("does not loop on a cursor it has seen", async () => {
    let calls = 0;
    const r = await loadAll(async () => { calls++; return { nodes: [{ id: "x" }], hasNextPage: true, endCursor: "same" }; });
    expect(calls).toBe(2);
    expect(r.nodes.length).toBe(2);
  });

  it("asks again when the server runs enough expensive queries of this identity, then gives up", async () => {
    let calls = 0;
    const pauses: number[] = [];
    const pause = async (ms: number) => { pauses.push(ms); };
    const flaky = async (): Promise<Page<{ id: string }>> => {
      if (++calls < 3) throw new Error("TOO_MANY_EXPENSIVE_QUERIES: admin already runs 2 expensive queries");
      return { nodes: [{ id: "1" }], hasNextPage: false, endCursor: "c" };
    };
    expect((await loadAll(flaky, { pause })).nodes.length).toBe(1);
    expect(pauses).toEqual([250, 500]);
    await expect(loadAll(async () => { throw new Error("TOO_MANY_EXPENSIVE_QUERIES"); }, { pause })).rejects.toThrow(/TOO_MANY/);
    await expect(loadAll(async () => { throw new Error("QUERY_TOO_COMPLEX"); }, { pause })).rejects.toThrow(/COMPLEX/);
  });

  it("stops when cancelled", async () => {
    const c = connection(10_000);
    let cancel = false;
    const r = await loadAll(c.fetchPage, { cancelled: () => cancel, onPage: () => { cancel = true; } });
    expect(c.calls.length).toBe(2); // the request in flight when cancelled is dropped
    expect(r.nodes.length).toBe(NODE_PAGE);
  });
});

describe("page position", () => {
  it("reads the URL, clamping what a hand edit breaks", () => {
    expect(pagePos(new URLSearchParams(""))).toEqual({ per: DEFAULT_PER, after: null, before: null, n: 1 });
    expect(pagePos(new URLSearchParams("per=10&after=abc&page=3"))).toEqual({ per: 10, after: "abc", before: null, n: 3 });
    expect(pagePos(new URLSearchParams("per=100000&before=b&page=-2"))).toEqual({ per: DEFAULT_PER, after: null, before: "b", n: 1 });
    expect(pagePos(new URLSearchParams("after=a&before=b")).before).toBeNull();
  });
  it("turns into Relay arguments", () => {
    expect(machineArgs(pagePos(new URLSearchParams("")))).toEqual({ first: DEFAULT_PER });
    expect(machineArgs(pagePos(new URLSearchParams("per=25&after=x")))).toEqual({ first: 25, after: "x" });
    expect(machineArgs(pagePos(new URLSearchParams("per=25&before=y")))).toEqual({ last: 25, before: "y" });
  });
  it("round-trips through the URL", () => {
    const p = { per: 10, after: "c=/+", before: null, n: 4 };
    const href = pageHref("42", p);
    expect(href.startsWith("/annealer?deployment=42&")).toBe(true);
    expect(pagePos(new URLSearchParams(href.split("?")[1]))).toEqual(p);
    expect(pageHref("42")).toBe("/annealer?deployment=42");
  });
});

describe("splitEdges", () => {
  const parents = (total: number, ...ids: string[]) => ({ totalCount: total, edges: ids.map((id) => ({ node: { id } })) });
  it("draws links inside the page and counts the ones it cannot", () => {
    const nodes = [
      { id: "1", parents: parents(0) },
      { id: "2", parents: parents(2, "1", "9") }, // 9 is on another page
      { id: "3", parents: parents(40, "1", "2") }, // 38 parents beyond the ones asked for
    ];
    expect(splitEdges(nodes)).toEqual({ edges: [{ from: "1", to: "2" }, { from: "1", to: "3" }, { from: "2", to: "3" }], offPage: 39 });
  });
});
