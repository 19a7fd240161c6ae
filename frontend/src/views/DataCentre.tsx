// Data centre: sites with rack counts, machines by state, U free, a heat-map of racks by state and
// a search box. Only counts are fetched (entgql totalCount per state), never the fleet itself.
import { useEffect, useState } from "react";
import { useQuery } from "urql";
import { Link } from "wouter";
import { graphql } from "../gql";
import { ErrorText, StateBadge } from "../components";
import { stateColor, machineStates } from "../lib/state";
import { useLiveEvents } from "../ctx";

const DataCentreQuery = graphql(`
  query DataCentre {
    sites(first: 50) { totalCount edges { node { id name description location } } }
    NEW: machines(where: {state: NEW}) { totalCount }
    DISCOVERED: machines(where: {state: DISCOVERED}) { totalCount }
    READY: machines(where: {state: READY}) { totalCount }
    BUSY: machines(where: {state: BUSY}) { totalCount }
    ERROR: machines(where: {state: ERROR}) { totalCount }
  }
`);

// A site's racks, 100 per page by cursor; "More racks" adds a page (each page is its own query,
// so live refetches touch only the page they concern).
const SiteRacksQuery = graphql(`
  query SiteRacks($site: ID!, $after: Cursor) {
    node(id: $site) {
      __typename
      ... on Site {
        id
        racks(first: 100, after: $after, orderBy: {field: NAME}) {
          totalCount
          pageInfo { hasNextPage endCursor }
          edges { cursor node {
            id name height
            all: machines { totalCount }
            new: machines(where: {state: NEW}) { totalCount }
            discovered: machines(where: {state: DISCOVERED}) { totalCount }
            ready: machines(where: {state: READY}) { totalCount }
            busy: machines(where: {state: BUSY}) { totalCount }
            error: machines(where: {state: ERROR}) { totalCount }
            u1: machines(where: {uHeight: 1}) { totalCount }
            u2: machines(where: {uHeight: 2}) { totalCount }
            u3: machines(where: {uHeight: 3}) { totalCount }
            u4: machines(where: {uHeight: 4}) { totalCount }
          } }
        }
      }
    }
  }
`);

const SearchQuery = graphql(`
  query Search($q: String!, $mac: String!) {
    machines(first: 10, where: {or: [
      {nameContainsFold: $q}, {serialContainsFold: $q},
      {hasNicsWith: [{mac: $mac}]}, {hasAllocationsWith: [{address: $q}]}
    ]}) {
      edges { node { id name serial state rack { name } } }
    }
  }
`);

/** normaliseMAC turns 52-54-00-A1-01-01 / 5254.00a1.0101 / 525400a10101 into 52:54:00:a1:01:01. */
export function normaliseMAC(s: string): string {
  const hex = s.toLowerCase().replace(/[^0-9a-f]/g, "");
  if (hex.length !== 12 || /[^0-9a-f:.\-\s]/i.test(s.trim())) return s.trim().toLowerCase();
  return hex.match(/../g)!.join(":");
}

function Search() {
  const [q, setQ] = useState("");
  const term = q.trim();
  const [{ data, fetching, error }] = useQuery({ query: SearchQuery, variables: { q: term, mac: normaliseMAC(term) }, pause: term.length < 2 });
  return (
    <section aria-label="Search">
      <label>Find a machine (name, serial, MAC or IP){" "}
        <input type="search" name="q" value={q} onChange={(e) => setQ(e.target.value)} placeholder="web01, AMS1…, 52:54:…, 10.10.0.11" />
      </label>
      {fetching && <span> searching…</span>}
      <ErrorText error={error} />
      {term.length >= 2 && data && (
        <ul className="results" aria-label="Search results">
          {data.machines.edges?.map((e) => e?.node && (
            <li key={e.node.id}><Link href={`/machines/${encodeURIComponent(e.node.id)}`}>{e.node.name}</Link> {e.node.serial} {e.node.rack?.name} <StateBadge state={e.node.state} /></li>
          ))}
          {data.machines.edges?.length === 0 && <li>No machine matches.</li>}
        </ul>
      )}
    </section>
  );
}

export function DataCentre() {
  const [{ data, error, fetching }, refetch] = useQuery({ query: DataCentreQuery });
  // Counts follow machine state changes: refetch (debounced) when one arrives.
  useLiveEvents((e) => {
    if (e.objectType === "machine") debounce(() => refetch({ requestPolicy: "network-only" }));
  }, [refetch]);
  return (
    <section>
      <h1>Data centre</h1>
      <Search />
      <ErrorText error={error} />
      {!data && fetching && <p>Loading…</p>}
      {data && (
        <>
          <h2>Machines by state</h2>
          <ul className="counts" aria-label="Machines by state">
            {machineStates.map((s) => <li key={s}><StateBadge state={s} /> <b data-testid={`count-${s}`}>{data[s].totalCount}</b></li>)}
          </ul>
          {data.sites.edges?.map((se) => se?.node && <SiteCard key={se.node.id} site={se.node} />)}
        </>
      )}
    </section>
  );
}

