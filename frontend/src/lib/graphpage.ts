// Paging of the annealer's node-role graph. A deployment of 10,000 machines has tens of thousands
// of node-roles: one request cannot ask for them (the server's cost limit), and one drawing could
// not lay them out. The view therefore shows a page of machines (Relay cursor on `machines`, page
// size in the URL) with all their node-roles in the deployment, fetched in as many node-role
// pages as that takes.

/**
 * NODE_PAGE is the node-roles asked per request and PARENTS the parent links asked per node-role.
 * The server's cost limit (graph/cost.go) prices an unpaged walk back to NodeRole (`children`) as
 * a full page of 1,000, and every `__typename` the normalised cache adds as an object: with
 * `children` one node-role cost 2,009 and only 149 fitted under the 300,000 limit (the view drew the
 * first 128). `parents(first: PARENTS)` is priced by its page instead: 73 per node-role with 16
 * parents (measured against the server), so 250 node-roles cost 18,250 — under the 20,000 above
 * which an operation counts as expensive and an identity may run only two at once.
 */
export const NODE_PAGE = 250;
export const PARENTS = 16;

/** PER_CHOICES are the machine page sizes the view offers; DEFAULT_PER is the first page's. */
export const PER_CHOICES = [10, 25, 50, 100] as const;
export const DEFAULT_PER = 50;

/** MAX_NODE_PAGES bounds the node-role requests for one page of machines (10,000 node-roles). */
export const MAX_NODE_PAGES = 40;

/** Where the view is in the deployment's machines: cursor, direction and page number. */
export interface PagePos {
  per: number;
  after: string | null;
  before: string | null;
  /** 1-based page number, for display (cursors are opaque). */
  n: number;
}

/** pagePos reads the page position from the URL's query, clamping what a hand-edited URL breaks. */
export function pagePos(search: URLSearchParams): PagePos {
  const per = Number(search.get("per"));
  const n = Number(search.get("page"));
  const after = search.get("after") || null;
  return {
    per: (PER_CHOICES as readonly number[]).includes(per) ? per : DEFAULT_PER,
    after,
    // after wins if both are given: a page is reached from one side.
    before: after ? null : search.get("before") || null,
    n: Number.isInteger(n) && n >= 1 ? n : 1,
  };
}

/** machineArgs are the machines query's Relay arguments for a position. */
export function machineArgs(p: PagePos): { first?: number; after?: string; last?: number; before?: string } {
  if (p.before) return { last: p.per, before: p.before };
  if (p.after) return { first: p.per, after: p.after };
  return { first: p.per };
}

/** pageHref is the annealer URL of a deployment page (the first page without cursor). */
export function pageHref(deployment: string, p: Partial<PagePos> = {}): string {
  const q = new URLSearchParams({ deployment });
  if (p.per && p.per !== DEFAULT_PER) q.set("per", String(p.per));
  if (p.after) q.set("after", p.after);
  else if (p.before) q.set("before", p.before);
  if (p.n && p.n > 1 && (p.after || p.before)) q.set("page", String(p.n));
  return "/annealer?" + q.toString();
}

/** One page of a Relay connection, as loadAll needs it. */
export interface Page<T> {
  nodes: T[];
  hasNextPage: boolean;
  endCursor: string | null;
}

/** Thrown by a page fetcher when the server refused because this identity runs enough big queries. */
export const TOO_MANY_EXPENSIVE = "TOO_MANY_EXPENSIVE_QUERIES";

/**
 * loadAll fetches a connection page after page (never two at once, so one view never holds more
 * than one of the server's per-identity slots for big operations) until the last one, at most
 * maxPages, calling onPage with everything loaded so far. A page refused with TOO_MANY_EXPENSIVE
 * (other big queries of the same user) is asked again after a pause, a few times. It stops
 * when cancelled() turns true; truncated says maxPages cut it short.
 */
export async function loadAll<T>(
  fetchPage: (after: string | null) => Promise<Page<T>>,
  opts: { maxPages?: number; onPage?: (sofar: T[]) => void; cancelled?: () => boolean; pause?: (ms: number) => Promise<void> } = {},
): Promise<{ nodes: T[]; truncated: boolean }> {
  const maxPages = opts.maxPages ?? MAX_NODE_PAGES;
  const pause = opts.pause ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const nodes: T[] = [];
  const seen = new Set<string>();
  let after: string | null = null;
  for (let i = 0; i < maxPages; i++) {
    let page: Page<T> | null = null;
    for (let attempt = 0; page === null; attempt++) {
      try {
        page = await fetchPage(after);
      } catch (e) {
        if (attempt >= 4 || !String(e).includes(TOO_MANY_EXPENSIVE)) throw e;
        await pause(250 * 2 ** attempt);
      }
      if (opts.cancelled?.()) return { nodes, truncated: false };
    }
    nodes.push(...page.nodes);
    opts.onPage?.(nodes);
    // A cursor seen before would loop for ever (a server bug, but not the browser's to hang on).
    if (!page.hasNextPage || !page.endCursor || seen.has(page.endCursor)) return { nodes, truncated: false };
    seen.add(page.endCursor);
    after = page.endCursor;
  }
  return { nodes, truncated: true };
}

/** A node of the graph, as far as links go: its parents (at most PARENTS of them) and how many it has. */
export interface GraphNode {
  id: string;
  parents: { totalCount: number; edges?: ({ node?: { id: string } | null } | null)[] | null };
}

/**
 * splitEdges sorts the page's parent → child links into those it can draw (both ends on the page)
 * and a count of the others: parents on other pages, and parents beyond the PARENTS asked for.
 */
export function splitEdges(nodes: GraphNode[]): { edges: { from: string; to: string }[]; offPage: number } {
  const here = new Set(nodes.map((n) => n.id));
  const edges: { from: string; to: string }[] = [];
  let offPage = 0;
  for (const n of nodes) {
    let drawn = 0;
    for (const e of n.parents.edges ?? []) {
      const p = e?.node?.id;
      if (p && here.has(p)) { edges.push({ from: p, to: n.id }); drawn++; }
    }
    offPage += Math.max(0, n.parents.totalCount - drawn);
  }
  return { edges, offPage };
}
