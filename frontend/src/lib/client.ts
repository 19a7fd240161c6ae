// The urql client: graphcache (normalised, Relay pagination, optimistic mutations) over HTTP for
// queries and mutations, with the session's CSRF token on every POST.
import { Client, fetchExchange, mapExchange, type Exchange } from "@urql/core";
import { cacheExchange } from "@urql/exchange-graphcache";
import type { Session } from "./auth";
import { pacedFetch } from "./pace";

// Types without an id (payloads, connections, snapshots) are embedded in their parent.
const embedded = [
  "PageInfo", "DomainError", "StateCount", "AnnealerStatus", "EventPage", "Identity",
  "OperationPayload", "BindRolePayload", "DeploymentPayload", "NodeRolePayload", "RetryAllPayload",
  "MachinePayload", "UnbindRolePayload", "DeletePayload", "SetAttributePayload",
];
const conn = ["Machine", "Rack", "Site", "NodeRole", "Run", "NIC", "Disk", "Deployment", "Role", "Operation", "IPAllocation", "Event"];

/**
 * authLost is an exchange that notices the server no longer knows the session (signed out in
 * another tab, expired, revoked): the GraphQL layer answers such a cookie with UNAUTHENTICATED
 * errors (HTTP 200), a bad token with 401. Either way the console goes back to its sign-in page.
 */
function authLost(onAuthLost: () => void): Exchange {
  return mapExchange({
    onError(error) {
      if (error.response?.status === 401 || error.graphQLErrors.some((e) => e.extensions?.code === "UNAUTHENTICATED")) onAuthLost();
    },
  });
}

/**
 * makePlainClient is a client without the normalised cache, for big read-only pages (the 100-rack
 * row: ~3,000 machines) where normalising every machine costs more main-thread time than it saves.
 * Live updates still arrive through the events hub.
 */
export function makePlainClient(session: Session, onAuthLost: () => void = () => {}): Client {
  return new Client({
    url: "/graphql",
    // POST only: the server ignores the session cookie on GET (a cross-site GET could carry it).
    preferGetMethod: false,
    requestPolicy: "network-only",
    fetchOptions: (): RequestInit => {
      const headers: Record<string, string> = {};
      if (session.csrfToken) headers["X-CSRF-Token"] = session.csrfToken;
      return { credentials: "same-origin", headers };
    },
    fetch: pacedFetch,
    exchanges: [authLost(onAuthLost), fetchExchange],
  });
}

export function makeClient(session: Session, onAuthLost: () => void): Client {
  const keys: Record<string, () => null> = {};
  for (const t of embedded) keys[t] = () => null;
  for (const t of conn) { keys[t + "Connection"] = () => null; keys[t + "Edge"] = () => null; }
  return new Client({
    url: "/graphql",
    preferGetMethod: false, // as above
    requestPolicy: "cache-and-network",
    fetchOptions: (): RequestInit => {
      const headers: Record<string, string> = {};
      if (session.csrfToken) headers["X-CSRF-Token"] = session.csrfToken;
      return { credentials: "same-origin", headers };
    },
    fetch: pacedFetch,
    exchanges: [
      authLost(onAuthLost),
      cacheExchange({
        keys,
        // Connections are single pages with explicit first/where (often aliased counts), keyed by
        // their arguments; relayPagination() would merge the aliases. The big read-only pages
        // (data centre, rack row) use makePlainClient and page by cursor themselves.
        optimistic: {
          // The button shows the operation as queued at once; the server's answer replaces it.
          powerAction: (args) => ({
            __typename: "OperationPayload",
            operation: { __typename: "Operation", id: "optimistic:" + String(args.machineID), state: "PENDING", action: "power-" + String(args.action).toLowerCase(), message: "queued" },
            errors: [],
          }),
          retryNodeRole: (args) => ({
            __typename: "NodeRolePayload",
            nodeRole: { __typename: "NodeRole", id: args.id as string, state: "TODO" },
            errors: [],
          }),
        },
      }),
      fetchExchange,
    ],
  });
}
