// Rack elevation (front and rear) and a site's rack row. Live: machine events for the rack patch
// the drawn machines in place (state, alive), batched per animation frame so a burst of events
// costs one repaint per frame.
import { useEffect, useMemo, useRef, useState } from "react";
import { useQuery } from "urql";
import { Link, useLocation } from "wouter";
import { graphql } from "../gql";
import { ErrorText } from "../components";
import { RackSVG, svgSource, type RackMachine } from "./RackSVG";
import { useLiveEvents } from "../ctx";
import type { LiveEvent } from "../lib/live";
import { machineStates } from "../lib/state";
import { coalesce } from "../lib/pace";

const RackQuery = graphql(`
  query Rack($id: ID!) {
    node(id: $id) {
      __typename
      ... on Rack {
        id name height row position
        site { id name }
        machines(first: 100, orderBy: {field: U_POSITION}) {
          totalCount
          edges { node { id name uPosition uHeight state alive } }
        }
      }
    }
  }
`);

const RowQuery = graphql(`
  query RackRow($site: ID!) {
    node(id: $site) {
      __typename
      ... on Site {
        id name
        racks(first: 100, orderBy: {field: NAME}) {
          totalCount
          pageInfo { hasNextPage endCursor }
          edges { cursor node {
            id name height
            machines(first: 60) { edges { node { id name uPosition uHeight state alive } } }
          } }
        }
      }
    }
  }
`);

type Patch = Partial<Pick<RackMachine, "state" | "alive">>;

/** patchFromEvent extracts what an event changes on a drawn machine (null when nothing). */
export function patchFromEvent(e: Pick<LiveEvent, "objectType" | "changes">): Patch | null {
  if (e.objectType !== "machine" || !e.changes) return null;
  const p: Patch = {};
  const st = e.changes["state"];
  if (typeof st === "string" && (machineStates as readonly string[]).includes(st.toUpperCase())) p.state = st.toUpperCase();
  if (typeof e.changes["alive"] === "boolean") p.alive = e.changes["alive"] as boolean;
  return Object.keys(p).length ? p : null;
}

/** useMachinePatches keeps live patches for machines in scope, applied once per frame. */
function useMachinePatches(inScope: (e: LiveEvent) => boolean, onOther: () => void): Record<string, Patch> {
  const [patches, setPatches] = useState<Record<string, Patch>>({});
  const pending = useRef<Record<string, Patch>>({});
  const frame = useRef(0);
  useLiveEvents((e) => {
    if (!inScope(e)) return;
    const p = patchFromEvent(e);
    if (!p) { if (e.kind === "machine.created" || e.kind === "machine.deleted" || "rack_id" in (e.changes ?? {}) || "u_position" in (e.changes ?? {})) onOther(); return; }
    pending.current[e.objectID] = { ...pending.current[e.objectID], ...p };
    if (!frame.current) {
      frame.current = requestAnimationFrame(() => {
        frame.current = 0;
        const batch = pending.current;
        pending.current = {};
        setPatches((old) => {
          const n = { ...old };
          for (const [id, p] of Object.entries(batch)) n[id] = { ...n[id], ...p };
          return n;
        });
      });
    }
  }, [inScope, onOther]);
  useEffect(() => () => cancelAnimationFrame(frame.current), []);
  return patches;
}

function download(name: string, el: SVGSVGElement | null | undefined) {
  if (!el) return;
  const url = URL.createObjectURL(new Blob([svgSource(el)], { type: "image/svg+xml" }));
  const a = document.createElement("a");
  a.href = url; a.download = name; a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

export function RackView({ id }: { id: string }) {
  const [{ data, error, fetching }, refetch] = useQuery({ query: RackQuery, variables: { id } });
  const [, nav] = useLocation();
  const front = useRef<HTMLDivElement>(null);
  const rack = data?.node?.__typename === "Rack" ? data.node : null;
  const rackID = rack?.id;
  const inScope = useMemo(() => (e: LiveEvent) => e.rackID === rackID || e.objectID === rackID, [rackID]);
  const onOther = useMemo(() => coalesce(() => refetch({ requestPolicy: "network-only" })), [refetch]);
  const patches = useMachinePatches(inScope, onOther);
  if (!data && fetching) return <p>Loading…</p>;
  if (!rack) return <section><h1>Rack not found</h1><p>No rack has id <code>{id}</code>. <Link href="/">Data centre</Link></p><ErrorText error={error} /></section>;
  const machines: RackMachine[] = (rack.machines.edges ?? []).flatMap((e) => (e?.node ? [{ ...e.node, ...patches[e.node.id] }] : []));
  return (
    <section className="rack-page">
      <h1>Rack {rack.name} <small>{rack.site.name} · row {rack.row ?? "—"} · {rack.height}U · {rack.machines.totalCount} machines</small></h1>
      <p className="no-print">
        <Link href={`/sites/${encodeURIComponent(rack.site.id)}/row`}>Row view</Link>{" · "}
        <button type="button" onClick={() => window.print()}>Print</button>{" "}
        <button type="button" onClick={() => download(`${rack.name}-front.svg`, front.current?.querySelector("svg"))}>Download SVG</button>
      </p>
      <div className="faces">
        <figure ref={front}><figcaption>Front</figcaption>
          <RackSVG id={rack.id} height={rack.height} machines={machines} face="front" onOpen={(m) => nav(`/machines/${encodeURIComponent(m)}`)} /></figure>
        <figure><figcaption>Rear (front-mounted machines shaded)</figcaption>
          <RackSVG id={rack.id} height={rack.height} machines={machines} face="rear" /></figure>
        <Legend />
      </div>
    </section>
  );
}

function Legend() {
  return (
    <ul className="legend" aria-label="Legend">
      {machineStates.map((s) => <li key={s} data-state={s}><span className="swatch" data-s={s} /> {s}</li>)}
      <li>dashed outline: not answering</li>
    </ul>
  );
}

export function RackRow({ siteID }: { siteID: string }) {
  const [{ data, error, fetching }, refetch] = useQuery({ query: RowQuery, variables: { site: siteID } });
  const [, nav] = useLocation();
  const site = data?.node?.__typename === "Site" ? data.node : null;
  const sid = site?.id;
  const inScope = useMemo(() => (e: LiveEvent) => e.siteID === sid, [sid]);
  const onOther = useMemo(() => coalesce(() => refetch({ requestPolicy: "network-only" })), [refetch]);
  const patches = useMachinePatches(inScope, onOther);
  if (error) return <ErrorText error={error} />;
  if (!data && fetching) return <p>Loading…</p>;
  if (!site) return <section><h1>Site not found</h1></section>;
  return (
    <section>
      <h1>Site {site.name}: rack row <small>{site.racks.totalCount} racks{site.racks.totalCount > 100 ? " (first 100)" : ""}</small></h1>
      <div className="row-view" data-testid="rack-row">
        {site.racks.edges?.map((re) => {
          const r = re?.node;
          if (!r) return null;
          const ms = (r.machines.edges ?? []).flatMap((e) => (e?.node ? [{ ...e.node, ...patches[e.node.id] }] : []));
          return (
            <figure key={r.id} className="row-rack">
              <figcaption><Link href={`/racks/${encodeURIComponent(r.id)}`}>{r.name}</Link></figcaption>
              <RackSVG id={r.id} height={r.height} machines={ms} face="front" compact onOpen={(m) => nav(`/machines/${encodeURIComponent(m)}`)} />
            </figure>
          );
        })}
      </div>
    </section>
  );
}
