// The shim's supervision of its child, with a fake bootstrap (test/fake-bootstrap.mjs) that
// hangs, crashes or misbehaves on request: no S3 and no Rust build needed. The real
// bootstrap's crash and deadline cases are in shim.test.mjs and deadline.test.mjs.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { afterEach, test } from "node:test";
import { fileURLToPath } from "node:url";

import { eventFor, functionDir, header } from "./helpers.mjs";

const FAKE = join(dirname(fileURLToPath(import.meta.url)), "fake-bootstrap.sh");
// Hung starts are a `sleep` (instant); a replacement is a node process, which must poll
// within INIT_MS even on a busy machine. Tests without hangs use a timeout that never fires.
const INIT_MS = 1000;
const NO_INIT_TIMEOUT_MS = 60_000;
const DEADLINE_MS = 5000;
const SLACK_MS = 1000; // scheduling on a busy shared machine

let current;

/** A function dir whose bootstrap is the fake; timings are read when the shim loads. */
async function fakeFunction(fake = {}, { init = NO_INIT_TIMEOUT_MS, deadline = DEADLINE_MS } = {}) {
  process.env.IMGEDGE_SHIM_INIT_TIMEOUT_MS = String(init);
  process.env.IMGEDGE_SHIM_DEADLINE_MS = String(deadline);
  const spawned = Date.now(); // the shim spawns its child while loading
  try {
    current = await functionDir({ bucket: "b", fake }, { bootstrap: FAKE });
  } finally {
    delete process.env.IMGEDGE_SHIM_INIT_TIMEOUT_MS;
    delete process.env.IMGEDGE_SHIM_DEADLINE_MS;
  }
  const lines = (name) => {
    const file = join(current.dir, name);
    return existsSync(file) ? readFileSync(file, "utf8").trim().split("\n").filter(Boolean) : [];
  };
  return { ...current, spawned, starts: () => lines("starts").map(Number), events: () => lines("events") };
}

