// Annealer: the node-role DAG of a deployment or a machine, laid out by dagre in a web worker (this
// module and the worker load only when the view opens), live state colours, retry one / retry all
// failed, queue length, runs in flight and leader.
import { useEffect, useMemo, useState } from "react";
import { useMutation, useQuery } from "urql";
import { Link, useSearch, useLocation } from "wouter";
import { graphql } from "../gql";
import { ErrorText, FieldErrors, StateBadge } from "../components";
import { useLiveEvents, useSession } from "../ctx";
import { can } from "../lib/auth";
import { nodeRoleStates, stateColor, stateGlyph } from "../lib/state";
import type { LayoutIn, LayoutOut } from "./layout.worker";
import { coalesce } from "../lib/pace";

const StatusQuery = graphql(`
  query AnnealerStatus { annealer { states { state count } runsInFlight queueLength leader owner }
    deployments(first: 100) { edges { node { id name status } } } }
`);

// The server prices `children` (a walk back to NodeRole) as a full page per node-role, and refuses
// operations above 300,000 (graph/cost.go): 128 node-roles with their children stay under it.
const GraphQuery = graphql(`
  query NodeRoleGraph($where: NodeRoleWhereInput!) {
    nodeRoles(first: 128, where: $where) {
      totalCount
      edges { node { id state status cohort role { name } machine { id name } children { id } } }
    }
  }
`);

const RetryOne = graphql(`mutation RetryOne($id: ID!) { retryNodeRole(id: $id) { nodeRole { id state } errors { field code message } } }`);
const RetryAll = graphql(`mutation RetryAll($d: ID) { retryAllFailed(deploymentID: $d) { retried errors { field code message } } }`);

const NW = 170, NH = 40;

export default function Annealer() {
  const search = new URLSearchParams(useSearch());
  const [, nav] = useLocation();
  const [{ data: st }, refetchStatus] = useQuery({ query: StatusQuery });
  const deps = st?.deployments.edges?.flatMap((e) => (e?.node ? [e.node] : [])) ?? [];
  const machine = search.get("machine");
  const deployment = search.get("deployment") ?? (machine ? null : deps.find((d) => d.name === "system")?.id ?? null);
  const where = machine ? { hasMachineWith: [{ id: machine }] } : deployment ? { hasDeploymentWith: [{ id: deployment }] } : null;
  const [{ data, error }, refetch] = useQuery({ query: GraphQuery, variables: { where: where ?? {} }, pause: !where });
  const [live, setLive] = useState<Record<string, string>>({});
  const [layout, setLayout] = useState<LayoutOut | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const { session } = useSession();
  const mayAct = can(session, "OPERATOR");
  const [one, retryOne] = useMutation(RetryOne);
  const [all, retryAll] = useMutation(RetryAll);

  // A bind creates many node-roles at once: one refetch for the lot.
  const refetchSoon = useMemo(() => coalesce(() => refetch({ requestPolicy: "network-only" })), [refetch]);
  useLiveEvents((e) => {
    if (e.objectType !== "noderole") return;
    const s = e.changes?.["state"];
    if (typeof s === "string") setLive((l) => ({ ...l, [e.objectID]: s.toUpperCase() }));
    if (e.kind === "noderole.created" || e.kind === "noderole.deleted") refetchSoon();
    refetchStatusSoon(() => refetchStatus({ requestPolicy: "network-only" }));
  }, [refetchSoon, refetchStatus]);

  const nodes = useMemo(() => data?.nodeRoles.edges?.flatMap((e) => (e?.node ? [e.node] : [])) ?? [], [data]);
  useEffect(() => {
    if (nodes.length === 0) { setLayout(null); return; }
    const w = new Worker(new URL("./layout.worker.ts", import.meta.url), { type: "module" });
    const input: LayoutIn = {
      nodes: nodes.map((n) => ({ id: n.id, w: NW, h: NH })),
      edges: nodes.flatMap((n) => (n.children ?? []).map((c) => ({ from: n.id, to: c.id }))),
    };
    w.onmessage = (ev: MessageEvent<LayoutOut>) => { setLayout(ev.data); w.terminate(); };
    w.postMessage(input);
    return () => w.terminate();
  }, [nodes]);

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
      <ErrorText error={error} />
      <ul className="legend" aria-label="Node-role states">{nodeRoleStates.map((s) => <li key={s}><span aria-hidden="true" style={{ color: stateColor(s) }}>{stateGlyph(s)}</span> {s}</li>)}</ul>
      {data && nodes.length === 0 && <p>No node-roles here yet. Bind a role in <Link href="/deployments">Deployments</Link>.</p>}
      {data && data.nodeRoles.totalCount > nodes.length && <p>Showing the first {nodes.length} of {data.nodeRoles.totalCount} node-roles.</p>}
      {layout && (
        <div className="dag-wrap">
          <svg width={layout.width} height={layout.height} role="img" aria-label="Node-role graph" className="dag">
            {nodes.flatMap((n) => (n.children ?? []).map((c) => {
              const a = layout.nodes[n.id], b = layout.nodes[c.id];
              return a && b ? <path key={n.id + c.id} d={`M${a.x} ${a.y + NH / 2}L${b.x} ${b.y - NH / 2}`} stroke="#868e96" fill="none" markerEnd="url(#arrow)" /> : null;
            }))}
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
