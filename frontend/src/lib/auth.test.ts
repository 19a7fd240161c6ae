import { describe, expect, it } from "vitest";
import { authDisabled, can, loadSession, login } from "./auth";

function fake(status: number, body: unknown, type = "application/json"): typeof fetch {
  return (async () => new Response(typeof body === "string" ? body : JSON.stringify(body), { status, headers: { "Content-Type": type } })) as typeof fetch;
}

describe("loadSession", () => {
  it("treats 404 as access control off", async () => {
    expect(await loadSession(fake(404, "not found", "text/plain"))).toEqual(authDisabled);
  });
  it("treats an HTML answer as access control off", async () => {
    expect(await loadSession(fake(200, "<html></html>", "text/html"))).toEqual(authDisabled);
  });
  it("is signed out on 401", async () => {
    expect(await loadSession(fake(401, { error: "no session" }))).toBeNull();
  });
  it("reads the session", async () => {
    expect(await loadSession(fake(200, { user: "alice", role: "OPERATOR", csrfToken: "t" }))).toEqual({ enabled: true, user: "alice", role: "OPERATOR", csrfToken: "t" });
  });
  it("rejects a malformed session", async () => {
    await expect(loadSession(fake(200, { user: "alice", role: "ROOT" }))).rejects.toThrow(/malformed/);
  });
});

describe("login", () => {
  it("surfaces the server's error", async () => {
    await expect(login("a", "b", fake(401, { error: "wrong name or password" }))).rejects.toThrow("wrong name or password");
  });
});

describe("can", () => {
  it("orders roles", () => {
    const v = { enabled: true, user: "v", role: "VIEWER" as const, csrfToken: "" };
    expect(can(v, "VIEWER")).toBe(true);
    expect(can(v, "OPERATOR")).toBe(false);
    expect(can({ ...v, role: "ADMIN" }, "OPERATOR")).toBe(true);
  });
});
