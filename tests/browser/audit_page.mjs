// The audit page in a real browser (Debian's chromium, driven by playwright-core; no
// browser is downloaded). Run after a real scenario, against the running component:
//
//   AUDIT_URL=http://127.0.0.1:PORT AUDIT_TOKEN=... AUDIT_ACTED_FLAG=EnablePromotion \
//   AUDIT_REVERTED_FLAG=EnableItemsCache AUDIT_UNLEASH_URL=http://127.0.0.1:4242 \
//   AUDIT_SCREENSHOT=demo/out/audit.png node tests/browser/audit_page.mjs
//
// Asserts on the rendered DOM: a group for the occurrence whose "acted" sentence names the
// flag, a "reverted" one after its resolve, the link to the flag in Unleash, the filters
// round-tripping through the URL, no horizontal scrolling at 1280 px, no console error (a
// CSP violation would be one). Saves a full-page screenshot. Exits non-zero on any failure.
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { chromium } from "playwright-core";

const need = (name) => {
  const v = process.env[name];
  if (!v) {
    console.error(`audit_page: ${name} is not set`);
    process.exit(2);
  }
  return v;
};
const base = need("AUDIT_URL").replace(/\/$/, "");
const token = need("AUDIT_TOKEN");
const acted = need("AUDIT_ACTED_FLAG");
const reverted = need("AUDIT_REVERTED_FLAG");
const unleash = need("AUDIT_UNLEASH_URL").replace(/\/$/, "");
const shot = need("AUDIT_SCREENSHOT");
const project = process.env.AUDIT_UNLEASH_PROJECT || "default";
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

let passed = 0;
let failed = 0;
function check(name, ok, detail = "") {
  if (ok) passed++;
  else failed++;
  console.log(`audit_page: ${ok ? "ok  " : "FAIL"} ${name}${ok || !detail ? "" : ": " + detail}`);
}

const profile = mkdtempSync(join(tmpdir(), "remediator-chromium-"));
let context;
try {
  // A fresh profile each run (playwright passes it as --user-data-dir).
  context = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    viewport: { width: 1280, height: 900 },
    extraHTTPHeaders: { Authorization: `Bearer ${token}` },
  });

  const page = context.pages()[0] || (await context.newPage());
  const problems = [];
  page.on("console", (m) => m.type() === "error" && problems.push(m.text()));
  page.on("pageerror", (e) => problems.push(String(e)));
  // Only this page's own URL loads (the page has no external asset); anything else is a bug.
  page.on("request", (r) => {
    if (!r.url().startsWith(base)) problems.push(`unexpected request ${r.url()}`);
  });

  const resp = await page.goto(`${base}/audit`);
  check("GET /audit answers 200 HTML", resp.status() === 200 &&
    (resp.headers()["content-type"] || "").startsWith("text/html"), `${resp.status()}`);
  check("the page sends its CSP",
    (resp.headers()["content-security-policy"] || "").startsWith("default-src 'none'"));

  // The acted occurrence: one group, its sentence names the flag.
  const actedGroups = page.locator("section.group").filter({
    has: page.locator(`li[data-event="acted"] .sentence`, { hasText: `turned ${acted} off` }),
  });
  const nActed = await actedGroups.count();
  check(`one group with an "acted" sentence turning ${acted} off`, nActed === 1, `${nActed} groups`);
  if (nActed === 1) {
    const text = await actedGroups.first().locator(`li[data-event="acted"] .sentence`).first().innerText();
    check("the acted sentence carries its reason", /: \S/.test(text), text);
    const href = await actedGroups.first().locator("a.unleash").first().getAttribute("href");
    const want = `${unleash}/projects/${project}/features/${acted}`;
    check("the Unleash link goes to the flag", href === want, `${href} != ${want}`);
    const bookkeeping = await actedGroups.first().locator(`li[data-event="received"], li[data-event="matched"]`).count();
    check("received/matched are folded, not rows", bookkeeping === 0, `${bookkeeping} rows`);
    const gen = await actedGroups.first().locator("a.generator").count();
    check("the alert's source (generatorURL) is linked", gen === 1, `${gen} links`);
  }

  // The reverted occurrence: acted then reverted in the same group, in that order.
  const revGroups = page.locator("section.group").filter({
    has: page.locator(`li[data-event="reverted"] .sentence`, { hasText: `reverted: ${reverted} back` }),
  });
  const nRev = await revGroups.count();
  check(`one group with a "reverted" sentence for ${reverted}`, nRev === 1, `${nRev} groups`);
  if (nRev === 1) {
    const events = await revGroups.first().locator("li.step").evaluateAll(
      (els) => els.map((e) => e.dataset.event));
    const a = events.indexOf("acted");
    const r = events.indexOf("reverted");
    check("that group reads acted, then reverted", a >= 0 && r > a, events.join(","));
    check("the group's state is reverted",
      (await revGroups.first().getAttribute("data-state")) === "reverted");
  }

  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  check("no horizontal scrolling at 1280 px", width <= 1280, `scrollWidth ${width}`);

  mkdirSync(dirname(shot), { recursive: true });
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`audit_page: screenshot ${shot}`);

  // Filters: a plain GET form; the choice stays in the URL and in the form.
  await page.fill('input[name="flag"]', acted);
  await page.selectOption('select[name="outcome"]', "acted");
  await Promise.all([page.waitForURL(/outcome=acted/), page.click('button[type="submit"]')]);
  const url = new URL(page.url());
  check("the filter is in the URL",
    url.pathname === "/audit" && url.searchParams.get("flag") === acted &&
    url.searchParams.get("outcome") === "acted", page.url());
  await page.reload();
  check("the form keeps the flag after a reload",
    (await page.inputValue('input[name="flag"]')) === acted);
  check("the form keeps the outcome after a reload",
    (await page.inputValue('select[name="outcome"]')) === "acted");
  const shown = await page.locator("li.step").evaluateAll((els) => els.map((e) => e.dataset.event));
  check("only acted entries of that flag are shown",
    shown.length >= 1 && shown.every((e) => e === "acted"), shown.join(","));
  const other = await page.locator(`li.step .sentence`, { hasText: reverted }).count();
  check(`${reverted} is filtered out`, other === 0, `${other} rows`);
  const w2 = await page.evaluate(() => document.documentElement.scrollWidth);
  check("no horizontal scrolling when filtered", w2 <= 1280, `scrollWidth ${w2}`);

  check("no console error or unexpected request", problems.length === 0, problems.join(" | "));
} catch (e) {
  check("the browser run completed", false, String(e && e.stack || e));
} finally {
  if (context) await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`audit_page: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
