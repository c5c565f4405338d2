// Injected store faults on the packaged Lambda: the REAL bootstrap through the shim, its S3
// calls through `scripts/s3_proxy.py` to moto. For each fault: an answer within the deadline,
// a 5xx `no-store` or the right image (never a broken one), nothing partial or wrong in the
// bucket (checked at moto directly), and the next event served by the same warm process
// once the fault clears. Then twenty instances at once under the flaky mode.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { FaultProxy, Moto, assertBucketSound, checkPng, eventFor, functionDir, gradientPng, header, uriOf } from "./helpers.mjs";

const BUCKET = "imgedge-faults";
const MASTER = "faults/photo.png";
// The shim's deadline; the bootstrap's own is 0.5 s shorter, and answers first.
const DEADLINE_MS = 2000;
const SLACK_MS = 500;

let moto;
let proxy;
const shims = [];

before(async () => {
  moto = await Moto.start();
  await moto.createBucket(BUCKET);
  await moto.put(BUCKET, MASTER, gradientPng(640, 480), "image/png");
  proxy = await FaultProxy.start(moto.endpoint);
});

after(async () => {
  for (const shim of shims) await shim.shutdown();
  await proxy?.stop();
  await moto?.stop();
});

/** A function instance (its own shim and bootstrap) whose bucket is behind the proxy. */
async function instance() {
  process.env.IMGEDGE_SHIM_DEADLINE_MS = String(DEADLINE_MS); // read when the shim loads
  const { shim } = await functionDir({ bucket: BUCKET, region: "us-east-1", endpoint_url: proxy.url });
  delete process.env.IMGEDGE_SHIM_DEADLINE_MS;
  shims.push(shim);
  return shim;
}

const keyOf = (w) => `_variants/v2/${MASTER}/w=${w}.png`;

/** A 200 is the whole image of the right size (its bytes, or a rewrite to a whole stored
 * object); anything else a JSON 5xx with `no-store`. Returns the status and the bytes. */
async function checkAnswer(res, w, context) {
  if (res.status === undefined) {
    assert.equal(res.uri, uriOf(keyOf(w)), context);
    const stored = await moto.get(BUCKET, keyOf(w));
    assert.equal(stored.status, 200, context);
    assert.deepEqual(checkPng(stored.body), { width: w, height: Math.round((480 * w) / 640) }, context);
    return { status: 200, body: stored.body };
  }
  if (res.status === "200") {
    assert.equal(res.bodyEncoding, "base64", context);
    const body = Buffer.from(res.body, "base64");
    assert.deepEqual(checkPng(body), { width: w, height: Math.round((480 * w) / 640) }, context);
    return { status: 200, body };
  }
  const status = Number(res.status);
  assert.ok(status >= 500, `${context}: ${JSON.stringify(res).slice(0, 300)}`);
  assert.equal(header(res, "cache-control"), "no-store", context);
  assert.equal(header(res, "content-type"), "application/json", context);
  const error = JSON.parse(res.body);
  assert.equal(error.status, status, context);
  assert.equal(error.error, status === 504 ? "timeout" : "store_error", `${context}: ${res.body}`);
  return { status };
}

test("every store fault: an answer within the deadline, nothing broken left, recovery in the same process", async () => {
  const shim = await instance();
  // The first event also waits out the init's warm-up HEADs, which would count as requests.
  const warm = await shim.handler(eventFor(`/${MASTER}`, "w=100"));
  assert.equal((await checkAnswer(warm, 100, "before any fault")).status, 200);
  const pid = shim.childPid();
  const cases = [
    ["reset", { mode: "reset" }, [502, 504]],
    ["accept and hang", { mode: "hang" }, [504]],
    ["500 InternalError", { mode: "500" }, [502, 504]],
    ["503 SlowDown", { mode: "503" }, [502, 504]],
    ["truncated body", { mode: "truncate" }, [502]],
    ["latency 150 ms", { delay_ms: 150 }, [200]],
    ["latency 3 s", { delay_ms: 3000 }, [504]],
    ["every other connection reset", { mode: "flaky" }, [200, 502]],
    // The render's PUT, after three lookups and the master's GET.
    ["reset at the PUT", { mode: "reset", skip: 4 }, [502, 504]],
    ["503 at the PUT", { mode: "503", skip: 4 }, [502, 504]],
  ];
  const matrix = [];
  let w = 300;
  for (const [name, fault, expect] of cases) {
    w += 1;
    const before = await assertBucketSound(moto, BUCKET, name);
    await proxy.set(fault);
    const started = Date.now();
    const res = await shim.handler(eventFor(`/${MASTER}`, `w=${w}`));
    const took = Date.now() - started;
    const state = await proxy.clear();
    const { status } = await checkAnswer(res, w, name);
    assert.ok(expect.includes(status), `${name}: ${status} ${res.body ?? ""}`);
    assert.ok(took < DEADLINE_MS + SLACK_MS, `${name}: answered after ${took} ms`);
    if (fault.mode) assert.ok(state.faulted > 0, `${name}: the fault was never met: ${JSON.stringify(state)}`);
    const after = await assertBucketSound(moto, BUCKET, name);
    const want = status === 200 ? [...new Set([...before, keyOf(w)])].sort() : before;
    assert.deepEqual(after, want, `${name}: objects in the bucket`);

    // Recovery: the same warm process serves the same variant.
    const again = await shim.handler(eventFor(`/${MASTER}`, `w=${w}`));
    assert.equal((await checkAnswer(again, w, `${name}, after`)).status, 200, `${name}: after the fault`);
    assert.equal(shim.childPid(), pid, `${name}: the bootstrap was kept`);
    matrix.push(`| ${name} | ${status} | ${took} ms | ${after.length - before.length} |`);
  }
  console.log(`fault matrix, Lambda (shim deadline ${DEADLINE_MS} ms):\n| fault | answer | time | objects added |\n${matrix.join("\n")}`);
});

test("twenty instances at once for one new variant under a flaky store: identical bytes or 5xx, one object", async () => {
  await proxy.set({ mode: "flaky" });
  const fleet = await Promise.all(Array.from({ length: 20 }, instance));
  const started = Date.now();
  const answers = await Promise.all(fleet.map((shim) => shim.handler(eventFor(`/${MASTER}`, "w=200"))));
  const took = Date.now() - started;
  const state = await proxy.clear();
  const checked = await Promise.all(answers.map((res, i) => checkAnswer(res, 200, `instance ${i}`)));
  const ok = checked.filter((c) => c.status === 200);
  console.log(`20 instances, flaky store: ${ok.length} × 200 in ${took} ms; proxy ${JSON.stringify(state)}`);
  assert.ok(state.faulted > 0, "the fault was met");
  assert.ok(ok.length > 0, "retries on the good connections succeed");
  for (const c of ok) assert.ok(c.body.equals(ok[0].body), "identical bytes");
  const keys = (await assertBucketSound(moto, BUCKET, "20 instances")).filter((k) => k.endsWith("/w=200.png"));
  assert.deepEqual(keys, [keyOf(200)], "one object");
  assert.ok((await moto.get(BUCKET, keyOf(200))).body.equals(ok[0].body), "the stored object is what was served");
});
