// Events: the live feed with filters (kind, site, rack, machine) in the URL, pause/resume. The feed
// comes from the live hub, which resumes by seq after any reconnect or server restart, so the list
// never loses or repeats an event.
import { useEffect, useMemo, useRef, useState } from "react";
import { useClient, useQuery } from "urql";
import { useLocation, useSearch } from "wouter";
import { graphql } from "../gql";
import { VirtualList } from "../components";
import { useLive, useLiveEvents } from "../ctx";
import type { LiveEvent } from "../lib/live";

const History = graphql(`
  query EventHistory($after: Int!, $filter: EventFilter) {
    events(after: $after, first: 200, filter: $filter) { lastSeq hasMore events { id seq time actor kind objectType objectID siteID rackID machineID changes } }
  }
`);
const Sites = graphql(`query EventSites { sites(first: 100) { edges { node { id name } } } }`);

export interface Filter { kind: string; site: string; rack: string; machine: string }

/** matches applies the view's filter to an event (kind is a prefix: "machine." matches all machine kinds). */
export function matches(f: Filter, e: Pick<LiveEvent, "kind" | "siteID" | "rackID" | "machineID">): boolean {
  return (!f.kind || e.kind.startsWith(f.kind)) && (!f.site || e.siteID === f.site) && (!f.rack || e.rackID === f.rack) && (!f.machine || e.machineID === f.machine);
}

const MAX = 5000;

export function Events() {
  const search = new URLSearchParams(useSearch());
  const [, nav] = useLocation();
  const filter: Filter = { kind: search.get("kind") ?? "", site: search.get("site") ?? "", rack: search.get("rack") ?? "", machine: search.get("machine") ?? "" };
  const key = JSON.stringify(filter);
  const hub = useLive();
  const client = useClient();
  const [{ data: sites }] = useQuery({ query: Sites });
  const [list, setList] = useState<LiveEvent[]>([]); // newest first
  const [paused, setPaused] = useState(false);
  const held = useRef<LiveEvent[]>([]);
  const [heldCount, setHeldCount] = useState(0);
  const seen = useRef(new Set<number>());

  // History: the last events before the live stream's start, filtered by the server.
  useEffect(() => {
    seen.current = new Set();
    setList([]);
    held.current = [];
    setHeldCount(0);
    const after = Math.max(0, hub.lastSeq - 200);
    const f = { kinds: [] as string[], siteIDs: filter.site ? [filter.site] : [], rackIDs: filter.rack ? [filter.rack] : [], machineIDs: filter.machine ? [filter.machine] : [] };
    void client.query(History, { after, filter: f }, { requestPolicy: "network-only" }).toPromise().then((r) => {
      const evs = (r.data?.events.events ?? []).filter((e) => matches(filter, e)) as LiveEvent[];
      add(evs);
    });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, client, hub]);

  function add(evs: LiveEvent[]) {
    const fresh = evs.filter((e) => !seen.current.has(e.seq));
    if (fresh.length === 0) return;
    for (const e of fresh) seen.current.add(e.seq);
    setList((l) => [...l, ...fresh].sort((a, b) => b.seq - a.seq).slice(0, MAX));
  }

  const pending = useRef<LiveEvent[]>([]);
  const frame = useRef(0);
  useLiveEvents((e) => {
    if (!matches(filter, e)) return;
    if (paused) { held.current.push(e); setHeldCount(held.current.length); return; }
    pending.current.push(e);
    // One state update per animation frame, however many events arrive.
    if (!frame.current) frame.current = requestAnimationFrame(() => { frame.current = 0; const b = pending.current; pending.current = []; add(b); });
  }, [key, paused]);

  const resume = () => { add(held.current); held.current = []; setHeldCount(0); setPaused(false); };
  const set = (k: keyof Filter, v: string) => {
    const p = new URLSearchParams(search);
    if (v) p.set(k, v); else p.delete(k);
    nav(`/events${p.toString() ? "?" + p.toString() : ""}`);
  };
  const siteList = useMemo(() => sites?.sites.edges?.flatMap((e) => (e?.node ? [e.node] : [])) ?? [], [sites]);
  return (
    <section>
      <h1>Events</h1>
      <form className="filters" aria-label="Filters" onSubmit={(e) => e.preventDefault()}>
        <label>Kind <input name="kind" value={filter.kind} placeholder="machine. / noderole.state" onChange={(e) => set("kind", e.target.value)} /></label>
        <label>Site <select name="site" value={filter.site} onChange={(e) => set("site", e.target.value)}>
          <option value="">all</option>{siteList.map((s) => <option key={s.id} value={s.id}>{s.name}</option>)}</select></label>
        <label>Rack id <input name="rack" value={filter.rack} onChange={(e) => set("rack", e.target.value)} /></label>
        <label>Machine id <input name="machine" value={filter.machine} onChange={(e) => set("machine", e.target.value)} /></label>
        {paused
          ? <button type="button" onClick={resume}>Resume ({heldCount} held)</button>
          : <button type="button" onClick={() => setPaused(true)}>Pause</button>}
        <span role="status" data-testid="event-count">{list.length} events{paused ? " · paused" : ""}</span>
      </form>
      <VirtualList label="Event feed" items={list} rowHeight={26} height={560} render={(e) => (
        <div className="event" data-seq={e.seq}>
          <code>#{e.seq}</code> <b>{e.kind}</b> <span>{e.objectType} {e.objectID}</span> <small>{e.actor} · {e.time}</small>{" "}
          <small className="changes">{e.changes ? JSON.stringify(e.changes).slice(0, 160) : ""}</small>
        </div>
      )} />
    </section>
  );
}
