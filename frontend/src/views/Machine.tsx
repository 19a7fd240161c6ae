// Machine detail: inventory (no BMC secrets: the API never returns them), node-roles, runs and their
// logs, recent events, and power / one-time PXE buttons behind a confirmation whose operation
// progress arrives live through the events subscription; its boot timeline (each boot's steps as a
// waterfall) and its drift (planned against discovered).
import { useMemo, useState } from "react";
import { useMutation, useQuery } from "urql";
import { Link } from "wouter";
import { graphql } from "../gql";
import { Confirm, ErrorText, FieldErrors, StateBadge } from "../components";
import { useLive, useLiveEvents, useSession } from "../ctx";
import { can } from "../lib/auth";
import type { LiveEvent } from "../lib/live";
import { coalesce } from "../lib/pace";
import { driftRows, waterfall, type BootLike } from "../lib/boots";

const MachineQuery = graphql(`
  query Machine($id: ID!, $after: Int!) {
    node(id: $id) {
      __typename
      ... on Machine {
        id name serial vendor model arch uuid cpuCount memoryBytes alive available bootenv state uPosition uHeight discovery drift discoveryConflict
        boots(last: 5) { trace start durationMs steps { kind what at durationMs status error } }
        rack { id name site { name } }
        bmc { id protocol address port scheme username systemID }
        nics(first: 50) { edges { node { id name mac speedMbps link pxe switchName switchPort } } }
        disks(first: 50) { edges { node { id name sizeBytes kind model serial } } }
        allocations(first: 20) { edges { node { id address purpose } } }
        nodeRoles(first: 100, orderBy: {field: COHORT}) {
          edges { node { id state status cohort role { name } deployment { name }
            runs(first: 5, orderBy: {field: STARTED_AT, direction: DESC}) { edges { node { id attempt status log error startedAt finishedAt } } } } }
        }
        operations(first: 10, orderBy: {field: CREATED_AT, direction: DESC}) {
          edges { node { id action state message createdAt finishedAt result } }
        }
      }
    }
    events(after: $after, first: 50, filter: {machineIDs: [$id]}) { events { id seq time kind actor changes } }
  }
`);

const PowerMutation = graphql(`
  mutation Power($machine: ID!, $action: PowerAction!) {
    powerAction(machineID: $machine, action: $action) { operation { id state action message } errors { field code message } }
  }
`);

const PXEMutation = graphql(`
  mutation PXEOnce($machine: ID!) {
    setBootDevice(machineID: $machine, device: PXE, persistent: false) { operation { id state action message } errors { field code message } }
  }
`);

type Action = "ON" | "OFF" | "CYCLE" | "PXE";
interface OpView { id: string; state: string; action: string; message?: string | null }

