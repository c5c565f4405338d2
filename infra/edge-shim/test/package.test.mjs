// The packaged zip (infra/package.sh) unpacked and run with node against moto.
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { Moto, REPO, assertServesVariant, fixture, gradientPng, unzipTo, zipEntries } from "./helpers.mjs";

const ZIP = process.env.IMGEDGE_ZIP ?? join(REPO, "dist/edge-function.zip");
let moto;
let shim;

after(async () => {
  await shim?.shutdown();
  await moto?.stop();
});

test("dist/edge-function.zip runs the documented example against S3", { skip: !existsSync(ZIP) && !process.env.IMGEDGE_REQUIRE_PACKAGE && `no ${ZIP}: run infra/package.sh first` }, async () => {
  assert.ok(statSync(ZIP).size < 50 * 1024 * 1024, "under the 50 MB Lambda@Edge limit");
  assert.deepEqual(zipEntries(ZIP), ["bootstrap", "config.json", "index.mjs"]);

  const dir = mkdtempSync(join(tmpdir(), "imgedge-zip-"));
  unzipTo(ZIP, dir);
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  assert.equal(typeof config.bucket, "string");
  assert.ok(config.max_pixels > 0 && config.max_bytes > 0);
  assert.ok(statSync(join(dir, "bootstrap")).mode & 0o100, "bootstrap is executable");

  // Point the packaged function at this test's S3 server.
  moto = await Moto.start();
  await moto.createBucket(config.bucket);
  const etag = await moto.put(config.bucket, "outputs/2025-02-01/image_001.png", gradientPng(640, 480), "image/png");
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, endpoint_url: moto.endpoint }));

  shim = await import(join(dir, "index.mjs"));
  const res = await shim.handler(fixture("image_001-w512-webp.json"));
  await assertServesVariant(moto, config.bucket, res, "_variants/v1/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp");
  const head = await moto.head(config.bucket, "_variants/v1/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp");
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("x-amz-meta-source-etag"), etag);
});
