// Browser tests (playwright-core + Debian chromium) against a real `prybar serve --fixtures demo`
// with a simulated BMC fleet. Run: `npm run test:e2e` (or `make test`). E2E_ONLY=regex picks tests.
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { Server, Fleet, buildAll, freePort, launch, need, open, gql, runTests, assert, chromiumPath } from "./harness.mjs";

if (!need(chromiumPath)) process.exit(0);
const bin = buildAll();
const server = new Server(bin, { port: await freePort() });
await server.start();
const fleet = new Fleet(bin, server, 4);
await fleet.start();
const { ctx, close } = await launch();
const U = server.url;

const mark = (page) => page.evaluate(() => { window.__noReload = "still-here"; });
const notReloaded = async (page) => assert(await page.evaluate(() => window.__noReload) === "still-here", "the page reloaded");

const tests = {
  async dataCentre(page) {
    await open(page, U + "/");
    await page.getByRole("heading", { name: "Data centre" }).waitFor();
    await page.getByRole("heading", { name: /^ams1/ }).waitFor();
    await page.getByRole("heading", { name: /^fleet-sim/ }).waitFor();
    const total = await page.evaluate(() => [...document.querySelectorAll("[data-testid^=count-]")].reduce((n, e) => n + Number(e.textContent), 0));
    assert(total === 12 + 4, `machines by state add up to ${total}, want 16`);
    await page.fill("input[name=q]", "52-54-00-A1-01-02");
    await page.getByRole("link", { name: "web02.a01.ams1.example" }).waitFor();
    await page.fill("input[name=q]", "AMS10001A01");
    await page.getByRole("link", { name: "web01.a01.ams1.example" }).waitFor();
    await page.fill("input[name=q]", "10.10.0.11");
    await page.getByRole("link", { name: "web01.a01.ams1.example" }).waitFor();
  },

  async rackElevation(page) {
    await open(page, U + "/");
    await page.getByRole("listitem", { name: /^a01:/ }).click();
    await page.getByRole("heading", { name: /^Rack a01/ }).waitFor();
    await mark(page);
    const front = page.locator("svg[data-face=front]");
    const want = await gql(page, `{ machines(where: {hasRackWith: [{name: "a01"}]}) { edges { node { id name uPosition uHeight } } } }`);
    for (const e of want.machines.edges) {
      const g = front.locator(`g[data-machine="${e.node.id}"]`);
      assert(await g.getAttribute("data-u") === String(e.node.uPosition), `${e.node.name} drawn at U${await g.getAttribute("data-u")}, want U${e.node.uPosition}`);
      // U1 is at the bottom: y of the rect = (height - (u + h - 1)) * 14 + 1.
      const y = Number(await g.locator("rect").getAttribute("y"));
      const wantY = (42 - (e.node.uPosition + e.node.uHeight - 1)) * 14 + 1;
      assert(Math.abs(y - wantY) < 0.01, `${e.node.name} (U${e.node.uPosition}, ${e.node.uHeight}U) at y=${y}, want ${wantY}`);
      assert(Number(await g.locator("rect").getAttribute("height")) === e.node.uHeight * 14 - 2, `${e.node.name} drawn ${e.node.uHeight}U high`);
    }
    // Lean DOM: the face without its machines is a handful of elements.
    const empty = await front.evaluate((s) => s.querySelectorAll("*").length - [...s.querySelectorAll("g.machine")].reduce((n, g) => n + 1 + g.querySelectorAll("*").length, 0) + 1);
    assert(empty < 150, `empty face has ${empty} SVG elements`);
    // Hover detail and live repaint: change a machine's state through the API, see it without reload.
    const first = want.machines.edges[0].node;
    assert((await front.locator(`g[data-machine="${first.id}"] title`).textContent()).includes(first.name), "tooltip names the machine");
    await gql(page, `mutation($id: ID!) { updateMachine(id: $id, input: {alive: false}) { errors { message } } }`, { id: first.id });
    await front.locator(`g[data-machine="${first.id}"] rect[stroke-dasharray]`).waitFor({ timeout: 10_000 });
    await gql(page, `mutation($id: ID!) { updateMachine(id: $id, input: {alive: true}) { errors { message } } }`, { id: first.id });
    await notReloaded(page);
    await front.locator(`g[data-machine="${first.id}"]`).click();
    await page.waitForURL(/\/machines\//);
  },

  async machinePowerCycle(page) {
    const d = await (await fetch(U + "/graphql", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ query: `{ machines(first: 1, where: {hasRackWith: [{hasSiteWith: [{name: "fleet-sim"}]}]}) { edges { node { id name } } } }` }) })).json().catch(() => null);
    await open(page, U + "/");
    const m = d?.data?.machines.edges[0]?.node ?? (await gql(page, `{ machines(first: 1, where: {hasRackWith: [{hasSiteWith: [{name: "fleet-sim"}]}]}) { edges { node { id name } } } }`)).machines.edges[0].node;
    await page.goto(U + "/machines/" + encodeURIComponent(m.id));
    await page.getByRole("heading", { name: new RegExp(m.name.replace(/\./g, "\\.")) }).waitFor();
    // The discovery sections come from the same query (boots, drift): a simulated machine has
    // neither, so each shows its empty state rather than an error.
    await page.getByRole("region", { name: "Boots" }).getByText("No boots recorded.").waitFor();
    await page.getByRole("region", { name: "Drift" }).getByText("No drift.").waitFor();
    await mark(page);
    await page.getByRole("button", { name: "Power cycle" }).click();
    const dialog = page.getByRole("dialog");
    await dialog.waitFor();
    await dialog.getByRole("button", { name: "Confirm" }).click();
    const op = page.locator("[data-testid=operation]");
    await op.waitFor();
    await page.locator("[data-testid=operation][data-state=SUCCEEDED]").waitFor({ timeout: 30_000 });
    await notReloaded(page);
  },

  async bindCommitAnnealer(page) {
    await open(page, U + "/deployments");
    await page.getByRole("heading", { name: /^system/ }).waitFor();
    // A domain error is shown at its field.
    await page.fill("input[name=role]", "no-such-role");
    await page.fill("input[name=machines]", "web03.a01.ams1.example");
    await page.getByRole("button", { name: "Bind" }).click();
    await page.locator(".field-error").first().waitFor();
    const field = await page.locator(".field-error").first().getAttribute("data-field");
    assert(field === "role", `error shown at field ${field}, want role`);
    await page.fill("input[name=machines]", "nosuch.example");
    await page.fill("input[name=role]", "demo-inventory");
    await page.getByRole("button", { name: "Bind" }).click();
    await page.locator(".field-error[data-field=machineID]").waitFor();
    // Bind and commit.
    await page.fill("input[name=role]", "demo-inventory");
    await page.fill("input[name=machines]", "web03.a01.ams1.example web04.a01.ams1.example");
    await page.getByRole("button", { name: "Bind" }).click();
    await page.locator("td[data-role=demo-inventory][data-machine='web04.a01.ams1.example'] [data-state]").waitFor({ timeout: 10_000 });
    await page.getByRole("link", { name: "Annealer graph" }).click();
    await page.waitForURL(/\/annealer/);
    await mark(page);
    const node = page.locator("g.dag-node[data-role=demo-inventory]");
    await node.first().waitFor({ timeout: 15_000 });
    await gql(page, `mutation { commitDeployment(id: "${decodeURIComponent(new URL(page.url()).searchParams.get("deployment"))}") { errors { message } } }`).catch(async () => {
      // fall back to the console's own button
    });
    for (const s of await node.all()) await s.and(page.locator("[data-state=ACTIVE]")).waitFor({ timeout: 30_000 });
    await notReloaded(page);
  },

  // A deployment bigger than one drawing: 120 generated machines with the 4-role crowbar chain each
  // (480 node-roles) on a server of its own (the demo's machine counts stay what the other tests
  // expect). The view pages by machines (100 a page: 400 node-roles, more than one node-role
  // request may ask for under the server's cost limit) and moves between pages by cursor.
  async annealerPages(page) {
    const big = new Server(bin, { port: await freePort(), fixtures: "" });
    try {
      execFileSync(bin, ["fixtures", "generate", "--machines", "120", "--sites", "1", "--racks", "3", "--seed", "3", "--db", join(big.dir, "prybar.db")], { cwd: big.dir, stdio: "ignore" });
      big.addUser("admin", "admin");
      await big.start();
      const token = big.createToken("admin", "e2e-pages");
      const api = async (query) => {
        const r = await (await fetch(big.url + "/graphql", { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` }, body: JSON.stringify({ query }) })).json();
        if (r.errors) throw new Error(JSON.stringify(r.errors));
        return r.data;
      };
      const ms = (await api(`{ machines(first: 200) { edges { node { id } } } }`)).machines.edges.map((e) => e.node.id);
      assert(ms.length === 120, `${ms.length} machines generated`);
      const dep = (await api(`mutation { createDeployment(name: "paged") { deployment { id } errors { message } } }`)).createDeployment.deployment.id;
      // Each role of the chain in order, so every machine gets its own chain; 50 aliases a request.
      for (const role of ["provisioner-base", "network", "os-install", "ready"]) {
        for (let i = 0; i < ms.length; i += 50) {
          const q = ms.slice(i, i + 50).map((m, j) => `b${j}: bindRole(machineID: "${m}", role: "${role}", deploymentID: "${dep}") { errors { message } }`);
          const r = await api(`mutation { ${q.join(" ")} }`);
          const errs = Object.values(r).flatMap((p) => p.errors);
          assert(errs.length === 0, `bind ${role}: ${JSON.stringify(errs)}`);
        }
      }
      // Another host name for the same server: its own cookie jar, so the demo server's session stays.
      const base = big.url.replace("127.0.0.1", "localhost");
      const graphRequests = [];
      page.on("request", (r) => { if (r.postData()?.includes("query NodeRoleGraph")) graphRequests.push(r); });
      const graphErrors = [];
      page.on("response", async (r) => {
        if (!r.request().postData()?.includes("query NodeRoleGraph")) return;
        const body = await r.json().catch(() => null);
        if (body?.errors) graphErrors.push(JSON.stringify(body.errors));
      });
      await open(page, `${base}/annealer?deployment=${encodeURIComponent(dep)}&per=100`);
      const count = page.locator("[data-testid=graph-count]");
      const nodesNow = () => page.evaluate(() => [...document.querySelectorAll("g.dag-node")].map((g) => g.getAttribute("data-noderole")));
      const drawn = async (n) => {
        await count.filter({ hasText: new RegExp(`^${n} node-roles`) }).waitFor({ timeout: 30_000 });
        await page.waitForFunction((n) => document.querySelectorAll("g.dag-node").length === n, n, { timeout: 30_000 });
        return nodesNow();
      };
      const first = await drawn(400);
      assert(graphErrors.length === 0, `graph query refused: ${graphErrors.join("; ")}`);
      assert(graphRequests.length >= 2, `400 node-roles came in ${graphRequests.length} request(s), want 2 pages of 250`);
      await page.locator("[data-testid=page-of]", { hasText: "page 1 of 2" }).waitFor();
      await page.locator("[data-testid=pager]", { hasText: "machines 1–100 of 120" }).waitFor();
      // Every machine's chain is drawn: 3 links per machine.
      const links = await page.locator("svg.dag path[marker-end]").count();
      assert(links === 300, `${links} links drawn, want 300`);
      assert(await page.getByRole("link", { name: "Previous" }).count() === 0, "Previous offered on the first page");
      await mark(page);

      await page.getByRole("link", { name: "Next" }).click();
      await page.locator("[data-testid=page-of]", { hasText: "page 2 of 2" }).waitFor({ timeout: 15_000 });
      const second = await drawn(80);
      assert(second.every((id) => !first.includes(id)), "page 2 repeats node-roles of page 1");
      assert(new Set([...first, ...second]).size === 480, "the two pages do not cover the deployment");
      assert(await page.getByRole("link", { name: "Next" }).count() === 0, "Next offered on the last page");

      await page.getByRole("link", { name: "Previous" }).click();
      await page.locator("[data-testid=page-of]", { hasText: "page 1 of 2" }).waitFor({ timeout: 15_000 });
      const back = await drawn(400);
      assert(back.slice().sort().join() === first.slice().sort().join(), "Previous did not return to the first page");

      await page.getByLabel("machines per page").selectOption("10");
      await page.locator("[data-testid=page-of]", { hasText: "page 1 of 12" }).waitFor({ timeout: 15_000 });
      await drawn(40);
      assert(graphErrors.length === 0, `graph query refused: ${graphErrors.join("; ")}`);
      await notReloaded(page);

      // One machine's graph has no pager: its chain, whole.
      await page.goto(`${base}/annealer?machine=${encodeURIComponent(ms[119])}`);
      await drawn(4);
      assert(await page.locator("[data-testid=pager]").count() === 0, "a machine's graph offers machine pages");
      assert(await page.locator("svg.dag path[marker-end]").count() === 3, "a machine's chain is not linked");
    } finally {
      await big.stop();
      big.cleanup();
    }
  },

  async eventsSurviveRestart(page) {
    await open(page, U + "/events");
    await page.getByRole("heading", { name: "Events" }).waitFor();
    const m = (await gql(page, `{ machine(name: "db01.a01.ams1.example") { id } }`)).machine.id;
    const touch = async (n) => { for (let i = 0; i < n; i++) await gql(page, `mutation($id: ID!, $v: String!) { updateMachine(id: $id, input: {model: $v}) { errors { message } } }`, { id: m, v: "m" + Date.now() + i }); };
    await touch(3);
    await mark(page);
    await server.stop();
    await page.locator("[data-testid=link]", { hasText: "reconnecting" }).waitFor({ timeout: 10_000 });
    await server.start();
    await touch(3);
    await page.locator("[data-testid=link]", { hasText: "live" }).waitFor({ timeout: 20_000 });
    const last = (await gql(page, `{ events(after: 0, first: 1, filter: {machineIDs: ["${m}"]}) { lastSeq } }`));
    void last;
    // The newest seq the server has; the feed (no filter) must hold every seq down from it, once.
    const newest = await page.evaluate(() => window.__prybar.hub.lastSeq);
    await page.locator(`.event[data-seq="${newest}"]`).waitFor({ timeout: 10_000 });
    const seqs = await page.evaluate(() => [...document.querySelectorAll(".event[data-seq]")].map((e) => Number(e.getAttribute("data-seq"))));
    assert(seqs.length >= 10, `only ${seqs.length} rows`);
    for (let i = 1; i < seqs.length; i++) assert(seqs[i] === seqs[i - 1] - 1, `feed not contiguous at ${seqs[i - 1]} → ${seqs[i]}: ${seqs.join(",")}`);
    await notReloaded(page);
    // Pause holds, resume flushes.
    await page.getByRole("button", { name: "Pause" }).click();
    await touch(2);
    await page.getByRole("button", { name: /Resume \(2 held\)/ }).waitFor({ timeout: 10_000 });
    await page.getByRole("button", { name: /Resume/ }).click();
    await page.locator(`.event[data-seq="${newest + 2}"]`).waitFor({ timeout: 10_000 });
  },

  async reconnectingIndicator(page) {
    await open(page, U + "/");
    await page.evaluate(() => { window.__states = []; window.__prybar.hub.onState((s) => window.__states.push(s)); window.__prybar.hub.drop(); });
    await page.waitForFunction(() => window.__states.includes("reconnecting") && window.__states.at(-1) === "connected", null, { timeout: 15_000 });
    await page.locator("[data-testid=link]", { hasText: "live" }).waitFor();
  },

  async notFound(page) {
    await open(page, U + "/no/such/page");
    await page.getByRole("heading", { name: "Not found" }).waitFor();
    await open(page, U + "/racks/999999");
    await page.getByRole("heading", { name: /not found/i }).waitFor();
  },

  // Access control (docs/security.md): these sign out and in as other users, so they run last.
  async anonymousSeesSignIn(page) {
    await ctx.clearCookies();
    const answered = [];
    page.on("response", (r) => { if (new URL(r.url()).pathname === "/graphql") answered.push(r); });
    await page.goto(U + "/");
    await page.locator("form:has(input[name=password])").waitFor({ timeout: 15_000 });
    await page.getByRole("button", { name: "Sign in" }).waitFor();
    // Nothing but the form: no shell, no navigation, no inventory.
    assert(await page.locator("header.top").count() === 0, "the console shell is shown to an anonymous visitor");
    const text = await page.locator("body").innerText();
    for (const leak of ["ams1", "fleet-sim", "web01", "Data centre"]) assert(!text.includes(leak), `the sign-in page shows ${leak}`);
    // A client route deep-links to the same form.
    await page.goto(U + "/machines/1");
    await page.locator("form:has(input[name=password])").waitFor({ timeout: 15_000 });
    assert(await page.locator("header.top").count() === 0, "a deep link shows the shell anonymously");
    // The API itself refuses the anonymous page, whatever the console shows.
    const r = await page.evaluate(async () => (await fetch("/graphql", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ query: "{ sites { totalCount } }" }) })).json());
    assert(!r.data?.sites && r.errors?.[0]?.extensions?.code === "UNAUTHENTICATED", `anonymous query answered ${JSON.stringify(r)}`);
    for (const x of answered) {
      const b = await x.json().catch(() => null);
      assert(!b?.data || Object.values(b.data).every((v) => v === null), `the anonymous console received data: ${JSON.stringify(b).slice(0, 200)}`);
    }
    // A wrong password is said so, and nothing opens.
    await page.fill("input[name=name]", "admin");
    await page.fill("input[name=password]", "wrong-password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("alert").filter({ hasText: /wrong name or password/ }).waitFor({ timeout: 10_000 });
    assert(await page.locator("header.top").count() === 0, "a wrong password opened the console");
  },

  async viewerMayOnlyLook(page) {
    await ctx.clearCookies();
    const m = await (async () => {
      await open(page, U + "/", "viewer");
      return (await gql(page, `{ machines(first: 1, where: {hasRackWith: [{hasSiteWith: [{name: "fleet-sim"}]}]}) { edges { node { id name } } } }`)).machines.edges[0].node;
    })();
    await page.locator("[data-testid=whoami]", { hasText: "viewer (VIEWER)" }).waitFor();
    // The machine page: every power and boot button is there but disabled, saying why.
    await page.goto(U + "/machines/" + encodeURIComponent(m.id));
    await page.getByRole("heading", { name: new RegExp(m.name.replace(/\./g, "\\.")) }).waitFor();
    for (const name of ["Power on", "Power off", "Power cycle"]) {
      const b = page.getByRole("button", { name, exact: true });
      assert(await b.count() === 1, `no ${name} button`);
      assert(await b.isDisabled(), `${name} is enabled for a viewer`);
      assert(await b.getAttribute("title") === "needs OPERATOR", `${name} does not say why it is disabled`);
    }
    // Deployments: bind, commit and propose disabled, and the form's fields too.
    await page.goto(U + "/deployments");
    await page.getByRole("heading", { name: /^system/ }).waitFor();
    for (const name of ["Bind", "Commit", "Propose"]) assert(await page.getByRole("button", { name, exact: true }).first().isDisabled(), `${name} is enabled for a viewer`);
    assert(await page.locator("input[name=role]").isDisabled(), "the bind form takes input from a viewer");
    // Annealer: retries disabled.
    await page.goto(U + "/annealer");
    await page.getByRole("button", { name: "Retry all failed" }).waitFor();
    assert(await page.getByRole("button", { name: "Retry all failed" }).isDisabled(), "Retry all failed is enabled for a viewer");
    // The server refuses the same mutations from the viewer's session (with its CSRF token), and
    // nothing changed.
    const forbidden = async (q, v) => {
      const e = await gql(page, q, v).then(() => null, (x) => x);
      assert(e && /FORBIDDEN/.test(e.message), `viewer's ${q.slice(0, 40)}… was not refused: ${e?.message ?? "it succeeded"}`);
    };
    await forbidden(`mutation($id: ID!) { powerAction(machineID: $id, action: CYCLE) { operation { id } } }`, { id: m.id });
    await forbidden(`mutation($id: ID!) { bindRole(machineID: $id, role: "demo-inventory") { errors { message } } }`, { id: m.id });
    await forbidden(`mutation($id: ID!) { updateMachine(id: $id, input: {alive: false}) { errors { message } } }`, { id: m.id });
    const after = (await gql(page, `query($id: ID!) { machines(where: {id: $id}) { edges { node { alive } } } }`, { id: m.id })).machines.edges[0].node;
    assert(after.alive === true, "the refused updateMachine changed the machine");
    await ctx.clearCookies();
  },

  async signOut(page) {
    await ctx.clearCookies();
    await open(page, U + "/events", "operator");
    await page.locator("[data-testid=whoami]", { hasText: "operator (OPERATOR)" }).waitFor();
    const [cookie] = (await ctx.cookies(U)).filter((c) => c.name === "prybar_session");
    assert(cookie?.httpOnly, "no HttpOnly session cookie after sign-in");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.locator("form:has(input[name=password])").waitFor({ timeout: 10_000 });
    assert(await page.locator("header.top").count() === 0, "the shell stays after sign-out");
    assert((await ctx.cookies(U)).every((c) => c.name !== "prybar_session"), "the session cookie stays after sign-out");
    // The session is over on the server too: its old cookie (replayed, with its CSRF token) is refused.
    const s = await fetch(U + "/auth/session", { headers: { Cookie: `prybar_session=${cookie.value}` } });
    assert(s.status === 401, `the signed-out session still answers /auth/session with ${s.status}`);
    const r = await (await fetch(U + "/graphql", { method: "POST", headers: { "Content-Type": "application/json", Cookie: `prybar_session=${cookie.value}` }, body: JSON.stringify({ query: "{ whoami { name } }" }) })).json();
    assert(!r.data?.whoami, `the signed-out session still reads: ${JSON.stringify(r)}`);
    // A reload stays signed out; signing in again works.
    await page.reload();
    await page.locator("form:has(input[name=password])").waitFor({ timeout: 10_000 });
    await open(page, U + "/", "admin");
    await page.locator("[data-testid=whoami]", { hasText: "admin (ADMIN)" }).waitFor();
  },

  async sessionEndedElsewhere(page) {
    await ctx.clearCookies();
    await open(page, U + "/", "operator");
    await mark(page);
    // Signed out in another tab: the cookie stays in this one but the server no longer knows it.
    await page.evaluate(async () => {
      const s = await (await fetch("/auth/session")).json();
      await fetch("/auth/logout", { method: "POST", headers: { "X-CSRF-Token": s.csrfToken } });
    });
    // The next request (or the WebSocket, which the server closes) finds out; a click makes sure.
    await page.getByRole("link", { name: "Deployments" }).click({ timeout: 2_000 }).catch(() => {});
    await page.locator("form:has(input[name=password])").waitFor({ timeout: 15_000 });
    await page.getByRole("alert").filter({ hasText: /session has ended/ }).waitFor();
    await notReloaded(page);
    await open(page, U + "/", "admin");
  },

  async graphiql(page) {
    // GraphiQL uses the console's session: signed out it only says so.
    await ctx.clearCookies();
    await page.goto(U + "/graphiql");
    await page.getByRole("link", { name: "the console" }).waitFor({ timeout: 20_000 });
    await open(page, U + "/");
    await page.goto(U + "/graphiql");
    await page.locator(".graphiql-container").waitFor({ timeout: 20_000 });
  },
};

let failed = 1;
try {
  failed = await runTests(ctx, tests, process.env.E2E_ONLY ? new RegExp(process.env.E2E_ONLY) : undefined);
} finally {
  await close();
  await fleet.stop();
  await server.stop();
  if (failed) console.log("server log tail:\n" + server.log.slice(-30).join(""));
  server.cleanup();
}
console.log(failed ? `FAIL: ${failed} browser test(s)` : "ok: browser tests");
process.exit(failed ? 1 : 0);
