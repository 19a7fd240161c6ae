import { createContext, useContext, useEffect, useState } from "react";
import type { Client } from "@urql/core";
import type { Session } from "./lib/auth";
import type { LinkState, LiveEvent, LiveHub } from "./lib/live";

export const SessionCtx = createContext<{ session: Session; signOut: () => void } | null>(null);
export const LiveCtx = createContext<LiveHub | null>(null);
/** PlainCtx holds the cache-less client for big read-only pages. */
export const PlainCtx = createContext<Client | null>(null);

export function useSession() {
  const s = useContext(SessionCtx);
  if (!s) throw new Error("no session");
  return s;
}

export function useLive(): LiveHub {
  const h = useContext(LiveCtx);
  if (!h) throw new Error("no live hub");
  return h;
}

/** useLiveEvents calls fn for each live event (fn may change between renders). */
export function useLiveEvents(fn: (e: LiveEvent) => void, deps: unknown[]) {
  const hub = useLive();
  // eslint-disable-next-line react-hooks/exhaustive-deps
  useEffect(() => hub.subscribe(fn), [hub, ...deps]);
}

export function useLinkState(): LinkState {
  const hub = useLive();
  const [s, set] = useState(hub.state);
  useEffect(() => hub.onState(set), [hub]);
  return s;
}
