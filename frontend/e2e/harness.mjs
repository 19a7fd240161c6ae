// Browser-test harness: builds the console and the binary, runs a real `prybar serve` (demo
// fixtures, SQLite in a temp dir) with a simulated BMC fleet registered in it, and drives Debian's
// chromium through playwright-core. Every test saves a screenshot in e2e/out; a failing test keeps
// a Playwright trace there too.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, existsSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import net from "node:net";
import { chromium } from "playwright-core";

export const root = resolve(import.meta.dirname, "..", "..");
export const out = resolve(import.meta.dirname, "out");
const CI = process.env.CI === "true" || process.env.CI === "1";

/** need finds a peer program; missing skips locally (loudly) but fails under CI=true. */
export function need(path) {
  if (existsSync(path)) return true;
  const msg = `browser tests: ${path} is missing (apt-get install chromium)`;
  if (CI) throw new Error(msg + " — required under CI");
  console.log(`SKIP ${msg}`);
  return false;
}

export function buildAll({ skipBuild = process.env.E2E_SKIP_BUILD === "1" } = {}) {
  mkdirSync(out, { recursive: true });
  const bin = join(out, "prybar");
  if (!skipBuild || !existsSync(bin)) {
    execFileSync("npm", ["run", "--silent", "build"], { cwd: resolve(root, "frontend"), stdio: "inherit" });
    execFileSync("go", ["build", "-o", bin, "./cmd/prybar"], { cwd: root, stdio: "inherit" });
  }
  return bin;
}

export async function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => { const p = s.address().port; s.close(() => res(p)); });
    s.on("error", rej);
  });
}

async function waitHTTP(url, ms) {
  const end = Date.now() + ms;
  for (;;) {
    try { const r = await fetch(url); if (r.ok) return; } catch { /* not up yet */ }
    if (Date.now() > end) throw new Error(`timeout waiting for ${url}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Server is one `prybar serve` process on a fixed port (restartable on the same db and port). */
export class Server {
  constructor(bin, { fixtures = "demo", port, dir, args = [] } = {}) {
    this.bin = bin; this.fixtures = fixtures; this.port = port; this.extraArgs = args;
    this.dir = dir ?? mkdtempSync(join(tmpdir(), "prybar-console-e2e-"));
    this.url = `http://127.0.0.1:${port}`;
    this.log = [];
  }
  async start(timeout = 120_000) {
    const args = ["serve", "--db", join(this.dir, "prybar.db"), "--listen", `127.0.0.1:${this.port}`];
    if (this.fixtures) args.push("--fixtures", this.fixtures);
    args.push(...this.extraArgs);
    this.proc = spawn(this.bin, args,
      { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PRYBAR_CACHE: join(this.dir, "cache") } });
    const keep = (d) => { this.log.push(String(d)); if (this.log.length > 400) this.log.shift(); };
    this.proc.stdout.on("data", keep); this.proc.stderr.on("data", keep);
    this.exited = new Promise((r) => this.proc.on("exit", r));
    await Promise.race([waitHTTP(this.url + "/readyz", timeout), this.exited.then(() => { throw new Error("serve exited:\n" + this.log.join("")); })]);
  }
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill("SIGTERM");
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 15_000);
    await this.exited;
    clearTimeout(t);
  }
  /** createToken makes an API token in the server's database (printed once by the CLI). */
  createToken(role, name) {
    return execFileSync(this.bin, ["tokens", "create", "--db", join(this.dir, "prybar.db"), "--role", role, `${name}-${Date.now()}`],
      { cwd: this.dir, stdio: ["ignore", "pipe", "pipe"] }).toString().trim();
  }
  /** addUser creates a console user in the server's database (the password on stdin, as an operator would). */
  addUser(name, role, password = "prybar-demo") {
    execFileSync(this.bin, ["users", "add", "--db", join(this.dir, "prybar.db"), "--role", role, name],
      { cwd: this.dir, input: password + "\n", stdio: ["pipe", "pipe", "pipe"] });
  }
  cleanup() { rmSync(this.dir, { recursive: true, force: true }); }
}

