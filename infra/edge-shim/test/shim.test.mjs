// The shim with the REAL bootstrap against a real S3-protocol server (moto).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  Moto, assertServesVariant, eventFor, fixture, functionDir, gradientPng, header, noisePng, pngSize,
} from "./helpers.mjs";

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
  test("the documented example event for image_001.png?w=512&fmt=webp → the variant's bytes, stored", async () => {
    const res = await shim.handler(fixture("image_001-w512-webp.json"));
    const variant = "_variants/v2/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp";
    // Small (a few KB): answered with its bytes, so CloudFront needs no fetch from S3.
    assert.equal(await assertServesVariant(moto, BUCKET, res, variant), "body");
    assert.equal(res.statusDescription, "OK");

    const head = await moto.head(BUCKET, variant);
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-type"), "image/webp");
    assert.equal(head.headers.get("cache-control"), "public, max-age=31536000, immutable");
    assert.equal(head.headers.get("x-amz-meta-source-etag"), masterEtag);
    const body = Buffer.from(res.body, "base64");
    assert.equal(body.subarray(0, 4).toString("latin1"), "RIFF");
    assert.equal(body.subarray(8, 12).toString("latin1"), "WEBP");

    // Same request again: the fresh variant is reused (same bytes), not rewritten.
    const etag = head.headers.get("etag");
    const again = await shim.handler(fixture("image_001-w512-webp.json"));
    assert.equal(await assertServesVariant(moto, BUCKET, again, variant), "body");
    assert.equal(again.body, res.body);
    assert.equal((await moto.head(BUCKET, variant)).headers.get("etag"), etag);
  });

  test("a variant above the generated-response limit is a rewrite; the cut-over is at 700 KiB", async () => {
    // Noise does not compress: a w-wide PNG variant is ~3·w·h bytes. Find the widths whose
    // variants sit just under and just over the limit, and check both shapes there.
    const LIMIT = 700 * 1024;
    const NOISY = "outputs/2025-02-01/noise.png";
    await moto.put(BUCKET, NOISY, noisePng(800, 600), "image/png");
    const size = async (w) => {
      const res = await shim.handler(eventFor(`/${NOISY}`, `w=${w}`));
      const key = `_variants/v2/${NOISY}/w=${w}.png`;
      const shape = await assertServesVariant(moto, BUCKET, res, key);
      const bytes = Number((await moto.head(BUCKET, key)).headers.get("content-length"));
      assert.equal(shape, bytes <= LIMIT ? "body" : "rewrite", `w=${w}: ${bytes} bytes`);
      return bytes;
    };
    let [lo, hi] = [300, 800]; // size(lo) ≤ LIMIT < size(hi)
    assert.ok((await size(lo)) <= LIMIT && (await size(hi)) > LIMIT);
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if ((await size(mid)) <= LIMIT) lo = mid;
      else hi = mid;
    }
    const [under, over] = [await size(lo), await size(hi)];
    assert.ok(under <= LIMIT && over > LIMIT && over - under < 8192, `${under} / ${over}`);
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
      eventFor("/_variants/v2/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp", ""),
    );
    assert.equal(direct.status, "404", JSON.stringify(direct));
  });

  test("concurrent events each get their own answer", async () => {
    const cases = [
      ["w=100", `/_variants/v2/${MASTER}/w%3D100.png`],
      ["w=200&fmt=webp", `/_variants/v2/${MASTER}/w%3D200%2Cfmt%3Dwebp.webp`],
      ["fmt=jpg&w=300", `/_variants/v2/${MASTER}/w%3D300%2Cfmt%3Djpeg.jpg`],
      ["h=50", `/_variants/v2/${MASTER}/h%3D50.png`],
      ["w=abc", null],
      ["w=64&h=64&fit=contain&bg=FF0000", `/_variants/v2/${MASTER}/w%3D64%2Ch%3D64%2Cfit%3Dcontain%2Cbg%3Dff0000.png`],
    ];
    const results = await Promise.all(cases.map(([q]) => shim.handler(eventFor(`/${MASTER}`, q))));
    for (const [[query, uri], res] of cases.map((c, i) => [c, results[i]])) {
      if (uri === null) {
        assertErrorResponse(res, 400, "invalid_parameter", "public, max-age=60");
      } else {
        await assertServesVariant(moto, BUCKET, res, decodeURIComponent(uri.slice(1)));
      }
    }
    const h50 = await moto.get(BUCKET, `_variants/v2/${MASTER}/h=50.png`);
    assert.deepEqual(pngSize(h50.body), { width: 67, height: 50 });
  });

  test("child killed while idle → the next event starts a new one", async () => {
    await shim.handler(eventFor(`/${MASTER}`, ""));
    const pid = shim.childPid();
    assert.ok(pid);
    process.kill(pid, "SIGKILL");
    while (shim.childPid() === pid) await new Promise((r) => setTimeout(r, 5));
    const res = await shim.handler(eventFor(`/${MASTER}`, "w=120"));
    await assertServesVariant(moto, BUCKET, res, `_variants/v2/${MASTER}/w=120.png`);
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
    assert.deepEqual(await moto.keys(BUCKET, `_variants/v2/${BIG}/`), []);

    const next = await shim.handler(eventFor(`/${BIG}`, "w=100"));
    await assertServesVariant(moto, BUCKET, next, `_variants/v2/${BIG}/w=100.png`);
  });

  test("an event over the size bound → 500 no-store, not relayed; the same child serves the next", async () => {
    await shim.handler(eventFor(`/${MASTER}`, "")); // a running child
    const pid = shim.childPid();
    const big = eventFor(`/${MASTER}`, "w=64");
    big.Records[0].cf.request.headers["x-padding"] = [{ key: "X-Padding", value: "p".repeat(shim.MAX_EVENT_BYTES) }];
    const res = await shim.handler(big);
    assertErrorResponse(res, 500, "internal", "no-store");
    assert.equal((await moto.head(BUCKET, `_variants/v2/${MASTER}/w=64.png`)).status, 404, "never rendered");
    const next = await shim.handler(eventFor(`/${MASTER}`, "w=64"));
    await assertServesVariant(moto, BUCKET, next, `_variants/v2/${MASTER}/w=64.png`);
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
    await assertServesVariant(moto, BUCKET, up, `_variants/v2/${MASTER}/w=77.png`);
    assert.equal(shim.childPid(), pid, "same bootstrap process throughout");
    const head = await moto.head(BUCKET, `_variants/v2/${MASTER}/w=77.png`);
    assert.equal(head.headers.get("x-amz-meta-source-etag"), masterEtag);
  });
});
