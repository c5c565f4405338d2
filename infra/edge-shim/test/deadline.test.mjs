// The deadline: an S3 endpoint that accepts connections and never answers makes the REAL
// bootstrap's store calls hang. The bootstrap observes the deadline the shim hands it
// (less a 0.5 s margin for the answer) and answers 504 `timeout` itself, so the warm
// process is kept; the shim's own deadline stays behind it as the last resort.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, test } from "node:test";

import { eventFor, functionDir, header } from "./helpers.mjs";

const DEADLINE_MS = 1500;
let blackhole;
let sockets = [];
let shim;

before(async () => {
  blackhole = createServer((s) => sockets.push(s)); // reads nothing, answers nothing
  await new Promise((r) => blackhole.listen(0, "127.0.0.1", r));
  process.env.IMGEDGE_SHIM_DEADLINE_MS = String(DEADLINE_MS); // read when the shim loads
  ({ shim } = await functionDir({
    bucket: "b",
    region: "us-east-1",
    endpoint_url: `http://127.0.0.1:${blackhole.address().port}`,
  }));
  delete process.env.IMGEDGE_SHIM_DEADLINE_MS;
});

after(async () => {
  await shim?.shutdown();
  for (const s of sockets) s.destroy();
  await new Promise((r) => blackhole.close(r));
});

test("a hanging store → the bootstrap's own 504 timeout before the deadline; the process is kept", async () => {
  const event = eventFor("/outputs/2025-02-01/image_001.png", "w=10");
  let pid;
  for (let i = 0; i < 2; i++) {
    const started = Date.now();
    const res = await shim.handler(event);
    const took = Date.now() - started;
    assert.equal(res.status, "504", JSON.stringify(res));
    assert.equal(header(res, "cache-control"), "no-store");
    const body = JSON.parse(res.body);
    assert.equal(body.status, 504);
    assert.equal(body.error, "timeout", "answered by the bootstrap, not the shim's kill");
    assert.ok(took >= DEADLINE_MS - 600 && took < DEADLINE_MS, `answered after ${took} ms`);
    if (i === 0) pid = shim.childPid();
    else assert.equal(shim.childPid(), pid, "the same warm process serves the next event");
  }
  // Pure validation needs no S3: a fresh child answers it at once.
  const bad = await shim.handler(eventFor("/outputs/2025-02-01/image_001.png", "w=0"));
  assert.equal(bad.status, "400");
});

test("the context's remaining time shortens the deadline", async () => {
  const started = Date.now();
  const res = await shim.handler(eventFor("/outputs/2025-02-01/image_001.png", "w=11"), {
    getRemainingTimeInMillis: () => 1000,
  });
  assert.equal(res.status, "504");
  assert.ok(Date.now() - started < DEADLINE_MS, "used the shorter budget");
});
