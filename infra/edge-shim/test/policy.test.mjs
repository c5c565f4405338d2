// The REAL bootstrap through the shim with config.json's "policy" (DESIGN.md §10), against
// moto: the origin re-checks the canonical query, expands a bare preset, stores one object
// per distinct output (clamped to the master) and remembers a broken master's 415.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import { Moto, assertServesVariant, eventFor, functionDir, gradientPng, header } from "./helpers.mjs";

const BUCKET = "policy-bucket";
const MASTER = "outputs/2025-02-01/image_001.png";
const BROKEN = "outputs/2025-02-01/broken.png";
const POLICY = {
  widths: [64, 320, 1024],
  dprs: [1, 2],
  formats: ["webp", "auto"],
  presets: { thumb: "w=64&fmt=webp" },
};

let moto;
let shim;

before(async () => {
  moto = await Moto.start();
  await moto.createBucket(BUCKET);
  await moto.put(BUCKET, MASTER, gradientPng(320, 240), "image/png");
  await moto.put(BUCKET, BROKEN, gradientPng(320, 240).subarray(0, 200), "image/png");
  ({ shim } = await functionDir({
    bucket: BUCKET,
    region: "us-east-1",
    endpoint_url: moto.endpoint,
    policy: POLICY,
  }));
});

after(async () => {
  await shim?.shutdown();
  await moto?.stop();
});

const variants = () => moto.keys(BUCKET, "_variants/");

describe("origin-request with a policy", () => {
  test("canonical queries the policy allows are served; others are a 400 naming the list", async () => {
    // w=320&dpr=2 arrives as w=640: allowed (320 × 2), and clamped to the 320-px master.
    for (const [q, key] of [["w=64&fmt=webp", "w=64,fmt=webp"], ["w=128&fmt=webp", "w=128,fmt=webp"], ["w=640&fmt=webp", "w=320,fmt=webp"]]) {
      const res = await shim.handler(eventFor(`/${MASTER}`, q));
      await assertServesVariant(moto, BUCKET, res, `_variants/v2/${MASTER}/${key}.webp`);
    }
    const before = await variants();
    for (const [q, param] of [["w=100&fmt=webp", "w"], ["w=64&fmt=jpeg", "fmt"]]) {
      const res = await shim.handler(eventFor(`/${MASTER}`, q));
      assert.equal(res.status, "400", q);
      assert.equal(header(res, "cache-control"), "public, max-age=60");
      const body = JSON.parse(res.body);
      assert.equal(body.error, "invalid_parameter");
      assert.equal(body.param, param, q);
    }
    assert.deepEqual(await variants(), before, "a refused request writes nothing");
  });

  test("a bare preset is expanded to its query", async () => {
    const res = await shim.handler(eventFor(`/${MASTER}`, "preset=thumb"));
    await assertServesVariant(moto, BUCKET, res, `_variants/v2/${MASTER}/w=64,fmt=webp.webp`);
  });

  test("requests beyond the master share one object", async () => {
    for (const q of ["w=320&fmt=webp", "w=640&fmt=webp", "w=1024&fmt=webp", "w=2048&fmt=webp"]) {
      const res = await shim.handler(eventFor(`/${MASTER}`, q));
      await assertServesVariant(moto, BUCKET, res, `_variants/v2/${MASTER}/w=320,fmt=webp.webp`);
    }
    const wide = (await variants()).filter((k) => k.includes("/w=") && /w=(320|640|1024|2048),/.test(k));
    assert.deepEqual(wide, [`_variants/v2/${MASTER}/w=320,fmt=webp.webp`]);
  });

  test("a broken master's 415 is remembered beside its variants, tied to its ETag", async () => {
    for (const q of ["w=64&fmt=webp", "w=320&fmt=webp"]) {
      const res = await shim.handler(eventFor(`/${BROKEN}`, q));
      assert.equal(res.status, "415", JSON.stringify(res));
      assert.equal(JSON.parse(res.body).error, "unsupported_image");
    }
    assert.deepEqual(await moto.keys(BUCKET, `_variants/v2/${BROKEN}/`), [`_variants/v2/${BROKEN}/error.json`]);
    const marker = JSON.parse((await moto.get(BUCKET, `_variants/v2/${BROKEN}/error.json`)).body.toString());
    assert.equal(marker.status, 415);
    assert.equal(marker.error, "unsupported_image");
    assert.equal(marker["source-etag"], (await moto.head(BUCKET, BROKEN)).headers.get("etag"));

    // A replaced master is tried again.
    await moto.put(BUCKET, BROKEN, gradientPng(320, 240), "image/png");
    const res = await shim.handler(eventFor(`/${BROKEN}`, "w=64&fmt=webp"));
    await assertServesVariant(moto, BUCKET, res, `_variants/v2/${BROKEN}/w=64,fmt=webp.webp`);
  });
});
