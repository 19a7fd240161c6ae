// Session handling against the access-control contract: cookie session from POST /auth/login,
// GET /auth/session to resume, X-CSRF-Token on cookie POSTs. A server without access control
// answers /auth/session with 404: the console then runs as "auth disabled" with every action shown.

export type Role = "VIEWER" | "OPERATOR" | "ADMIN";

export interface Session {
  /** false when the server has no access control (404 on /auth/session). */
  enabled: boolean;
  user: string;
  role: Role;
  csrfToken: string;
}

export const authDisabled: Session = { enabled: false, user: "", role: "ADMIN", csrfToken: "" };

const rank: Record<Role, number> = { VIEWER: 0, OPERATOR: 1, ADMIN: 2 };

/** can says whether the session's role reaches need (the server enforces it anyway). */
export function can(s: Session, need: Role): boolean {
  return rank[s.role] >= rank[need];
}

function parse(body: unknown): Session | null {
  if (typeof body !== "object" || body === null) return null;
  const b = body as Record<string, unknown>;
  if (typeof b.user !== "string" || typeof b.role !== "string" || !(b.role in rank)) return null;
  return { enabled: true, user: b.user, role: b.role as Role, csrfToken: typeof b.csrfToken === "string" ? b.csrfToken : "" };
}

/** loadSession returns the current session, authDisabled, or null (signed out). */
export async function loadSession(fetchImpl: typeof fetch = fetch): Promise<Session | null> {
  const r = await fetchImpl("/auth/session", { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (r.status === 404 || r.status === 405) return authDisabled;
  if (r.status === 401 || r.status === 403) return null;
  if (!r.ok) throw new Error(`session: HTTP ${r.status}`);
  // A server without the auth routes may answer with the console's own index.html: no auth.
  if (!(r.headers.get("Content-Type") ?? "").includes("json")) return authDisabled;
  const s = parse(await r.json().catch(() => null));
  if (!s) throw new Error("session: malformed answer");
  return s;
}

export async function login(name: string, password: string, fetchImpl: typeof fetch = fetch): Promise<Session> {
  const r = await fetchImpl("/auth/login", {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ name, password }),
  });
  if (r.status === 404) return authDisabled;
  const body: unknown = await r.json().catch(() => null);
  if (!r.ok) {
    const msg = typeof body === "object" && body && typeof (body as { error?: unknown }).error === "string"
      ? (body as { error: string }).error : `HTTP ${r.status}`;
    throw new Error(msg);
  }
  const s = parse(body);
  if (!s) throw new Error("login: malformed answer");
  return s;
}

export async function logout(s: Session, fetchImpl: typeof fetch = fetch): Promise<void> {
  await fetchImpl("/auth/logout", { method: "POST", credentials: "same-origin", headers: { "X-CSRF-Token": s.csrfToken } });
}