function ms(v: number) { return v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${v} ms`; }

/** BootWaterfall draws one bar per step, offset by its time from the boot's start, width by duration. */
function BootWaterfall({ boot }: { boot: BootLike }) {
  const { bars } = waterfall(boot);
  return (
    <ol className="waterfall">
      {bars.map((b, i) => (
        <li key={i} data-failed={b.failed || undefined}>
          <span className="wf-label">{b.step.what} <small>{b.step.kind}</small>
            {b.step.status ? ` · ${b.step.status}` : ""} · +{ms(b.offsetMs)}{b.durationMs ? `, ${ms(b.durationMs)}` : ""}
            {b.failed && <strong className="error"> ✖ {b.step.error ?? "failed"}</strong>}</span>
          <span className="wf-track" aria-hidden="true"><span className="wf-bar" style={{ left: `${b.leftPct}%`, width: `${b.widthPct}%` }} /></span>
        </li>
      ))}
    </ol>
  );
}

function gib(b?: number | null) { return b == null ? "—" : `${Math.round(b / 2 ** 30)} GiB`; }

export function MachineView({ id }: { id: string }) {
  const hub = useLive();
  const [after] = useState(() => Math.max(0, hub.lastSeq - 5000));
  const [{ data, error, fetching }, refetch] = useQuery({ query: MachineQuery, variables: { id, after } });
  const { session } = useSession();
  const [ask, setAsk] = useState<Action | null>(null);
  const [op, setOp] = useState<OpView | null>(null);
  const [live, setLive] = useState<LiveEvent[]>([]);
  const [powerRes, power] = useMutation(PowerMutation);
  const [pxeRes, pxe] = useMutation(PXEMutation);
  const m = data?.node?.__typename === "Machine" ? data.node : null;
  const mid = m?.id;

  const refetchSoon = useMemo(() => coalesce(() => refetch({ requestPolicy: "network-only" })), [refetch]);
  useLiveEvents((e) => {
    if (e.machineID !== mid && e.objectID !== mid) return;
    setLive((l) => [e, ...l].slice(0, 50));
    if (e.objectType === "operation") {
      setOp((o) => (o && o.id === e.objectID ? {
        ...o,
        state: typeof e.changes?.["state"] === "string" ? (e.changes["state"] as string).toUpperCase() : o.state,
        message: typeof e.changes?.["message"] === "string" ? (e.changes["message"] as string) : o.message,
      } : o));
    }
    if (e.objectType === "machine" || e.objectType === "noderole" || e.objectType === "operation" && /SUCCEEDED|FAILED/i.test(String(e.changes?.["state"] ?? ""))) {
      refetchSoon();
    }
  }, [mid, refetchSoon]);

  if (!data && fetching) return <p>Loading…</p>;
  if (!m) return <section><h1>Machine not found</h1><p>No machine has id <code>{id}</code>. <Link href="/">Data centre</Link></p><ErrorText error={error} /></section>;

  const run = async (a: Action) => {
    setAsk(null);
    const r = a === "PXE" ? (await pxe({ machine: m.id })).data?.setBootDevice : (await power({ machine: m.id, action: a })).data?.powerAction;
    if (r?.operation) setOp({ id: r.operation.id, state: r.operation.state, action: r.operation.action, message: r.operation.message });
  };
  const payload = powerRes.data?.powerAction ?? pxeRes.data?.setBootDevice;
  const mayAct = can(session, "OPERATOR");
  const disc = (m.discovery ?? {}) as Record<string, unknown>;
  const powerState = typeof disc["power"] === "string" ? (disc["power"] as string) : null;
  const events = [...live, ...[...(data?.events.events ?? [])].reverse().filter((e) => !live.some((l) => l.seq === e.seq))].slice(0, 50);
  const drift = driftRows(m.drift);
  return (
    <section>
      <h1>{m.name} <StateBadge state={m.state} /></h1>
      {m.discoveryConflict && <p role="alert" className="error banner">Discovery conflict: {m.discoveryConflict}</p>}
      <p>{m.rack ? <>Rack <Link href={`/racks/${encodeURIComponent(m.rack.id)}`}>{m.rack.name}</Link> ({m.rack.site.name}) U{m.uPosition}{m.uHeight > 1 ? `–${(m.uPosition ?? 0) + m.uHeight - 1}` : ""}</> : "Not racked"}
        {" · "}{m.alive ? "✔ answering" : "✖ not answering"}{" · "}{m.available ? "available" : "reserved"}{powerState ? ` · power ${powerState}` : ""}
        {" · "}<Link href={`/annealer?machine=${encodeURIComponent(m.id)}`}>annealer graph</Link></p>

      <section aria-label="Power">
        <h2>Power</h2>
        {(["ON", "OFF", "CYCLE", "PXE"] as Action[]).map((a) => (
          <button key={a} type="button" disabled={!mayAct || !m.bmc} title={!mayAct ? "needs OPERATOR" : !m.bmc ? "no BMC" : undefined} onClick={() => setAsk(a)}>
            {a === "PXE" ? "One-time PXE" : `Power ${a.toLowerCase()}`}
          </button>
        ))}
        <FieldErrors errors={payload?.errors} field="" />
        <FieldErrors errors={payload?.errors} field="machineID" />
        <ErrorText error={powerRes.error ?? pxeRes.error} />
        {op && <p data-testid="operation" data-state={op.state} role="status">Operation {op.action}: <StateBadge state={op.state} /> {op.message}</p>}
        <Confirm open={ask !== null} title={ask === "PXE" ? `Boot ${m.name} from PXE once?` : `Power ${ask?.toLowerCase()} ${m.name}?`}
          onCancel={() => setAsk(null)} onConfirm={() => { if (ask) void run(ask); }}>
          <p>This goes to the machine's BMC now.</p>
        </Confirm>
      </section>

      <div className="cols">
        <section aria-label="Inventory">
          <h2>Inventory</h2>
          <dl className="kv">
            <dt>Vendor / model</dt><dd>{m.vendor ?? "—"} {m.model ?? ""}</dd>
            <dt>Serial</dt><dd>{m.serial ?? "—"}</dd>
            <dt>UUID</dt><dd>{m.uuid ?? "—"}</dd>
            <dt>CPU</dt><dd>{m.cpuCount ?? "—"} × {m.arch}</dd>
            <dt>Memory</dt><dd>{gib(m.memoryBytes)}</dd>
            <dt>Boot env</dt><dd>{m.bootenv}</dd>
            <dt>BMC</dt><dd>{m.bmc ? `${m.bmc.protocol} ${m.bmc.scheme}://${m.bmc.address}${m.bmc.port ? ":" + m.bmc.port : ""} user ${m.bmc.username ?? "—"}${m.bmc.systemID ? ` system ${m.bmc.systemID}` : ""}` : "none"}</dd>
          </dl>
          <h3>NICs</h3>
          <table><thead><tr><th>Name</th><th>MAC</th><th>Speed</th><th>Link</th><th>PXE</th><th>Switch</th></tr></thead>
            <tbody>{m.nics.edges?.map((e) => e?.node && <tr key={e.node.id}><td>{e.node.name}</td><td>{e.node.mac}</td><td>{e.node.speedMbps ?? "—"}</td><td>{e.node.link == null ? "?" : e.node.link ? "up" : "down"}</td><td>{e.node.pxe ? "yes" : ""}</td><td>{e.node.switchName} {e.node.switchPort}</td></tr>)}</tbody></table>
          <h3>Disks</h3>
          <table><thead><tr><th>Name</th><th>Size</th><th>Kind</th><th>Model</th></tr></thead>
            <tbody>{m.disks.edges?.map((e) => e?.node && <tr key={e.node.id}><td>{e.node.name}</td><td>{Math.round(e.node.sizeBytes / 1e9)} GB</td><td>{e.node.kind}</td><td>{e.node.model}</td></tr>)}</tbody></table>
          <h3>Addresses</h3>
          <ul>{m.allocations.edges?.map((e) => e?.node && <li key={e.node.id}>{e.node.address} {e.node.purpose}</li>)}</ul>
        </section>
        <section aria-label="Node-roles">
          <h2>Node-roles</h2>
          <table><thead><tr><th>Role</th><th>Deployment</th><th>State</th><th>Status</th></tr></thead>
            <tbody>{m.nodeRoles.edges?.map((e) => e?.node && (
              <tr key={e.node.id}><td>{e.node.role.name}</td><td>{e.node.deployment.name}</td><td><StateBadge state={e.node.state} /></td><td>{e.node.status}
                {e.node.runs.edges?.map((r) => r?.node && (
                  <details key={r.node.id}><summary>run {r.node.attempt}: {r.node.status}{r.node.error ? ` — ${r.node.error}` : ""}</summary><pre>{r.node.log || "(no log)"}</pre></details>
                ))}</td></tr>
            ))}</tbody></table>
          <h2>Operations</h2>
          <ul>{m.operations.edges?.map((e) => e?.node && <li key={e.node.id}>{e.node.action} <StateBadge state={e.node.state} /> {e.node.message} <small>{e.node.createdAt}</small></li>)}</ul>
          <section aria-label="Boots">
            <h2>Boots</h2>
            {m.boots.length === 0 ? <p>No boots recorded.</p> : m.boots.map((b, i) => (
              <details key={`${b.start}-${i}`} open={i === 0}>
                <summary>{new Date(b.start).toLocaleString()} · {ms(b.durationMs)} · {b.steps.length} steps{b.trace ? ` · trace ${b.trace}` : ""}</summary>
                <BootWaterfall boot={b} />
              </details>
            ))}
          </section>
          <section aria-label="Drift">
            <h2>Drift</h2>
            {drift.length === 0 ? <p>No drift.</p> : (
              <table><thead><tr><th>Fact</th><th>Planned</th><th>Found</th></tr></thead>
                <tbody>{drift.map((r, i) => <tr key={i}><td>{r.fact}</td><td>{r.planned}</td><td>{r.found}</td></tr>)}</tbody></table>
            )}
          </section>
          <h2>Recent events</h2>
          <ol className="events" reversed>{events.map((e) => <li key={e.seq}><code>#{e.seq}</code> {e.kind} <small>{e.actor} {e.time}</small></li>)}</ol>
        </section>
      </div>
    </section>
  );
}
