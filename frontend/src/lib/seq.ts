// Finding the newest event seq without reading the log: the API pages events forward only, so the
// console probes `events(after: k, first: 1)` at several k per round trip and narrows the interval.

/** probe(afters) answers, for each after, whether an event with seq > after exists. */
export type Probe = (afters: number[]) => Promise<boolean[]>;

/** latestSeq returns the highest seq in the log (0 when empty) in O(log16 seq) round trips. */
export async function latestSeq(probe: Probe, fanout = 16): Promise<number> {
  // Grow: find hi with no event after it.
  let lo = 0; // an event with seq > lo exists, or lo = 0
  let hi = 1024;
  for (;;) {
    const afters = [0, hi, hi * 16, hi * 256];
    const r = await probe(afters);
    if (!r[0]) return 0;
    const idx = r.findIndex((v) => !v);
    if (idx > 0) {
      lo = afters[idx - 1]!;
      hi = afters[idx]!;
      break;
    }
    lo = afters[3]!;
    hi = afters[3]! * 16;
    if (hi > Number.MAX_SAFE_INTEGER / 4096) throw new Error("latestSeq: seq beyond range");
  }
  // Invariant: exists(> lo), !exists(> hi). Answer = smallest a with !exists(> a).
  while (hi - lo > 1) {
    const step = Math.max(1, Math.floor((hi - lo) / fanout));
    const afters: number[] = [];
    for (let a = lo + step; a < hi; a += step) afters.push(a);
    const r = await probe(afters);
    let nlo = lo, nhi = hi;
    for (let i = 0; i < afters.length; i++) {
      if (r[i]) nlo = afters[i]!;
      else { nhi = afters[i]!; break; }
    }
    lo = nlo; hi = nhi;
  }
  return hi;
}

/** Dedup keeps a feed free of repeats across reconnects: it accepts each seq once, in order. */
export class SeqGate {
  last: number;
  constructor(after: number) { this.last = after; }
  accept(seq: number): boolean {
    if (seq <= this.last) return false;
    this.last = seq;
    return true;
  }
}
