// Client-side pacing under the server's per-identity rate limit (docs/security.md: 20 requests/s,
// bursts of 60, per user, so shared by every tab and GraphiQL of that user). The console asks for
// data per view, not per machine, but a burst of live events or a bind of many machines could still
// queue up more requests than the limit: they wait here instead of failing with 429.

/** Pacer is a token bucket: take() resolves when a request may go. */
export class Pacer {
  private tokens: number;
  private last: number;
  private queue: (() => void)[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly rate: number, private readonly burst: number, private readonly now: () => number = () => Date.now()) {
    this.tokens = burst;
    this.last = now();
  }

  private refill() {
    const t = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((t - this.last) / 1000) * this.rate);
    this.last = t;
  }

  take(): Promise<void> {
    return new Promise((resolve) => { this.queue.push(resolve); this.drain(); });
  }

  private drain() {
    this.refill();
    while (this.queue.length > 0 && this.tokens >= 1) {
      this.tokens--;
      this.queue.shift()!();
    }
    if (this.queue.length > 0 && !this.timer) {
      const wait = Math.ceil(((1 - this.tokens) / this.rate) * 1000);
      this.timer = setTimeout(() => { this.timer = null; this.drain(); }, wait);
    }
  }
}

/** pacer is the console's: below the server's default (15/s, bursts of 40) to leave room for other tabs. */
export const pacer = new Pacer(15, 40);

/** pacedFetch is fetch after the pacer lets the request go. */
export const pacedFetch: typeof fetch = async (input, init) => {
  await pacer.take();
  return fetch(input, init);
};

/**
 * coalesce returns a function that runs fn at most once per ms (trailing): refetches triggered by
 * live events (a bind or a commit changes many node-roles within a second) become one request.
 */
export function coalesce(fn: () => void, ms = 500): () => void {
  let t: ReturnType<typeof setTimeout> | null = null;
  return () => {
    if (t) return;
    t = setTimeout(() => { t = null; fn(); }, ms);
  };
}