afterEach(async () => {
  await current?.shim.shutdown();
  current = null;
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

function assertFailure(res, status, messagePart) {
  assert.equal(res.status, String(status), JSON.stringify(res).slice(0, 300));
  assert.equal(header(res, "cache-control"), "no-store");
  assert.equal(header(res, "content-type"), "application/json");
  const body = JSON.parse(res.body);
  assert.deepEqual(Object.keys(body).sort(), ["error", "message", "status"]);
  assert.equal(body.status, status);
  assert.equal(body.error, "internal");
  if (messagePart) assert.match(body.message, messagePart);
  return body;
}

test("a child that hangs before its first poll is killed and replaced; the waiting event is served", async () => {
  const fn = await fakeFunction({ hang_starts: 1 }, { init: INIT_MS });
  const res = await fn.shim.handler(eventFor("/ok", ""));
  const took = Date.now() - fn.spawned;
  const [hung, second] = fn.starts();
  assert.equal(res.uri, `/answered-by/${second}`, "answered by the replacement");
  assert.ok(took >= INIT_MS && took < INIT_MS + SLACK_MS, `answered ${took} ms after the first spawn`);
  assert.equal(alive(hung), false, "the hung child was killed");
  assert.equal(fn.shim.childPid(), second);
});

test("a child that hangs at every start: 502 after two init timeouts, no respawn loop while idle", async () => {
  const fn = await fakeFunction({ hang_starts: -1 }, { init: INIT_MS });
  const res = await fn.shim.handler(eventFor("/ok", ""));
  const took = Date.now() - fn.spawned;
  assertFailure(res, 502, new RegExp(`did not start within ${INIT_MS} ms`));
  assert.ok(took >= 2 * INIT_MS && took < 2 * INIT_MS + SLACK_MS, `answered after ${took} ms, well before the ${DEADLINE_MS} ms deadline`);
  assert.equal(fn.starts().length, 2);
  assert.ok(fn.starts().every((pid) => !alive(pid)), "both children killed");

  await sleep(1.5 * INIT_MS);
  assert.equal(fn.starts().length, 2, "idle: nothing is started until the next event");
  assert.equal(fn.shim.childPid(), undefined);

  // The next event tries a fresh child; after two hangs in a row it gets one try, not two.
  const started = Date.now();
  const again = await fn.shim.handler(eventFor("/ok", ""));
  assertFailure(again, 502);
  assert.ok(Date.now() - started < INIT_MS + SLACK_MS);
  assert.equal(fn.starts().length, 3);
});

test("a child killed by the init timeout while idle is replaced at once and serves the first event", async () => {
  const fn = await fakeFunction({ hang_starts: 1 }, { init: INIT_MS });
  await sleep(INIT_MS + 300); // no event yet: Lambda's init phase
  const [hung, second] = fn.starts();
  assert.ok(second, "replaced without waiting for an event");
  assert.equal(alive(hung), false);
  const res = await fn.shim.handler(eventFor("/ok", ""));
  assert.equal(res.uri, `/answered-by/${second}`);
  assert.equal(fn.starts().length, 2);
});

test("a crash mid-event → 502 JSON no-store for that event; the next event works on a new child", async () => {
  const fn = await fakeFunction();
  const first = await fn.shim.handler(eventFor("/ok", ""));
  const [pid] = fn.starts();
  assert.equal(first.uri, `/answered-by/${pid}`);

  const crashed = await fn.shim.handler(eventFor("/crash", ""));
  assertFailure(crashed, 502, /failed/);
  assert.equal(alive(pid), false);

  const next = await fn.shim.handler(eventFor("/ok", ""));
  const [, replacement] = fn.starts();
  assert.ok(replacement && replacement !== pid);
  assert.equal(next.uri, `/answered-by/${replacement}`);
});

test("a crash mid-event with another event waiting: the waiting one is served by the replacement", async () => {
  const fn = await fakeFunction();
  await fn.shim.handler(eventFor("/ok", "")); // the child is up and polling
  const [crashed, waiting] = await Promise.all([fn.shim.handler(eventFor("/crash", "")), fn.shim.handler(eventFor("/after", ""))]);
  assertFailure(crashed, 502);
  const [, replacement] = fn.starts();
  assert.equal(waiting.uri, `/answered-by/${replacement}`);
  assert.deepEqual(fn.events(), ["/ok", "/crash", "/after"], "each event reached a child once");
});

test("an oversize event → 500 JSON no-store, never relayed; the child keeps serving", async () => {
  const fn = await fakeFunction();
  await fn.shim.handler(eventFor("/ok", ""));
  const [pid] = fn.starts();

  const big = eventFor("/big", "");
  big.Records[0].cf.request.headers["x-padding"] = [{ key: "X-Padding", value: "p".repeat(fn.shim.MAX_EVENT_BYTES) }];
  const started = Date.now();
  const res = await fn.shim.handler(big);
  assertFailure(res, 500, /too large/);
  assert.ok(Date.now() - started < 1000, "answered at once");
  assert.ok(!fn.events().includes("/big"), "not handed to the child");

  // Just under the limit still goes through.
  const fits = eventFor("/fits", "");
  const room = fn.shim.MAX_EVENT_BYTES - Buffer.byteLength(JSON.stringify(fits)) - 100;
  fits.Records[0].cf.request.headers["x-padding"] = [{ key: "X-Padding", value: "p".repeat(room) }];
  assert.equal((await fn.shim.handler(fits)).uri, `/answered-by/${pid}`);

  // An event that cannot be serialised at all gets the same kind of answer.
  const cyclic = eventFor("/cyclic", "");
  cyclic.Records[0].cf.self = cyclic;
  assertFailure(await fn.shim.handler(cyclic), 500);

  assert.equal((await fn.shim.handler(eventFor("/ok", ""))).uri, `/answered-by/${pid}`);
  assert.equal(fn.starts().length, 1, "the same child throughout");
});

test("an oversize answer → 502, the child replaced, the next event works", async () => {
  const fn = await fakeFunction();
  await fn.shim.handler(eventFor("/ok", ""));
  const [pid] = fn.starts();
  const res = await fn.shim.handler(eventFor("/huge-answer", ""));
  assertFailure(res, 502, /too large/);
  const next = await fn.shim.handler(eventFor("/ok", ""));
  const [, replacement] = fn.starts();
  assert.ok(replacement && replacement !== pid);
  assert.equal(alive(pid), false);
  assert.equal(next.uri, `/answered-by/${replacement}`);
});

test("a child that stops polling after an event: the next event → 504 at its deadline, then a new child", async () => {
  const deadline = 800;
  const fn = await fakeFunction({}, { deadline });
  await fn.shim.handler(eventFor("/stop-polling", ""));
  const [pid] = fn.starts();
  const started = Date.now();
  assertFailure(await fn.shim.handler(eventFor("/ok", "")), 504);
  assert.ok(Date.now() - started < deadline + SLACK_MS);
  const next = await fn.shim.handler(eventFor("/ok", ""));
  const [, replacement] = fn.starts();
  assert.ok(replacement && replacement !== pid, "the deaf child was replaced");
  assert.equal(alive(pid), false);
  assert.equal(next.uri, `/answered-by/${replacement}`);
});
