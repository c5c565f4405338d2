// The deadline: an S3 endpoint that accepts connections and never answers makes the REAL
// bootstrap hang; the shim must still answer within its deadline and recover.
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

test("a hung bootstrap → 504 no-store within the deadline, and the next event is not blocked", async () => {
  const event = eventFor("/outputs/2025-02-01/image_001.png", "w=10");
  for (let i = 0; i < 2; i++) {
    const started = Date.now();
    const res = await shim.handler(event);
    const took = Date.now() - started;
    assert.equal(res.status, "504", JSON.stringify(res));
    assert.equal(header(res, "cache-control"), "no-store");
    const body = JSON.parse(res.body);
    assert.equal(body.status, 504);
    assert.equal(body.error, "internal");
    assert.ok(took >= DEADLINE_MS - 50 && took < DEADLINE_MS + 1000, `answered after ${took} ms`);
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
