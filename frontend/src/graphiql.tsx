// GraphiQL, bundled (no CDN): its own page at /graphiql, never part of the console's first load.
// It uses the session cookie and CSRF token like the console.
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import "graphiql/style.css";
import { loadSession } from "./lib/auth";

void loadSession().then((s) => {
  const headers: Record<string, string> = s?.csrfToken ? { "X-CSRF-Token": s.csrfToken } : {};
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const fetcher = createGraphiQLFetcher({
    url: "/graphql",
    subscriptionUrl: `${proto}//${location.host}/graphql`,
    headers,
    wsConnectionParams: s?.csrfToken ? { csrfToken: s.csrfToken } : {},
  });
  createRoot(document.getElementById("graphiql")!).render(<GraphiQL fetcher={fetcher} />);
}, () => {
  document.getElementById("graphiql")!.textContent = "Sign in to the console first.";
});
