// The live connection: one graphql-ws client for the whole console. It carries the `events`
// subscription (resumed from the last seq seen after any reconnect, so nothing is lost or doubled)
// and reports its state for the "reconnecting" banner. Views subscribe to the in-memory hub.
import { createClient, type Client as WSClient } from "graphql-ws";
import { SeqGate } from "./seq";

export interface LiveEvent {
  seq: number;
  time: string;
  actor: string;
  kind: string;
  objectType: string;
  objectID: string;
  siteID?: string | null;
  rackID?: string | null;
  machineID?: string | null;
  changes?: Record<string, unknown> | null;
}

export type LinkState = "connecting" | "connected" | "reconnecting";

const EVENTS = `subscription Live($after: Int!) { events(after: $after) {
  seq time actor kind objectType objectID siteID rackID machineID changes } }`;

type Listener = (e: LiveEvent) => void;

export class LiveHub {
  readonly ws: WSClient;
  private gate: SeqGate | null = null;
  private listeners = new Set<Listener>();
  private stateListeners = new Set<(s: LinkState) => void>();
  state: LinkState = "connecting";
  private payload = { query: EVENTS, variables: { after: 0 } };
  private stop: (() => void) | null = null;

  /**
   * onAuthLost is called when the server closes the socket as unauthenticated (4401) or forbidden
   * (4403): a restart keeps sessions, so this means the session itself ended.
   */
  constructor(url: string, connectionParams: () => Record<string, unknown>, webSocketImpl?: unknown, onAuthLost?: () => void) {
    this.ws = createClient({
      url,
      connectionParams,
      lazy: false,
      keepAlive: 10_000,
      retryAttempts: Number.POSITIVE_INFINITY,
      shouldRetry: () => true,
      retryWait: async (n) => { await new Promise((r) => setTimeout(r, Math.min(250 * 2 ** n, 3000))); },
      ...(webSocketImpl ? { webSocketImpl } : {}),
      on: {
        connected: () => this.setState("connected"),
        closed: (e) => {
          const code = (e as { code?: number } | undefined)?.code;
          if ((code === 4401 || code === 4403) && onAuthLost) onAuthLost();
          if (this.state !== "connecting") this.setState("reconnecting");
        },
      },
    });
  }

  private setState(s: LinkState) {
    this.state = s;
    for (const l of this.stateListeners) l(s);
  }

  onState(l: (s: LinkState) => void): () => void {
    this.stateListeners.add(l);
    return () => this.stateListeners.delete(l);
  }

  get lastSeq(): number { return this.gate?.last ?? 0; }

  /** start streams events after seq `after`; call once, when the newest seq is known. */
  start(after: number) {
    if (this.gate) return;
    this.gate = new SeqGate(after);
    this.payload.variables.after = after;
    this.run();
  }

  private disposed = false;
  private failures = 0;

  private run() {
    if (this.disposed) return;
    // graphql-ws re-sends this same payload object on every reconnect: keeping `after` at the last
    // seq seen makes the server replay exactly what was missed. The gate drops anything older.
    this.stop = this.ws.subscribe<{ events: LiveEvent }>(this.payload, {
      next: (r) => {
        this.failures = 0;
        const e = r.data?.events;
        if (!e || !this.gate!.accept(e.seq)) return;
        this.payload.variables.after = e.seq;
        for (const l of this.listeners) l(e);
      },
      // A server that ends the stream (shutdown) or refuses it: subscribe again from the last seq.
      error: () => { this.setState("reconnecting"); this.again(); },
      complete: () => { this.again(); },
    });
  }

  private again() {
    if (this.disposed) return;
    const wait = Math.min(250 * 2 ** this.failures++, 3000);
    setTimeout(() => this.run(), wait);
  }

  subscribe(l: Listener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** drop closes the socket as a network failure would (used by tests and the debug menu). */
  drop() { this.ws.terminate(); }

  // The client's dispose waits for a connection attempt in progress and rejects with its close
  // event when that attempt failed (as it does right after sign-out): nothing is left to report.
  dispose() { this.disposed = true; this.stop?.(); void Promise.resolve(this.ws.dispose()).catch(() => {}); }
}
