// The gallery and the playground of `edge serve` in a real browser: the system's headless
// Chromium driven by puppeteer-core (which downloads no browser). Each test starts the
// release `edge` binary on a free port over a temporary store that it seeds with the
// sample masters, changes the playground's parameters as a person would, and checks the
// image the browser decoded (natural size), the format, bytes and Server-Timing shown,
// with no console error, no failed request and nothing loaded from elsewhere.
// Screenshots are saved under $IMGEDGE_BROWSER_ARTIFACTS (default:
// $CARGO_TARGET_DIR/browser-artifacts); the path is printed.
//
//   IMGEDGE_EDGE_BIN   the edge binary (default $CARGO_TARGET_DIR/release/edge)
//   IMGEDGE_CHROMIUM   the browser (default: chromium on PATH; scripts/tools.sh installs it)

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import puppeteer from "puppeteer-core";

const TARGET_DIR = process.env.CARGO_TARGET_DIR || join(homedir(), ".cache/imgedge/target");
const EDGE_BIN = process.env.IMGEDGE_EDGE_BIN || join(TARGET_DIR, "release/edge");
const ARTIFACTS = process.env.IMGEDGE_BROWSER_ARTIFACTS || join(TARGET_DIR, "browser-artifacts");
const SIGNING_KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

function chromiumPath() {
  if (process.env.IMGEDGE_CHROMIUM) return process.env.IMGEDGE_CHROMIUM;
  try {
    return execFileSync("sh", ["-c", "command -v chromium"], { encoding: "utf8" }).trim();
  } catch {
    throw new Error("no chromium on PATH: run scripts/tools.sh's imgedge_browser (./scripts/test does)");
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** `edge serve` over a fresh temporary directory (seeded: it is empty, no --no-seed). */
async function startEdge(extraArgs = []) {
  assert.ok(existsSync(EDGE_BIN), `${EDGE_BIN} is missing: cargo build --release -p edge --bin edge`);
  const dir = mkdtempSync(join(tmpdir(), "imgedge-browser-"));
  const store = join(dir, "bucket");
  const args = extraArgs.map((a) => a.replace("{dir}", dir));
  const port = await freePort();
  const child = spawn(EDGE_BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--store", store, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, IMGEDGE_LOG_FORMAT: "json", RUST_LOG: "warn" },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d) => (stdout += d));
  child.stderr.on("data", (d) => (stderr += d));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`edge serve exited ${child.exitCode}: ${stderr}`);
    try {
      if ((await fetch(`${base}/`)).ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`edge serve did not start: ${stdout}${stderr}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const firstMaster = stdout.match(/\/(outputs\/\d{4}-\d{2}-\d{2}\/image_001\.png)\n/)?.[1];
  assert.ok(firstMaster, `no master in the startup lines: ${stdout}`);
  return {
    base,
    dir,
    firstMaster,
    log: () => stderr,
    stop() {
      child.kill("SIGTERM");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Everything that went wrong on `page`: console errors, page errors, failed requests,
 * answers ≥ 400 and requests that left the emulator's origin. */
function watch(page, base) {
  const problems = [];
  const responses = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()} @ ${m.location()?.url ?? ""}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) =>
    problems.push(`request failed: ${r.method()} ${r.resourceType()} ${r.url()} ${r.failure()?.errorText}`),
  );
  page.on("request", (r) => {
    if (!r.url().startsWith(base) && !r.url().startsWith("data:")) problems.push(`left the origin: ${r.url()}`);
  });
  page.on("response", (r) => {
    responses.push({ url: r.url(), status: r.status() });
    if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`);
  });
  return { problems, responses };
}

async function launch() {
  const args = ["--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"];
  // Chromium's sandbox cannot start as root.
  if (process.getuid?.() === 0) args.push("--no-sandbox");
  return puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    args,
    defaultViewport: { width: 1280, height: 900 },
  });
}

