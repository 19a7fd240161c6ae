// Deployments: the roles × machines matrix of a deployment's node-roles; bind a role to machines,
// propose, commit. Domain errors are shown beside the field at fault.
import { useMemo, useState } from "react";
import { useClient, useMutation, useQuery } from "urql";
import { Link, useSearch, useLocation } from "wouter";
import { graphql } from "../gql";
import { ErrorText, FieldErrors, StateBadge, type DomainError } from "../components";
import { useLiveEvents, useSession } from "../ctx";
import { can } from "../lib/auth";
import { coalesce } from "../lib/pace";

const DeploymentsQuery = graphql(`
  query Deployments {
    deployments(first: 100) { edges { node { id name status state } } }
    roles(first: 200) { edges { node { id name description implicit } } }
  }
`);

const MatrixQuery = graphql(`
  query Matrix($id: ID!) {
    node(id: $id) {
      __typename
      ... on Deployment {
        id name status state
        nodeRoles(first: 1000) { totalCount edges { node { id state role { name } machine { id name } } } }
      }
    }
  }
`);

const BindMutation = graphql(`
  mutation Bind($machine: ID!, $role: String!, $deployment: ID) {
    bindRole(machineID: $machine, role: $role, deploymentID: $deployment) { nodeRole { id state } errors { field code message } }
  }
`);
const MachineByName = graphql(`query MachineByName($name: String!) { machine(name: $name) { id } }`);
const CommitMutation = graphql(`mutation Commit($id: ID!) { commitDeployment(id: $id) { deployment { id status state } errors { field code message } } }`);
const ProposeMutation = graphql(`mutation Propose($id: ID!) { proposeDeployment(id: $id) { deployment { id status state } errors { field code message } } }`);

export function Deployments() {
  const [{ data, error }] = useQuery({ query: DeploymentsQuery });
  const search = new URLSearchParams(useSearch());
  const [, nav] = useLocation();
  const list = data?.deployments.edges?.flatMap((e) => (e?.node ? [e.node] : [])) ?? [];
  const selected = search.get("d") ?? list.find((d) => d.name === "system")?.id ?? list[0]?.id;
  return (
    <section>
      <h1>Deployments</h1>
      <ErrorText error={error} />
      <nav aria-label="Deployments" className="tabs">
        {list.map((d) => (
          <a key={d.id} href={`/deployments?d=${encodeURIComponent(d.id)}`} aria-current={d.id === selected ? "page" : undefined}
            onClick={(e) => { e.preventDefault(); nav(`/deployments?d=${encodeURIComponent(d.id)}`); }}>
            {d.name} <StateBadge state={d.status} />
          </a>
        ))}
      </nav>
      {selected && <Matrix id={selected} roles={data?.roles.edges?.flatMap((e) => (e?.node && !e.node.implicit ? [e.node.name] : [])) ?? []} />}
    </section>
  );
}

