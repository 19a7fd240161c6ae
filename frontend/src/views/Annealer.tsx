// Annealer: the node-role DAG of a deployment or a machine, laid out by dagre in a web worker (this
// module and the worker load only when the view opens), live state colours, retry one / retry all
// failed, queue length, runs in flight and leader.
import { useEffect, useMemo, useState } from "react";
import { useClient, useMutation, useQuery } from "urql";
import { Link, useSearch, useLocation } from "wouter";
import { graphql } from "../gql";
import type { NodeRoleGraphQuery, NodeRoleWhereInput } from "../gql/graphql";
import { ErrorText, FieldErrors, StateBadge } from "../components";
import { useLiveEvents, useSession } from "../ctx";
import { can } from "../lib/auth";
import { nodeRoleStates, stateColor, stateGlyph } from "../lib/state";
import type { LayoutIn, LayoutOut } from "./layout.worker";
import { coalesce } from "../lib/pace";
import { NODE_PAGE, PARENTS, PER_CHOICES, loadAll, machineArgs, pageHref, pagePos, splitEdges } from "../lib/graphpage";

const StatusQuery = graphql(`
  query AnnealerStatus { annealer { states { state count } runsInFlight queueLength leader owner }
    deployments(first: 100) { edges { node { id name status } } } }
`);

// The graph is drawn a page of machines at a time (src/lib/graphpage.ts): the deployment's machines
// by Relay cursor, then their node-roles in the deployment, NODE_PAGE per request, each with its
// first PARENTS parents (a paged walk back to NodeRole: what the server's cost limit allows).
const MachinesQuery = graphql(`
  query AnnealerMachines($where: MachineWhereInput!, $first: Int, $after: Cursor, $last: Int, $before: Cursor) {
    machines(first: $first, after: $after, last: $last, before: $before, where: $where) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { node { id } }
    }
  }
`);

const GraphQuery = graphql(`
  query NodeRoleGraph($where: NodeRoleWhereInput!, $first: Int!, $after: Cursor, $parents: Int!) {
    nodeRoles(first: $first, after: $after, where: $where) {
      totalCount
      pageInfo { hasNextPage endCursor }
      edges { node { id state status cohort role { name } machine { id name } parents(first: $parents) { totalCount edges { node { id } } } } }
    }
  }
`);

type GraphNodeRole = NonNullable<NonNullable<NonNullable<NodeRoleGraphQuery["nodeRoles"]["edges"]>[number]>["node"]>;

const RetryOne = graphql(`mutation RetryOne($id: ID!) { retryNodeRole(id: $id) { nodeRole { id state } errors { field code message } } }`);
const RetryAll = graphql(`mutation RetryAll($d: ID) { retryAllFailed(deploymentID: $d) { retried errors { field code message } } }`);

const NW = 170, NH = 40;
const noNodes: GraphNodeRole[] = [];

