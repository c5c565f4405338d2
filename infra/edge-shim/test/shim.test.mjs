// The shim with the REAL bootstrap against a real S3-protocol server (moto).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Moto, eventFor, fixture, functionDir, gradientPng, header, pngSize } from "./helpers.mjs";

const BUCKET = "my-image-bucket-2025";
const MASTER = "outputs/2025-02-01/image_001.png";
const BIG = "outputs/2025-02-01/big.png";

let moto;
let shim;
let masterEtag;

async function seed() {
  await moto.createBucket(BUCKET);
  masterEtag = await moto.put(BUCKET, MASTER, gradientPng(640, 480), "image/png");
}

before(async () => {
  moto = await Moto.start();
  await seed();
  ({ shim } = await functionDir({ bucket: BUCKET, region: "us-east-1", endpoint_url: moto.endpoint }));
});

after(async () => {
  await shim?.shutdown();
  await moto?.stop();
});

function assertErrorResponse(res, status, error, cache) {
  assert.equal(res.status, String(status), JSON.stringify(res));
  assert.equal(header(res, "content-type"), "application/json");
  assert.equal(header(res, "cache-control"), cache);
  const body = JSON.parse(res.body);
  assert.equal(body.status, status);
  assert.equal(body.error, error);
  assert.equal(typeof body.message, "string");
  assert.ok(body.message.length > 0);
  return body;
}