function Matrix({ id, roles }: { id: string; roles: string[] }) {
  const [{ data, error }, refetch] = useQuery({ query: MatrixQuery, variables: { id } });
  const { session } = useSession();
  const mayAct = can(session, "OPERATOR");
  const client = useClient();
  const [, bind] = useMutation(BindMutation);
  const [commitRes, commit] = useMutation(CommitMutation);
  const [proposeRes, propose] = useMutation(ProposeMutation);
  const [role, setRole] = useState("");
  const [machines, setMachines] = useState("");
  const [errors, setErrors] = useState<DomainError[]>([]);
  const [busy, setBusy] = useState(false);
  const d = data?.node?.__typename === "Deployment" ? data.node : null;
  // A commit moves many node-roles within a second: one refetch for the lot.
  const refetchSoon = useMemo(() => coalesce(() => refetch({ requestPolicy: "network-only" })), [refetch]);
  useLiveEvents((e) => { if (e.objectType === "noderole" || e.objectType === "deployment") refetchSoon(); }, [refetchSoon]);

  const matrix = useMemo(() => {
    const rs = new Set<string>(), ms = new Map<string, string>(), cells = new Map<string, { id: string; state: string }>();
    for (const e of d?.nodeRoles.edges ?? []) {
      const n = e?.node;
      if (!n) continue;
      rs.add(n.role.name); ms.set(n.machine.id, n.machine.name);
      cells.set(`${n.role.name}|${n.machine.id}`, { id: n.id, state: n.state });
    }
    return { roles: [...rs].sort(), machines: [...ms].sort((a, b) => a[1].localeCompare(b[1])), cells };
  }, [d]);

  const doBind = async () => {
    setBusy(true);
    const errs: DomainError[] = [];
    const names = machines.split(/[\s,]+/).filter(Boolean);
    if (!role) errs.push({ field: "role", code: "INVALID", message: "choose a role" });
    if (names.length === 0) errs.push({ field: "machineID", code: "INVALID", message: "name at least one machine" });
    for (const name of errs.length ? [] : names) {
      const mr = await client.query(MachineByName, { name }, { requestPolicy: "network-only" }).toPromise();
      const mid = mr?.data?.machine?.id;
      if (!mid) { errs.push({ field: "machineID", code: "NOT_FOUND", message: `no machine named ${name}` }); continue; }
      const r = await bind({ machine: mid, role, deployment: id });
      if (r.error) errs.push({ field: "", code: "UNAVAILABLE", message: r.error.message });
      for (const x of r.data?.bindRole.errors ?? []) errs.push({ ...x, message: `${name}: ${x.message}` });
    }
    setErrors(errs);
    setBusy(false);
    refetch({ requestPolicy: "network-only" });
  };

  if (error) return <ErrorText error={error} />;
  if (!d) return <p>Loading…</p>;
  const payloadErrors = [...(commitRes.data?.commitDeployment.errors ?? []), ...(proposeRes.data?.proposeDeployment.errors ?? [])];
  return (
    <>
      <h2>{d.name} <StateBadge state={d.status} /> <small>{d.nodeRoles.totalCount} node-roles</small></h2>
      <p>
        <button type="button" disabled={!mayAct} onClick={() => void commit({ id })}>Commit</button>{" "}
        <button type="button" disabled={!mayAct} onClick={() => void propose({ id })}>Propose</button>{" "}
        <Link href={`/annealer?deployment=${encodeURIComponent(id)}`}>Annealer graph</Link>
        <FieldErrors errors={payloadErrors} field="" />
        <FieldErrors errors={payloadErrors} field="id" />
      </p>
      <form className="bind" aria-label="Bind a role" onSubmit={(e) => { e.preventDefault(); void doBind(); }}>
        <label>Role <input name="role" list="roles" value={role} onChange={(e) => setRole(e.target.value)} aria-invalid={errors.some((x) => x.field === "role")} disabled={!mayAct} /></label>
        <datalist id="roles">{roles.map((r) => <option key={r} value={r} />)}</datalist>
        <FieldErrors errors={errors} field="role" />
        <label>Machines <input name="machines" size={50} value={machines} onChange={(e) => setMachines(e.target.value)} placeholder="web01.a01.ams1.example, …" aria-invalid={errors.some((x) => x.field === "machineID")} disabled={!mayAct} /></label>
        <FieldErrors errors={errors} field="machineID" />
        <button type="submit" disabled={!mayAct || busy}>Bind</button>
        <FieldErrors errors={errors} field="" />
        <FieldErrors errors={errors.filter((x) => !["role", "machineID", ""].includes(x.field))} field={errors.find((x) => !["role", "machineID", ""].includes(x.field))?.field ?? "-"} />
      </form>
      <div className="matrix-wrap">
        <table className="matrix" aria-label="Roles by machine">
          <thead><tr><th scope="col">Machine</th>{matrix.roles.map((r) => <th key={r} scope="col">{r}</th>)}</tr></thead>
          <tbody>
            {matrix.machines.map(([mid, name]) => (
              <tr key={mid}><th scope="row"><Link href={`/machines/${encodeURIComponent(mid)}`}>{name}</Link></th>
                {matrix.roles.map((r) => { const c = matrix.cells.get(`${r}|${mid}`); return <td key={r} data-role={r} data-machine={name}>{c ? <StateBadge state={c.state} /> : ""}</td>; })}
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
