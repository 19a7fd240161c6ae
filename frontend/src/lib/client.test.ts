import { afterEach, describe, expect, it, vi } from "vitest";
import { makeClient, makePlainClient } from "./client";
import type { Session } from "./auth";

const session: Session = { enabled: true, user: "alice", role: "VIEWER", csrfToken: "csrf-1" };

// stub answers every request with body and records what was sent.
function stub(body: unknown, status = 200) {
  const sent: { method?: string; headers: Record<string, string>; credentials?: string }[] = [];
  vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
    sent.push({ method: init.method, headers: Object.fromEntries(new Headers(init.headers).entries()), credentials: init.credentials });
    return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
  });
  return sent;
}

afterEach(() => { vi.unstubAllGlobals(); });

describe.each([["cached", makeClient], ["plain", makePlainClient]] as const)("%s client", (_, make) => {
  it("queries by POST with the session's CSRF token (the server ignores the cookie on GET)", async () => {
    const sent = stub({ data: { whoami: { __typename: "Identity", name: "alice" } } });
    const lost = vi.fn();
    const r = await make(session, lost).query("query { whoami { name } }", {}).toPromise();
    expect(r.error).toBeUndefined();
    expect(sent).toHaveLength(1);
    expect(sent[0]?.method).toBe("POST");
    expect(sent[0]?.headers["x-csrf-token"]).toBe("csrf-1");
    expect(sent[0]?.credentials).toBe("same-origin");
    expect(lost).not.toHaveBeenCalled();
  });
  it("reports a session the server no longer knows", async () => {
    stub({ errors: [{ message: "authentication required", extensions: { code: "UNAUTHENTICATED" } }], data: null });
    const lost = vi.fn();
    await make(session, lost).query("query { whoami { name } }", {}).toPromise();
    expect(lost).toHaveBeenCalled();
  });
  it("does not sign out on a refusal of one field", async () => {
    stub({ errors: [{ message: "needs OPERATOR", extensions: { code: "FORBIDDEN" } }], data: null });
    const lost = vi.fn();
    const r = await make(session, lost).query("query { whoami { name } }", {}).toPromise();
    expect(r.error?.graphQLErrors[0]?.extensions?.code).toBe("FORBIDDEN");
    expect(lost).not.toHaveBeenCalled();
  });
});
