// GraphiQL, bundled (no CDN): its own page at /graphiql, never part of the console's first load.
// It uses the session cookie and CSRF token like the console.
import { createRoot } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { createGraphiQLFetcher } from "@graphiql/toolkit";
import "graphiql/style.css";
import { loadSession } from "./lib/auth";

const signInFirst = () => {
  const el = document.getElementById("graphiql")!;
  el.innerHTML = '<p style="padding:1em">Sign in to <a href="/">the console</a> first: GraphiQL uses its session.</p>';
};

void loadSession().then((s) => {
  // Signed out: every query would be refused, so say what to do instead.
  if (s === null) { signInFirst(); return; }
  const headers: Record<string, string> = s?.csrfToken ? { "X-CSRF-Token": s.csrfToken } : {};
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const fetcher = createGraphiQLFetcher({
    url: "/graphql",
    subscriptionUrl: `${proto}//${location.host}/graphql`,
    headers,
    wsConnectionParams: s?.csrfToken ? { csrfToken: s.csrfToken } : {},
  });
  createRoot(document.getElementById("graphiql")!).render(<GraphiQL fetcher={fetcher} />);
}, signInFirst);