/** Fleet runs `prybar sim fleet` registered in the server (site fleet-sim, racks of 40). */
export class Fleet {
  constructor(bin, server, machines = 4) { this.bin = bin; this.server = server; this.machines = machines; this.log = []; }
  async start() {
    const args = ["sim", "fleet", "--machines", String(this.machines), "--prybar", this.server.url, "--alive", "--power-delay", "300ms",
      "--stats-every", "0", "--mockup", resolve(root, "..", "shared", "redfish-mockups", "public-rackmount1")];
    // Registration is an API call like any other: an admin token (it creates BMCs), from the environment or
    // created in the server's database with `prybar tokens create`.
    const token = process.env.PRYBAR_TOKEN || this.server.createToken("admin", "e2e-fleet");
    args.push("--token", token);
    this.proc = spawn(this.bin, args, { cwd: this.server.dir, stdio: ["ignore", "pipe", "pipe"] });
    this.exited = new Promise((r) => this.proc.on("exit", r));
    await new Promise((res, rej) => {
      const t = setTimeout(() => rej(new Error("sim fleet: no registration in 60 s:\n" + this.log.join(""))), 60_000);
      const on = (d) => { this.log.push(String(d)); if (/registered in/.test(this.log.join(""))) { clearTimeout(t); res(); } };
      this.proc.stdout.on("data", on); this.proc.stderr.on("data", on);
      this.exited.then((c) => { clearTimeout(t); rej(new Error(`sim fleet exited ${c}:\n` + this.log.join(""))); });
    });
  }
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill("SIGTERM");
    await this.exited;
  }
}

export const chromiumPath = process.env.CHROMIUM ?? "/usr/bin/chromium";

export async function launch() {
  const userDataDir = mkdtempSync(join(tmpdir(), "prybar-console-chromium-"));
  const ctx = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: true,
    viewport: { width: 1400, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  return { ctx, close: async () => { await ctx.close(); rmSync(userDataDir, { recursive: true, force: true }); } };
}

/** signIn passes the sign-in page when the server has access control (demo admin user). */
export async function open(page, url, user = "admin") {
  await page.goto(url);
  const form = page.locator("form:has(input[name=password])");
  const shell = page.locator("header.top");
  await Promise.race([form.waitFor({ timeout: 15_000 }), shell.waitFor({ timeout: 15_000 })]);
  if (await form.isVisible()) {
    await page.fill("input[name=name]", user);
    await page.fill("input[name=password]", "prybar-demo");
    await page.click("button[type=submit]");
    await shell.waitFor({ timeout: 15_000 });
  }
  await page.locator("[data-testid=link]", { hasText: "live" }).waitFor({ timeout: 15_000 });
}

/** gql runs a GraphQL operation from inside the page (its cookie and CSRF token, if any). */
export async function gql(page, query, variables = {}) {
  const r = await page.evaluate(async ([query, variables]) => {
    const s = await fetch("/auth/session");
    const csrf = s.ok ? (await s.json()).csrfToken : "";
    const r = await fetch("/graphql", { method: "POST", headers: { "Content-Type": "application/json", ...(csrf ? { "X-CSRF-Token": csrf } : {}) }, body: JSON.stringify({ query, variables }) });
    return r.json();
  }, [query, variables]);
  if (r.errors) throw new Error(JSON.stringify(r.errors));
  return r.data;
}

/** runTests runs named async tests in order with a screenshot each and a trace on failure. */
export async function runTests(ctx, tests, only) {
  let failed = 0;
  for (const [name, fn] of Object.entries(tests)) {
    if (only && !only.test(name)) continue;
    const page = await ctx.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    // The server rate-limits each identity (docs/security.md): the console in normal use must
    // stay under it, so a throttled request fails the test.
    page.on("response", (r) => { if (r.status() === 429) errors.push(`rate limited: ${r.request().method()} ${r.url()}`); });
    await ctx.tracing.start({ screenshots: true, snapshots: true, title: name });
    const t0 = Date.now();
    try {
      await fn(page);
      if (errors.length) throw new Error("page errors: " + errors.join("; "));
      await page.screenshot({ path: join(out, `${name}.png`), fullPage: false });
      await ctx.tracing.stop();
      rmSync(join(out, `${name}.trace.zip`), { force: true }); // a failed run's trace would mislead
      console.log(`--- PASS: ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
    } catch (e) {
      failed++;
      await page.screenshot({ path: join(out, `${name}.png`) }).catch(() => {});
      await ctx.tracing.stop({ path: join(out, `${name}.trace.zip`) }).catch(() => {});
      console.log(`--- FAIL: ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)\n${e.stack ?? e}\n    trace: ${join(out, name + ".trace.zip")}`);
    }
    await page.close();
  }
  return failed;
}

export function assert(cond, msg) { if (!cond) throw new Error("assertion failed: " + msg); }
