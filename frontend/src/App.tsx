// The console shell: session (sign-in), the urql client, the live hub, navigation and routes.
import { lazy, Suspense, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from "react";
import { Provider } from "urql";
import { Link, Route, Switch, useLocation } from "wouter";
import { loadSession, login, logout, type Session } from "./lib/auth";
import { makeClient, makePlainClient } from "./lib/client";
import { LiveHub } from "./lib/live";
import { latestSeq } from "./lib/seq";
import { LiveCtx, PlainCtx, SessionCtx, useLinkState, useSession } from "./ctx";
import { DataCentre } from "./views/DataCentre";
import { RackView, RackRow } from "./views/Rack";
import { MachineView } from "./views/Machine";
import { Deployments } from "./views/Deployments";
import { Events } from "./views/Events";

// The annealer's DAG view carries the layout engine: loaded only when opened.
const Annealer = lazy(() => import("./views/Annealer"));

export function App() {
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [err, setErr] = useState("");
  // Stable callbacks: the clients and the live hub are made once per session.
  const signedOut = useCallback(() => { setErr(""); setSession(null); }, []);
  const authLost = useCallback(() => { setErr("Your session has ended: sign in again."); setSession(null); }, []);
  useEffect(() => {
    loadSession().then(setSession, (e: Error) => { setErr(e.message); setSession(null); });
  }, []);
  if (session === undefined) return <p className="pad">Loading…</p>;
  if (session === null) return <SignIn error={err} onSignedIn={setSession} />;
  return <Console session={session} onSignOut={signedOut} onAuthLost={authLost} />;
}

function SignIn({ error, onSignedIn }: { error: string; onSignedIn: (s: Session) => void }) {
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [msg, setMsg] = useState(error);
  return (
    <main className="signin">
      <h1>Prybar</h1>
      <form onSubmit={(e) => { e.preventDefault(); login(name, password).then(onSignedIn, (x: Error) => setMsg(x.message)); }}>
        <label>User <input name="name" autoComplete="username" value={name} onChange={(e) => setName(e.target.value)} required /></label>
        <label>Password <input name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required /></label>
        <button type="submit">Sign in</button>
        {msg && <p role="alert" className="error">{msg}</p>}
      </form>
    </main>
  );
}

function Console({ session, onSignOut, onAuthLost }: { session: Session; onSignOut: () => void; onAuthLost: () => void }) {
  const client = useMemo(() => makeClient(session, onAuthLost), [session, onAuthLost]);
  const plain = useMemo(() => makePlainClient(session, onAuthLost), [session, onAuthLost]);
  const hub = useMemo(() => {
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    return new LiveHub(`${proto}//${location.host}/graphql`, () => (session.csrfToken ? { csrfToken: session.csrfToken } : {}), undefined, onAuthLost);
  }, [session, onAuthLost]);
  useEffect(() => {
    // Start the live feed at the newest seq: the views load current state by query, then apply
    // what changes after it.
    const probe = async (afters: number[]) => {
      const q = "query Probe {" + afters.map((a, i) => ` p${i}: events(after: ${a}, first: 1) { lastSeq hasMore events { id seq } }`).join("") + " }";
      const r = await client.query(q, {}, { requestPolicy: "network-only" }).toPromise();
      if (r.error) throw r.error;
      const d = r.data as Record<string, { events: unknown[] }>;
      return afters.map((_, i) => (d[`p${i}`]?.events.length ?? 0) > 0);
    };
    let cancelled = false;
    latestSeq(probe).then((seq) => { if (!cancelled) hub.start(seq); }, () => { if (!cancelled) hub.start(0); });
    (window as unknown as { __prybar: unknown }).__prybar = { hub };
    return () => { cancelled = true; hub.dispose(); };
  }, [client, hub]);
  const signOut = useCallback(() => { void logout(session).finally(onSignOut); }, [session, onSignOut]);
  return (
    <SessionCtx.Provider value={{ session, signOut }}>
      <LiveCtx.Provider value={hub}>
        <Provider value={client}>
          <PlainCtx.Provider value={plain}><Shell /></PlainCtx.Provider>
        </Provider>
      </LiveCtx.Provider>
    </SessionCtx.Provider>
  );
}

function Nav({ href, children }: { href: string; children: string }) {
  const [loc] = useLocation();
  const active = href === "/" ? loc === "/" : loc.startsWith(href);
  return <Link href={href} aria-current={active ? "page" : undefined}>{children}</Link>;
}

function Shell() {
  const { session, signOut } = useSession();
  const link = useLinkState();
  return (
    <>
      <header className="top">
        <strong>Prybar</strong>
        <nav aria-label="Main">
          <Nav href="/">Data centre</Nav>
          <Nav href="/deployments">Deployments</Nav>
          <Nav href="/annealer">Annealer</Nav>
          <Nav href="/events">Events</Nav>
          <a href="/graphiql">GraphiQL</a>
        </nav>
        <span className="who" data-testid="whoami">
          {session.enabled ? <>{session.user} ({session.role}) <button type="button" onClick={signOut}>Sign out</button></> : "access control off"}
        </span>
        <span className={`link link-${link}`} role="status" aria-live="polite" data-testid="link">
          {link === "connected" ? "● live" : link === "reconnecting" ? "reconnecting…" : "connecting…"}
        </span>
      </header>
      <main className="pad">
        <Suspense fallback={<p>Loading…</p>}>
          <Switch>
            <Route path="/"><Uncached><DataCentre /></Uncached></Route>
            <Route path="/sites/:site/row">{(p) => <Uncached><RackRow siteID={decodeURIComponent(p.site)} /></Uncached>}</Route>
            <Route path="/racks/:id">{(p) => <RackView id={decodeURIComponent(p.id)} />}</Route>
            <Route path="/machines/:id">{(p) => <MachineView id={decodeURIComponent(p.id)} />}</Route>
            <Route path="/deployments"><Deployments /></Route>
            <Route path="/annealer"><Annealer /></Route>
            <Route path="/events"><Events /></Route>
            <Route><NotFound /></Route>
          </Switch>
        </Suspense>
      </main>
    </>
  );
}

function Uncached({ children }: { children: ReactNode }) {
  const plain = useContext(PlainCtx);
  return plain ? <Provider value={plain}>{children}</Provider> : <>{children}</>;
}

function NotFound() {
  const [loc] = useLocation();
  return (
    <section>
      <h1>Not found</h1>
      <p>Nothing lives at <code>{loc}</code>. <Link href="/">Back to the data centre</Link>.</p>
    </section>
  );
}
