// `make bench-web`: the console's size and speed. Prints
//   - initial JavaScript (gzip -9) of index.html's scripts and modulepreloads;
//   - with 10,000 generated machines: time from navigation to interactive for the data-centre,
//     rack and 100-rack row views (Performance API in headless chromium; longest task too),
//     both as a cold page load and as an in-app navigation;
//   - 100 machine state events per second for 5 s on an open rack view: frames and long frames.
// Timings depend on the machine and its load; the byte counts do not.
import { readFileSync, existsSync, mkdirSync } from "node:fs";
import { gzipSync } from "node:zlib";
import { join, resolve } from "node:path";
import { execFileSync } from "node:child_process";
import { Server, buildAll, freePort, launch, need, open, chromiumPath, out } from "./harness.mjs";

const dist = resolve(import.meta.dirname, "..", "dist", "app");
if (!need(chromiumPath)) process.exit(0);
const bin = buildAll();

// 1. Initial JS.
const html = readFileSync(join(dist, "index.html"), "utf8");
const files = [...html.matchAll(/(?:src|href)="\/(assets\/[^"]+\.js)"/g)].map((m) => m[1]);
let gz = 0, raw = 0;
for (const f of files) { const b = readFileSync(join(dist, f)); raw += b.length; gz += gzipSync(b, { level: 9 }).length; }
console.log(`initial-js: ${files.length} files, ${(raw / 1024).toFixed(1)} KB raw, ${(gz / 1024).toFixed(1)} KB gzip (budget 150 KB)`);

// 2. 10,000 machines.
// The generated fleet is loaded once into e2e/out/bench-10k (minutes on a busy machine) and reused.
const benchDir = join(out, "bench-10k");
const fresh = !existsSync(join(benchDir, "prybar.db"));
mkdirSync(benchDir, { recursive: true });
// The load generator below writes 100 times a second with one token, above the per-identity rate
// limit (docs/security.md) that the console itself stays well under: the limit is off here.
const server = new Server(bin, { port: await freePort(), fixtures: "", dir: benchDir, args: ["--rate-limit", "0"] });
let t0 = Date.now();
if (fresh) {
  execFileSync(bin, ["fixtures", "generate", "--machines", "10000", "--sites", "1", "--racks", "250", "--seed", "7", "--db", join(benchDir, "prybar.db")], { cwd: benchDir, stdio: "inherit" });
  console.log(`fixture: 10,000 machines generated and loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}
// The generated fixture has no users: the console signs in as this one (kept from an earlier run).
try { server.addUser("admin", "admin"); } catch (e) { if (!/exists|UNIQUE|duplicate/i.test(String(e.stderr ?? e))) throw e; }
await server.start(600_000);
const token = server.createToken("admin", "bench-web");
const api = async (query, variables = {}) => (await (await fetch(server.url + "/graphql", { method: "POST", headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` }, body: JSON.stringify({ query, variables }) })).json()).data;
const site = (await api(`{ sites(first: 1) { edges { node { id name racks(first: 1, orderBy: {field: NAME}) { totalCount edges { node { id name } } } } } } machines { totalCount } }`));
const s = site.sites.edges[0].node;
const rack = s.racks.edges[0].node;
console.log(`fleet: ${site.machines.totalCount} machines, ${s.racks.totalCount} racks in ${s.name}`);