type SiteInfo = { id: string; name: string; description?: string | null; location?: string | null };

function SiteCard({ site }: { site: SiteInfo }) {
  const [pages, setPages] = useState<(string | null)[]>([null]);
  const [sums, setSums] = useState<Record<string, { height: number; used: number; racks: number; total: number; next: string | null }>>({});
  const totals = Object.values(sums);
  const last = sums[String(pages[pages.length - 1])];
  const height = totals.reduce((n, p) => n + p.height, 0), used = totals.reduce((n, p) => n + p.used, 0);
  const shown = totals.reduce((n, p) => n + p.racks, 0);
  const total = totals[0]?.total ?? 0;
  return (
    <article className="site" aria-label={`Site ${site.name}`}>
      <h2>{site.name} <small>{site.description} {site.location}</small></h2>
      <p>{total} racks · {height - used} U free of {height}{total > shown ? ` (in the ${shown} racks shown)` : ""} ·{" "}
        <Link href={`/sites/${encodeURIComponent(site.id)}/row`}>rack row view</Link></p>
      <div className="heatmap" role="list" aria-label={`Racks of ${site.name}`}>
        {pages.map((after) => <RackPage key={String(after)} site={site} after={after}
          onSums={(x) => setSums((o) => ({ ...o, [String(after)]: x }))} />)}
      </div>
      {last?.next && <button type="button" onClick={() => setPages((p) => [...p, last.next])}>More racks</button>}
    </article>
  );
}

function RackPage({ site, after, onSums }: { site: SiteInfo; after: string | null; onSums: (x: { height: number; used: number; racks: number; total: number; next: string | null }) => void }) {
  const [{ data, error }, refetch] = useQuery({ query: SiteRacksQuery, variables: { site: site.id, after } });
  useLiveEvents((e) => {
    if (e.objectType === "machine" && e.siteID === site.id) debounceSite(site.id + String(after), () => refetch({ requestPolicy: "network-only" }));
  }, [refetch, site.id, after]);
  const racks = data?.node?.__typename === "Site" ? data.node.racks : null;
  useEffect(() => {
    if (!racks) return;
    let height = 0, used = 0;
    for (const re of racks.edges ?? []) {
      const r = re?.node;
      if (!r) continue;
      height += r.height;
      used += r.u1.totalCount + 2 * r.u2.totalCount + 3 * r.u3.totalCount + 4 * r.u4.totalCount;
    }
    onSums({ height, used, racks: racks.edges?.length ?? 0, total: racks.totalCount, next: racks.pageInfo.hasNextPage ? racks.pageInfo.endCursor ?? null : null });
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [racks]);
  if (error) return <ErrorText error={error} />;
  return (
    <>
      {racks?.edges?.map((re) => {
        const r = re?.node;
        if (!r) return null;
        const worst = r.error.totalCount ? "ERROR" : r.busy.totalCount ? "BUSY" : r.new.totalCount || r.discovered.totalCount ? "DISCOVERED" : r.ready.totalCount ? "READY" : "NEW";
        const share = r.all.totalCount ? (worst === "READY" ? r.ready.totalCount : worst === "ERROR" ? r.error.totalCount : worst === "BUSY" ? r.busy.totalCount : r.new.totalCount + r.discovered.totalCount) / r.all.totalCount : 0;
        const title = `${r.name}: ${r.all.totalCount} machines — ready ${r.ready.totalCount}, busy ${r.busy.totalCount}, error ${r.error.totalCount}, new ${r.new.totalCount}, discovered ${r.discovered.totalCount}`;
        return (
          <Link key={r.id} href={`/racks/${encodeURIComponent(r.id)}`} role="listitem" className="cell" title={title} aria-label={title}
            style={{ background: stateColor(worst), opacity: 0.35 + 0.65 * share }}>
            {r.name}<br /><small>{r.all.totalCount}{r.error.totalCount ? ` ✖${r.error.totalCount}` : ""}</small>
          </Link>
        );
      })}
    </>
  );
}

const siteTimers = new Map<string, ReturnType<typeof setTimeout>>();
function debounceSite(id: string, fn: () => void) {
  if (siteTimers.has(id)) return;
  siteTimers.set(id, setTimeout(() => { siteTimers.delete(id); fn(); }, 1000));
}

let timer: ReturnType<typeof setTimeout> | null = null;
function debounce(fn: () => void) {
  if (timer) return;
  timer = setTimeout(() => { timer = null; fn(); }, 1000);
}
