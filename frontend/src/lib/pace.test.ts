import { describe, expect, it, vi, afterEach } from "vitest";
import { Pacer, coalesce } from "./pace";

afterEach(() => { vi.useRealTimers(); });

describe("Pacer", () => {
  it("lets a burst through at once, then paces at the rate", async () => {
    vi.useFakeTimers();
    const p = new Pacer(10, 5, () => Date.now());
    let done = 0;
    for (let i = 0; i < 25; i++) void p.take().then(() => { done++; });
    await vi.advanceTimersByTimeAsync(0);
    expect(done).toBe(5);
    await vi.advanceTimersByTimeAsync(1000);
    expect(done).toBe(15); // 10 more in one second
    await vi.advanceTimersByTimeAsync(1000);
    expect(done).toBe(25);
  });
  it("stays under the server's default limit (20/s, bursts of 60) over ten seconds", async () => {
    vi.useFakeTimers();
    const p = new Pacer(15, 40, () => Date.now());
    const times: number[] = [];
    for (let i = 0; i < 400; i++) void p.take().then(() => { times.push(Date.now()); });
    await vi.advanceTimersByTimeAsync(10_000);
    // A server bucket of 60 refilled at 20/s never runs dry on these times.
    let bucket = 60, last = times[0] ?? 0;
    for (const t of times) {
      bucket = Math.min(60, bucket + ((t - last) / 1000) * 20);
      last = t;
      bucket--;
      expect(bucket).toBeGreaterThanOrEqual(0);
    }
    expect(times.length).toBeGreaterThanOrEqual(40 + 15 * 9);
  });
});

describe("coalesce", () => {
  it("turns a burst of calls into one", async () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    const c = coalesce(fn, 500);
    for (let i = 0; i < 100; i++) c();
    await vi.advanceTimersByTimeAsync(600);
    expect(fn).toHaveBeenCalledTimes(1);
    c();
    await vi.advanceTimersByTimeAsync(600);
    expect(fn).toHaveBeenCalledTimes(2);
  });
});