const { ctx, close } = await launch();
await ctx.addInitScript(() => {
  window.__long = [];
  new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push({ start: e.startTime, dur: e.duration }); }).observe({ type: "longtask", buffered: true });
});
const views = [
  ["data-centre", "/", ".heatmap .cell"],
  ["rack", `/racks/${encodeURIComponent(rack.id)}`, "svg[data-face=front] g.machine"],
  ["row-100-racks", `/sites/${encodeURIComponent(s.id)}/row`, "[data-testid=rack-row] figure:nth-child(100) path[data-state]"],
];
const page = await ctx.newPage();
await open(page, server.url + "/events"); // warm: session, chromium caches
const results = [];
for (const [name, path, sel] of views) {
  if (process.env.BENCH_VIEWS && !new RegExp(process.env.BENCH_VIEWS).test(name)) continue;
  // Cold: a full page load of the route.
  await page.goto(server.url + path);
  await page.locator(sel).first().waitFor({ timeout: 60_000 });
  const cold = await page.evaluate(() => { const t = performance.now(); const l = window.__long; return { t, longest: Math.max(0, ...l.map((x) => x.dur)) }; });
  // In-app: from the events view, history.pushState to the route, until the selector is there.
  await page.goto(server.url + "/events");
  await page.locator("[data-testid=link]", { hasText: "live" }).waitFor();
  const warm = await page.evaluate(async ([path, sel]) => {
    window.__long = [];
    const t0 = performance.now();
    history.pushState(null, "", path);
    dispatchEvent(new PopStateEvent("popstate"));
    for (;;) {
      if (document.querySelector(sel)) break;
      await new Promise((r) => setTimeout(r, 5));
      if (performance.now() - t0 > 60_000) return { t: -1, longest: 0 };
    }
    // Interactive: a task queued now runs once the main thread is free.
    await new Promise((r) => setTimeout(r, 0));
    return { t: performance.now() - t0, longest: Math.max(0, ...window.__long.map((x) => x.dur)) };
  }, [path, sel]);
  const elements = await page.evaluate(() => document.querySelectorAll("svg *").length);
  results.push({ name, coldMs: cold.t, coldLongestMs: cold.longest, navMs: warm.t, navLongestMs: warm.longest, svgElements: elements });
  console.log(`view ${name}: cold load ${cold.t.toFixed(0)} ms (longest task ${cold.longest.toFixed(0)} ms), in-app ${warm.t.toFixed(0)} ms (longest task ${warm.longest.toFixed(0)} ms), svg elements ${elements}`);
}

// 3. 100 state events per second on the open rack view.
if (process.env.BENCH_VIEWS) { await close(); await server.stop(); process.exit(0); }
await page.goto(server.url + `/racks/${encodeURIComponent(rack.id)}`);
await page.locator("svg[data-face=front] g.machine").first().waitFor();
await page.locator("[data-testid=link]", { hasText: "live" }).waitFor();
const ms = (await api(`query($r: ID!) { machines(first: 40, where: {rackID: $r}) { edges { node { id } } } }`, { r: rack.id })).machines.edges.map((e) => e.node.id);
await page.evaluate(() => {
  window.__frames = []; window.__long = [];
  let last = performance.now();
  const tick = (t) => { window.__frames.push(t - last); last = t; if (!window.__stop) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
});
const states = ["READY", "BUSY", "ERROR", "DISCOVERED"];
let sent = 0, failed = 0;
t0 = Date.now();
for (let sec = 0; sec < 5; sec++) {
  const start = Date.now();
  const batch = [];
  for (let i = 0; i < 100; i++) {
    const id = ms[(sec * 100 + i) % ms.length];
    batch.push(api(`mutation($id: ID!, $a: Boolean!) { updateMachine(id: $id, input: {alive: $a}) { errors { message } } }`, { id, a: (sec * 100 + i) % 2 === 0 })
      .then(() => sent++, () => failed++));
    await new Promise((r) => setTimeout(r, Math.max(0, start + (i + 1) * 10 - Date.now())));
  }
  await Promise.all(batch);
}
const wall = (Date.now() - t0) / 1000;
await page.waitForTimeout(1000);
const fr = await page.evaluate(() => { window.__stop = true; return { frames: window.__frames, long: window.__long }; });
const over50 = fr.frames.filter((d) => d > 50).length;
const worst = Math.max(...fr.frames);
void states;
console.log(`events: ${sent} updates in ${wall.toFixed(1)} s (${(sent / wall).toFixed(0)}/s, ${failed} failed); ${fr.frames.length} frames, ${over50} longer than 50 ms, worst frame ${worst.toFixed(0)} ms, longest task ${Math.max(0, ...fr.long.map((x) => x.dur)).toFixed(0)} ms`);
const applied = await page.evaluate(() => window.__prybar.hub.lastSeq);
console.log(`events: hub at seq ${applied}`);

await close();
await server.stop();