export default function Annealer() {
  const search = new URLSearchParams(useSearch());
  const [, nav] = useLocation();
  const [{ data: st }, refetchStatus] = useQuery({ query: StatusQuery });
  const deps = st?.deployments.edges?.flatMap((e) => (e?.node ? [e.node] : [])) ?? [];
  const machine = search.get("machine");
  const deployment = search.get("deployment") ?? (machine ? null : deps.find((d) => d.name === "system")?.id ?? null);
  const pos = pagePos(search);
  const client = useClient();
  // The deployment's machines, a page at a time (not for a single machine's view).
  const [{ data: ms, error: msError }, refetchMachines] = useQuery({
    query: MachinesQuery,
    variables: { where: { hasNodeRolesWith: [{ hasDeploymentWith: [{ id: deployment ?? "" }] }] }, ...machineArgs(pos) },
    pause: !!machine || !deployment,
  });
  const pageMachines = useMemo(() => ms?.machines.edges?.flatMap((e) => (e?.node ? [e.node.id] : [])) ?? [], [ms]);
  // The same page answered again (cache, then network) must not load the graph again: the effect
  // below keys on the filter's text.
  const whereKey = machine ? JSON.stringify({ hasMachineWith: [{ id: machine }] })
    : deployment && ms ? JSON.stringify({ hasDeploymentWith: [{ id: deployment }], machineIDIn: pageMachines }) : "";
  // nodes is the last complete load (kept while a reload runs, so the drawing does not blink);
  // loaded counts the load in progress.
  const [graph, setGraph] = useState<{ key: string; nodes: GraphNodeRole[]; total: number; loaded: number | null; truncated: boolean; error?: string } | null>(null);
  const [reload, setReload] = useState(0);
  const [live, setLive] = useState<Record<string, string>>({});
  const [layout, setLayout] = useState<LayoutOut | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const { session } = useSession();
  const mayAct = can(session, "OPERATOR");
  const [one, retryOne] = useMutation(RetryOne);
  const [all, retryAll] = useMutation(RetryAll);

  // All node-roles of the page's machines, NODE_PAGE per request, one request at a time.
  useEffect(() => {
    if (!whereKey) { setGraph(null); return; }
    const where = JSON.parse(whereKey) as NodeRoleWhereInput;
    let cancelled = false;
    let total = 0;
    const start = (g: typeof graph) => ({ key: whereKey, nodes: g?.key === whereKey ? g.nodes : [], total: g?.key === whereKey ? g.total : 0, loaded: 0, truncated: false });
    setGraph(start);
    loadAll<GraphNodeRole>(async (after) => {
      const r = await client.query(GraphQuery, { where, first: NODE_PAGE, after, parents: PARENTS }, { requestPolicy: "network-only" }).toPromise();
      if (r.error || !r.data) {
        // The code goes into the message: loadAll asks again after TOO_MANY_EXPENSIVE_QUERIES.
        const code = r.error?.graphQLErrors[0]?.extensions?.["code"];
        throw new Error((code ? `${String(code)}: ` : "") + (r.error?.message ?? "no data"));
      }
      total = r.data.nodeRoles.totalCount;
      return { nodes: r.data.nodeRoles.edges?.flatMap((e) => (e?.node ? [e.node] : [])) ?? [],
        hasNextPage: r.data.nodeRoles.pageInfo.hasNextPage, endCursor: r.data.nodeRoles.pageInfo.endCursor ?? null };
    }, {
      cancelled: () => cancelled,
      onPage: (sofar) => { if (!cancelled) setGraph((g) => ({ ...start(g), total, loaded: sofar.length })); },
    }).then(({ nodes, truncated }) => {
      if (!cancelled) setGraph({ key: whereKey, nodes, total, loaded: null, truncated });
    }, (e: unknown) => {
      if (!cancelled) setGraph((g) => ({ ...start(g), total, loaded: null, error: String(e) }));
    });
    return () => { cancelled = true; };
  }, [client, whereKey, reload]);

  // A bind creates many node-roles at once: one reload for the lot.
  const refetchSoon = useMemo(() => coalesce(() => {
    setReload((n) => n + 1);
    refetchMachines({ requestPolicy: "network-only" });
  }), [refetchMachines]);
  useLiveEvents((e) => {
    if (e.objectType !== "noderole") return;
    const s = e.changes?.["state"];
    if (typeof s === "string") setLive((l) => ({ ...l, [e.objectID]: s.toUpperCase() }));
    if (e.kind === "noderole.created" || e.kind === "noderole.deleted") refetchSoon();
    refetchStatusSoon(() => refetchStatus({ requestPolicy: "network-only" }));
  }, [refetchSoon, refetchStatus]);

  const nodes = graph?.nodes ?? noNodes;
  const { edges, offPage } = useMemo(() => splitEdges(nodes), [nodes]);
  useEffect(() => {
    if (nodes.length === 0) { setLayout(null); return; }
    const w = new Worker(new URL("./layout.worker.ts", import.meta.url), { type: "module" });
    const input: LayoutIn = { nodes: nodes.map((n) => ({ id: n.id, w: NW, h: NH })), edges };
    w.onmessage = (ev: MessageEvent<LayoutOut>) => { setLayout(ev.data); w.terminate(); };
    w.postMessage(input);
    return () => w.terminate();
  }, [nodes, edges]);

  const info = ms?.machines.pageInfo;
  const pages = ms ? Math.max(1, Math.ceil(ms.machines.totalCount / pos.per)) : 1;
  const firstShown = (pos.n - 1) * pos.per + 1;
  const stateOf = (n: { id: string; state: string }) => live[n.id] ?? n.state;
  const sel = nodes.find((n) => n.id === selected);
  return (
    <section>
      <h1>Annealer</h1>
      {st && (
        <p data-testid="annealer-status">
          Queue <b>{st.annealer.queueLength}</b> · runs in flight <b>{st.annealer.runsInFlight}</b> · {st.annealer.leader ? `leader (${st.annealer.owner})` : "not the leader"} ·{" "}
          {st.annealer.states.filter((s) => s.count > 0).map((s) => <span key={s.state}><StateBadge state={s.state} /> {s.count} </span>)}
        </p>
      )}
      <label>Deployment{" "}
        <select value={deployment ?? ""} onChange={(e) => nav(`/annealer?deployment=${encodeURIComponent(e.target.value)}`)}>
          {machine && <option value="">(machine {machine})</option>}
          {deps.map((d) => <option key={d.id} value={d.id}>{d.name} — {d.status}</option>)}
        </select>
      </label>{" "}
      <button type="button" disabled={!mayAct} onClick={() => void retryAll({ d: deployment })}>Retry all failed</button>
      {all.data && <span role="status"> retried {all.data.retryAllFailed.retried}</span>}
      <FieldErrors errors={all.data?.retryAllFailed.errors} field="" />
      <ErrorText error={msError} />
      {graph?.error && <p className="error" role="alert">{graph.error}</p>}
      <ul className="legend" aria-label="Node-role states">{nodeRoleStates.map((s) => <li key={s}><span aria-hidden="true" style={{ color: stateColor(s) }}>{stateGlyph(s)}</span> {s}</li>)}</ul>
      {!machine && deployment && ms && (
        <nav aria-label="Machine pages" className="pager" data-testid="pager">
          <Link href={pageHref(deployment, { per: pos.per })} aria-disabled={pos.n === 1 && !pos.after && !pos.before}>First</Link>{" "}
          {info?.hasPreviousPage
            ? <Link href={pageHref(deployment, { per: pos.per, before: info?.startCursor ?? null, n: pos.n - 1 })}>Previous</Link>
            : <span aria-disabled="true">Previous</span>}{" "}
          <span data-testid="page-of">page {pos.n} of {pages}</span>
          {pageMachines.length > 0 && <> · machines {firstShown}–{firstShown + pageMachines.length - 1} of {ms.machines.totalCount}</>}{" "}
          {info?.hasNextPage
            ? <Link href={pageHref(deployment, { per: pos.per, after: info.endCursor ?? null, n: pos.n + 1 })}>Next</Link>
            : <span aria-disabled="true">Next</span>}{" "}
          <label>machines per page{" "}
            <select value={pos.per} onChange={(e) => nav(pageHref(deployment, { per: Number(e.target.value) }))}>
              {PER_CHOICES.map((n) => <option key={n} value={n}>{n}</option>)}
            </select>
          </label>
        </nav>
      )}
      {graph && graph.loaded !== null && <p role="status" data-testid="graph-loading">Loading node-roles… {graph.loaded} of {graph.total || "?"}</p>}
      {graph && graph.loaded === null && nodes.length === 0 && !graph.error && <p>No node-roles here yet. Bind a role in <Link href="/deployments">Deployments</Link>.</p>}
      {graph && graph.loaded === null && (graph.truncated || graph.total > nodes.length) && <p>Showing the first {nodes.length} of {graph.total} node-roles.</p>}
      {graph && nodes.length > 0 && (
        <p data-testid="graph-count">{nodes.length} node-roles{offPage > 0 && <> · {offPage} links to node-roles on other pages not drawn</>}</p>
      )}
      {layout && (
        <div className="dag-wrap">
          <svg width={layout.width} height={layout.height} role="img" aria-label="Node-role graph" className="dag">
            {edges.map(({ from, to }) => {
              const a = layout.nodes[from], b = layout.nodes[to];
              return a && b ? <path key={from + "-" + to} d={`M${a.x} ${a.y + NH / 2}L${b.x} ${b.y - NH / 2}`} stroke="#868e96" fill="none" markerEnd="url(#arrow)" /> : null;
            })}
            <defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto"><path d="M0 0L10 5L0 10z" fill="#868e96" /></marker></defs>
            {nodes.map((n) => {
              const p = layout.nodes[n.id];
              if (!p) return null;
              const s = stateOf(n);
              return (
                <g key={n.id} transform={`translate(${p.x - NW / 2},${p.y - NH / 2})`} className="dag-node" data-noderole={n.id} data-role={n.role.name} data-state={s}
                  tabIndex={0} role="button" aria-label={`${n.role.name} on ${n.machine.name}: ${s}`} onClick={() => setSelected(n.id)} onKeyDown={(e) => { if (e.key === "Enter") setSelected(n.id); }}>
                  <title>{`${n.role.name} on ${n.machine.name}: ${s}${n.status ? " — " + n.status : ""}`}</title>
                  <rect width={NW} height={NH} rx={4} fill="#fff" stroke={stateColor(s)} strokeWidth={selected === n.id ? 4 : 2} />
                  <text x={6} y={16} fontSize={11}>{stateGlyph(s)} {n.role.name}</text>
                  <text x={6} y={31} fontSize={10} fill="#495057">{n.machine.name.split(".")[0]} · {s}</text>
                </g>
              );
            })}
          </svg>
        </div>
      )}
      {sel && (
        <aside aria-label="Selected node-role" className="panel">
          <h2>{sel.role.name} on <Link href={`/machines/${encodeURIComponent(sel.machine.id)}`}>{sel.machine.name}</Link></h2>
          <p><StateBadge state={stateOf(sel)} /> {sel.status}</p>
          <button type="button" disabled={!mayAct || stateOf(sel) !== "ERROR"} onClick={() => void retryOne({ id: sel.id })}>Retry</button>
          <FieldErrors errors={one.data?.retryNodeRole.errors} field="" />
          <FieldErrors errors={one.data?.retryNodeRole.errors} field="id" />
        </aside>
      )}
    </section>
  );
}

let t: ReturnType<typeof setTimeout> | null = null;
function refetchStatusSoon(fn: () => void) { if (!t) t = setTimeout(() => { t = null; fn(); }, 500); }