describe("origin-request through the shim", () => {
  test("the documented example event for image_001.png?w=512&fmt=webp → rewritten request and stored variant", async () => {
    const event = fixture("image_001-w512-webp.json");
    const request = event.Records[0].cf.request;
    const res = await shim.handler(event);

    const variant = "_variants/v1/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp";
    assert.equal(res.uri, "/_variants/v1/outputs/2025-02-01/image_001.png/w%3D512%2Cfmt%3Dwebp.webp");
    assert.equal(res.querystring, "");
    assert.equal(res.method, "GET");
    assert.deepEqual(res.headers, request.headers, "headers pass through");
    assert.deepEqual(res.origin, request.origin, "origin passes through");
    assert.equal(res.status, undefined, "a request, not a generated response");

    const head = await moto.head(BUCKET, variant);
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-type"), "image/webp");
    assert.equal(head.headers.get("cache-control"), "public, max-age=31536000, immutable");
    assert.equal(head.headers.get("x-amz-meta-source-etag"), masterEtag);
    const { body } = await moto.get(BUCKET, variant);
    assert.equal(body.subarray(0, 4).toString("latin1"), "RIFF");
    assert.equal(body.subarray(8, 12).toString("latin1"), "WEBP");

    // Same request again: the fresh variant is reused, not rewritten.
    const etag = head.headers.get("etag");
    const again = await shim.handler(fixture("image_001-w512-webp.json"));
    assert.equal(again.uri, res.uri);
    assert.equal((await moto.head(BUCKET, variant)).headers.get("etag"), etag);
  });

  test("no query → the master itself", async () => {
    const res = await shim.handler(eventFor(`/${MASTER}`, ""));
    assert.equal(res.uri, `/${MASTER}`);
    assert.equal(res.querystring, "");
  });

  test("bad query → 400 JSON response, nothing written", async () => {
    const before = await moto.keys(BUCKET, "_variants/");
    const res = await shim.handler(eventFor(`/${MASTER}`, "w=0&fmt=webp"));
    const body = assertErrorResponse(res, 400, "invalid_parameter", "public, max-age=60");
    assert.equal(body.param, "w");
    assert.deepEqual(await moto.keys(BUCKET, "_variants/"), before);
  });

  test("missing master → 404; _variants/ addressed directly → 404", async () => {
    const missing = await shim.handler(eventFor("/outputs/2025-02-01/nope.png", "w=10"));
    assertErrorResponse(missing, 404, "not_found", "public, max-age=60");
    const direct = await shim.handler(
      eventFor("/_variants/v1/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp", ""),
    );
    assert.equal(direct.status, "404", JSON.stringify(direct));
  });

  test("concurrent events each get their own answer", async () => {
    const cases = [
      ["w=100", `/_variants/v1/${MASTER}/w%3D100.png`],
      ["w=200&fmt=webp", `/_variants/v1/${MASTER}/w%3D200%2Cfmt%3Dwebp.webp`],
      ["fmt=jpg&w=300", `/_variants/v1/${MASTER}/w%3D300%2Cfmt%3Djpeg.jpg`],
      ["h=50", `/_variants/v1/${MASTER}/h%3D50.png`],
      ["w=abc", null],
      ["w=64&h=64&fit=contain&bg=FF0000", `/_variants/v1/${MASTER}/w%3D64%2Ch%3D64%2Cfit%3Dcontain%2Cbg%3Dff0000.png`],
    ];
    const results = await Promise.all(cases.map(([q]) => shim.handler(eventFor(`/${MASTER}`, q))));
    for (const [[query, uri], res] of cases.map((c, i) => [c, results[i]])) {
      if (uri === null) {
        assertErrorResponse(res, 400, "invalid_parameter", "public, max-age=60");
      } else {
        assert.equal(res.uri, uri, `answer for ${query}`);
      }
    }
    const h50 = await moto.get(BUCKET, `_variants/v1/${MASTER}/h=50.png`);
    assert.deepEqual(pngSize(h50.body), { width: 67, height: 50 });
  });

  test("child killed while idle → the next event starts a new one", async () => {
    await shim.handler(eventFor(`/${MASTER}`, ""));
    const pid = shim.childPid();
    assert.ok(pid);
    process.kill(pid, "SIGKILL");
    while (shim.childPid() === pid) await new Promise((r) => setTimeout(r, 5));
    const res = await shim.handler(eventFor(`/${MASTER}`, "w=120"));
    assert.equal(res.uri, `/_variants/v1/${MASTER}/w%3D120.png`);
    assert.notEqual(shim.childPid(), pid);
  });

  test("child killed mid-event → 502 no-store for that event, nothing partial, then recovered", async () => {
    await moto.put(BUCKET, BIG, gradientPng(3000, 2000), "image/png");
    await shim.handler(eventFor(`/${MASTER}`, "")); // a running child
    const pid = shim.childPid();
    const pending = shim.handler(eventFor(`/${BIG}`, "w=1500&fmt=webp"));
    while (shim.inflightCount() === 0) await new Promise((r) => setImmediate(r));
    process.kill(pid, "SIGKILL");
    const res = await pending;
    assertErrorResponse(res, 502, "internal", "no-store");
    assert.deepEqual(await moto.keys(BUCKET, `_variants/v1/${BIG}/`), []);

    const next = await shim.handler(eventFor(`/${BIG}`, "w=100"));
    assert.equal(next.uri, `/_variants/v1/${BIG}/w%3D100.png`);
  });

  test("an event over the size bound → 500 no-store, not relayed; the same child serves the next", async () => {
    await shim.handler(eventFor(`/${MASTER}`, "")); // a running child
    const pid = shim.childPid();
    const big = eventFor(`/${MASTER}`, "w=64");
    big.Records[0].cf.request.headers["x-padding"] = [{ key: "X-Padding", value: "p".repeat(shim.MAX_EVENT_BYTES) }];
    const res = await shim.handler(big);
    assertErrorResponse(res, 500, "internal", "no-store");
    assert.equal((await moto.head(BUCKET, `_variants/v1/${MASTER}/w=64.png`)).status, 404, "never rendered");
    const next = await shim.handler(eventFor(`/${MASTER}`, "w=64"));
    assert.equal(next.uri, `/_variants/v1/${MASTER}/w%3D64.png`);
    assert.equal(shim.childPid(), pid);
  });

  test("S3 server stopped → 502 no-store; restarted → works without restarting the function", async () => {
    const pid = shim.childPid();
    await moto.stop();
    const down = await shim.handler(eventFor(`/${MASTER}`, "w=77"));
    assertErrorResponse(down, 502, "store_error", "no-store");

    await moto.start(); // same port; moto keeps no state, so seed again
    await seed();
    const up = await shim.handler(eventFor(`/${MASTER}`, "w=77"));
    assert.equal(up.uri, `/_variants/v1/${MASTER}/w%3D77.png`);
    assert.equal(shim.childPid(), pid, "same bootstrap process throughout");
    const head = await moto.head(BUCKET, `_variants/v1/${MASTER}/w=77.png`);
    assert.equal(head.headers.get("x-amz-meta-source-etag"), masterEtag);
  });
});