async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, name);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot: ${path}`);
  return path;
}

/** Replace an input's text by typing over it, as a person would (the first key replaces
 * the selection, so the field is never empty on the way). */
async function typeInto(page, selector, text) {
  await page.focus(selector);
  await page.keyboard.down("Control");
  await page.keyboard.press("KeyA");
  await page.keyboard.up("Control");
  if (text === "") await page.keyboard.press("Backspace");
  else await page.keyboard.type(text);
}

/** Wait until the playground shows the variant `url` (path?query, without sig). */
async function shown(page, url, { signed = false } = {}) {
  await page.waitForFunction(
    (want, signed) => {
      const { state, url } = document.body.dataset;
      if (state !== "ready") return false;
      return signed ? url.startsWith(`${want}&sig=`) : url === want;
    },
    { timeout: 60_000 },
    url,
    signed,
  );
  return page.evaluate(() => {
    const img = document.getElementById("img");
    const text = (id) => document.getElementById(id).textContent;
    return {
      url: document.body.dataset.url,
      natural: [img.naturalWidth, img.naturalHeight],
      dims: text("dims"),
      type: text("type"),
      bytes: Number(document.getElementById("bytes").dataset.bytes),
      bytesText: text("bytes"),
      xCache: text("x-cache"),
      vary: text("vary"),
      canonical: text("canonical"),
      shownUrl: text("url"),
      variantKey: text("variant-key"),
      timing: [...document.querySelectorAll("#timing tr")].map((r) => r.dataset.name),
      timingNote: text("timing-note"),
    };
  });
}

describe("edge serve in headless Chromium", () => {
  let browser;
  before(async () => {
    browser = await launch();
    console.log(`browser: ${await browser.version()}; artifacts: ${ARTIFACTS}`);
  });
  after(async () => {
    await browser?.close();
  });

  test("gallery → playground: parameters change the variant; errors, hits and refetches show", async () => {
    const edge = await startEdge();
    const page = await browser.newPage();
    const { problems, responses } = watch(page, edge.base);
    try {
      // The gallery: six seeded masters, thumbnails decoded at 256 px, playground links.
      await page.goto(`${edge.base}/`, { waitUntil: "networkidle0" });
      const thumbs = await page.$$eval("figure img", (imgs) =>
        imgs.filter((i) => i.complete && i.naturalWidth > 0).map((i) => i.naturalWidth),
      );
      assert.ok(thumbs.length >= 1, "no thumbnail loaded");
      assert.ok(thumbs.every((w) => w === 256), `thumbnail widths ${thumbs}`);
      assert.equal(await page.$$eval("figure a.playground", (a) => a.length), 6);
      await screenshot(page, "gallery.png");

      // The first figure's playground link preselects its master; no query: the master.
      const key = await page.$eval("figure figcaption", (c) => c.textContent);
      await Promise.all([page.waitForNavigation(), page.click("figure a.playground")]);
      assert.equal(await page.$eval("#master", (s) => s.selectedOptions[0].textContent), key);
      const path = `/${key}`;
      let s = await shown(page, path);
      assert.deepEqual(s.natural, [1024, 1024]);
      assert.equal(s.type, "image/png");
      assert.equal(s.variantKey, "(the master itself, unchanged)");

      // w=300, fmt=webp: a new variant, built by this request (Miss, build stages timed).
      await typeInto(page, "#w", "300");
      await page.select("#fmt", "webp");
      s = await shown(page, `${path}?w=300&fmt=webp`);
      assert.deepEqual(s.natural, [300, 300]);
      assert.equal(s.dims, "300 × 300");
      assert.equal(s.type, "image/webp");
      assert.ok(s.bytes > 100 && s.bytes < 100_000, `bytes ${s.bytes}`);
      assert.match(s.bytesText, /% of the master\)$/);
      assert.equal(s.xCache, "Miss from imgedge");
      // A small variant comes back in the origin's answer: no `read` from the bucket after.
      for (const stage of ["head-master", "get-variant", "get-marker", "get-master", "put-variant", "fetch", "decode", "resize", "encode", "store", "origin"]) {
        assert.ok(s.timing.includes(stage), `Server-Timing lacks ${stage}: ${s.timing}`);
      }
      assert.equal(s.shownUrl, `${edge.base}${path}?w=300&fmt=webp`);
      assert.match(s.variantKey, /^_variants\/v2\/.*\/w=300,fmt=webp\.webp$/);
      await screenshot(page, "playground-webp.png");

      // h=200: cover crops to the box; fit=inside keeps the aspect within it.
      await typeInto(page, "#h", "200");
      s = await shown(page, `${path}?w=300&h=200&fmt=webp`);
      assert.deepEqual(s.natural, [300, 200]);
      await page.select("#fit", "inside");
      s = await shown(page, `${path}?w=300&h=200&fit=inside&fmt=webp`);
      assert.deepEqual(s.natural, [200, 200]);

      // contain on a coloured background: the full box, padded.
      await page.select("#fit", "contain");
      await page.click("#bg-on");
      s = await shown(page, `${path}?w=300&h=200&fit=contain&fmt=webp&bg=1e90ff`);
      assert.deepEqual(s.natural, [300, 200]);
      await page.waitForSelector("#timing tr");
      await screenshot(page, "playground.png");

      // fmt=auto: the URL keeps auto, the browser's Accept picks AVIF, the answer varies.
      await page.select("#fmt", "auto");
      s = await shown(page, `${path}?w=300&h=200&fit=contain&fmt=auto&bg=1e90ff`);
      assert.equal(s.type, "image/avif");
      assert.equal(s.vary, "Accept");
      assert.equal(s.canonical, `${path}?w=300&h=200&fit=contain&fmt=avif&bg=1e90ff`);

      // dpr=2 doubles the pixels; q=50 makes a smaller file.
      await typeInto(page, "#dpr", "2");
      const dprUrl = `${path}?w=300&h=200&fit=contain&fmt=auto&dpr=2&bg=1e90ff`;
      s = await shown(page, dprUrl);
      assert.deepEqual(s.natural, [600, 400]);
      const q80 = s.bytes;
      await typeInto(page, "#q", "50");
      s = await shown(page, `${path}?w=300&h=200&fit=contain&fmt=auto&q=50&dpr=2&bg=1e90ff`);
      assert.ok(s.bytes < q80, `q=50 (${s.bytes} B) not smaller than q=80 (${q80} B)`);
      await typeInto(page, "#q", "");
      await shown(page, dprUrl);

      // A bad value: the URL API's 400 is shown, and nothing else goes wrong.
      const before = problems.length;
      await typeInto(page, "#w", "0");
      await page.waitForFunction(() => document.body.dataset.state === "error", { timeout: 30_000 });
      const error = await page.$eval("#error", (e) => e.textContent);
      assert.match(error, /400 invalid_parameter \(w\)/);
      assert.match(error, /8192/);
      assert.equal(await page.$eval("#url", (e) => e.textContent), "–");
      await screenshot(page, "playground-error.png");
      const expected = problems.splice(before);
      assert.ok(expected.length > 0 && expected.every((p) => p.includes("400")), expected.join("\n"));

      // The same URL again: an edge cache hit, so only the lookup is timed…
      await typeInto(page, "#w", "300");
      s = await shown(page, dprUrl);
      assert.match(s.xCache, /^Hit from imgedge/);
      assert.deepEqual(s.timing, ["edge-cache"]);
      assert.match(s.timingNote, /edge cache hit/);
      // …until it is invalidated: the origin reuses the stored variant (no build stages).
      await page.click("#refetch");
      await page.waitForFunction(
        () => document.body.dataset.state === "ready" && document.getElementById("x-cache").textContent.startsWith("Miss"),
        { timeout: 30_000 },
      );
      s = await shown(page, dprUrl);
      // Small: the variant's bytes came back with the first step, no read from the bucket.
      assert.ok(s.timing.includes("get-variant") && !s.timing.includes("read"), `${s.timing}`);
      assert.ok(!s.timing.includes("decode"), `reused variant was decoded again: ${s.timing}`);

      // Copy puts the absolute URL on the clipboard.
      await browser.defaultBrowserContext().overridePermissions(edge.base, ["clipboard-read", "clipboard-write"]);
      await page.bringToFront();
      await page.click("#copy");
      await page.waitForFunction(() => document.getElementById("copy").textContent === "copied");
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), `${edge.base}${dprUrl}`);

      // A reload keeps the parameters (the page's own URL mirrors them).
      await page.reload();
      s = await shown(page, dprUrl);
      assert.deepEqual(s.natural, [600, 400]);

      assert.ok(responses.some((r) => r.url.includes("/_imgedge/resolve") && r.status === 200));
      assert.deepEqual(problems, []);
    } catch (e) {
      await screenshot(page, "failure-unsigned.png").catch(() => {});
      writeFileSync(join(ARTIFACTS, "failure-unsigned.log"), edge.log());
      throw e;
    } finally {
      await page.close();
      edge.stop();
    }
  });

  test("with --signing-keys the playground's URLs carry sig= and load", async () => {
    const keysDir = mkdtempSync(join(tmpdir(), "imgedge-keys-"));
    const keysFile = join(keysDir, "signing-keys");
    writeFileSync(keysFile, `${SIGNING_KEY}\n`);
    const edge = await startEdge(["--signing-keys", keysFile]);
    const page = await browser.newPage();
    const { problems, responses } = watch(page, edge.base);
    try {
      // Signed gallery thumbnails load.
      await page.goto(`${edge.base}/`, { waitUntil: "networkidle0" });
      const thumbs = await page.$$eval("figure img", (imgs) => imgs.filter((i) => i.naturalWidth > 0).length);
      assert.ok(thumbs >= 1, "no signed thumbnail loaded");

      // Straight to a playground link with parameters.
      const path = `/${edge.firstMaster}`;
      await page.goto(`${edge.base}/_imgedge/playground?master=${edge.firstMaster}&w=300&fmt=webp`);
      const s = await shown(page, `${path}?w=300&fmt=webp`, { signed: true });
      assert.deepEqual(s.natural, [300, 300]);
      assert.equal(s.type, "image/webp");
      assert.match(s.shownUrl, /&sig=[A-Za-z0-9_-]{43}$/);
      assert.equal(s.canonical, `${path}?w=300&fmt=webp`);
      const signedLoads = responses.filter((r) => r.url === `${edge.base}${s.url}`);
      assert.ok(signedLoads.length >= 1, "the signed URL was not requested");
      assert.ok(signedLoads.every((r) => r.status === 200), JSON.stringify(signedLoads));
      await page.waitForSelector("#signed-note:not([hidden])");
      await screenshot(page, "playground-signed.png");
      assert.deepEqual(problems, []);
    } catch (e) {
      await screenshot(page, "failure-signed.png").catch(() => {});
      writeFileSync(join(ARTIFACTS, "failure-signed.log"), edge.log());
      throw e;
    } finally {
      await page.close();
      edge.stop();
      rmSync(keysDir, { recursive: true, force: true });
    }
  });
});
