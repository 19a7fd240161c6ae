// Screenshots of every view for docs/console.md (demo fixtures + a small simulated fleet).
// Run: node e2e/screens.mjs (writes ../docs/console/*.png).
import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import { Server, Fleet, buildAll, freePort, launch, need, open, gql, chromiumPath } from "./harness.mjs";

if (!need(chromiumPath)) process.exit(0);
const dir = resolve(import.meta.dirname, "..", "..", "docs", "console");
mkdirSync(dir, { recursive: true });
const bin = buildAll();
const server = new Server(bin, { port: await freePort() });
await server.start();
const fleet = new Fleet(bin, server, 6);
await fleet.start();
const { ctx, close } = await launch();
const page = await ctx.newPage();
const U = server.url;
const shot = async (name) => { await page.waitForTimeout(400); await page.screenshot({ path: resolve(dir, name + ".png") }); console.log("wrote", name); };
try {
  await open(page, U + "/");
  const ids = await gql(page, `{ r: racks(first: 1, orderBy: {field: NAME}) { edges { node { id site { id } } } } m: machine(name: "web01.a01.ams1.example") { id } d: deployments(where: {name: "system"}) { edges { node { id } } } }`);
  const rack = ids.r.edges[0].node;
  await gql(page, `mutation($m: ID!) { bindRole(machineID: $m, role: "demo-ready") { errors { message } } }`, { m: ids.m.id });
  await gql(page, `mutation($d: ID!) { commitDeployment(id: $d) { errors { message } } }`, { d: ids.d.edges[0].node.id });
  await page.fill("input[name=q]", "web0");
  await page.locator(".results li").first().waitFor();
  await shot("data-centre");
  await page.goto(U + "/racks/" + encodeURIComponent(rack.id)); await page.locator("g.machine").first().waitFor();
  await page.locator("g.machine").first().hover();
  await shot("rack");
  await page.goto(U + `/sites/${encodeURIComponent(rack.site.id)}/row`); await page.locator("[data-testid=rack-row] figure").first().waitFor();
  await shot("rack-row");
  await page.goto(U + "/machines/" + encodeURIComponent(ids.m.id)); await page.getByRole("heading", { name: /web01/ }).waitFor();
  await page.getByRole("button", { name: "Power cycle" }).click();
  await shot("machine-confirm");
  await page.keyboard.press("Escape");
  await shot("machine");
  await page.goto(U + "/deployments"); await page.locator("table.matrix td").first().waitFor();
  await page.fill("input[name=role]", "no-such-role"); await page.fill("input[name=machines]", "web02.a01.ams1.example");
  await page.getByRole("button", { name: "Bind" }).click(); await page.locator(".field-error").first().waitFor();
  await shot("deployments");
  await page.goto(U + "/annealer"); await page.locator("g.dag-node").first().waitFor({ timeout: 20_000 });
  await page.locator("g.dag-node").first().click();
  await shot("annealer");
  await page.goto(U + "/events"); await page.locator(".event").first().waitFor();
  await shot("events");
  await page.goto(U + "/no/such/page"); await page.getByRole("heading", { name: "Not found" }).waitFor();
  await shot("not-found");
  await page.goto(U + "/"); await page.locator("[data-testid=link]", { hasText: "live" }).waitFor();
  await server.stop();
  await page.locator("[data-testid=link]", { hasText: "reconnecting" }).waitFor();
  await shot("reconnecting");
  await server.start();
  await page.goto(U + "/graphiql"); await page.locator(".graphiql-container").waitFor({ timeout: 30_000 });
  await shot("graphiql");
} finally {
  await close(); await fleet.stop(); await server.stop(); server.cleanup();
}
