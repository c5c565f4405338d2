// The packaged zip (infra/package.sh) unpacked and run with node against moto.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";

import { Moto, REPO, assertServesVariant, eventFor, fixture, gradientPng, pngSize, rgbaPng, unzipTo, zipEntries } from "./helpers.mjs";

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
  await assertServesVariant(moto, config.bucket, res, "_variants/v2/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp");
  const head = await moto.head(config.bucket, "_variants/v2/outputs/2025-02-01/image_001.png/w=512,fmt=webp.webp");
  assert.equal(head.status, 200);
  assert.equal(head.headers.get("x-amz-meta-source-etag"), etag);
});

// fmt=avif and fmt=auto through the packaged function: every fit on an RGB and an RGBA
// master, each output decoded by Pillow (libavif; tests/tools/pillow_tool.py) and compared
// with the lossless PNG variant of the same request.
const PILLOW_TOOL = join(REPO, "tests/tools/pillow_tool.py");

function pillowCompare(dir, avif, png) {
  const [a, b] = [join(dir, "out.avif"), join(dir, "ref.png")];
  writeFileSync(a, avif);
  writeFileSync(b, png);
  const run = spawnSync(process.env.IMGEDGE_PYTHON ?? "python3", [PILLOW_TOOL, "compare", a, b], { encoding: "utf8" });
  assert.equal(run.status, 0, `pillow_tool: ${run.stderr}`);
  return JSON.parse(run.stdout.trim());
}

async function variantBytes(moto, bucket, res, key) {
  await assertServesVariant(moto, bucket, res, key);
  const stored = await moto.get(bucket, key);
  return { bytes: stored.body, type: stored.headers.get("content-type") };
}

test("the packaged function makes AVIF for RGB and RGBA in every fit, and fmt=auto picks it for browsers that list it", { skip: !existsSync(ZIP) && !process.env.IMGEDGE_REQUIRE_PACKAGE && `no ${ZIP}: run infra/package.sh first` }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "imgedge-zip-avif-"));
  unzipTo(ZIP, dir);
  const config = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  const server = await Moto.start();
  try {
    await server.createBucket(config.bucket);
    await server.put(config.bucket, "avif/rgb.png", gradientPng(320, 240), "image/png");
    await server.put(config.bucket, "avif/rgba.png", rgbaPng(320, 240), "image/png");
    writeFileSync(join(dir, "config.json"), JSON.stringify({ ...config, endpoint_url: server.endpoint }));
    const fn = await import(join(dir, "index.mjs") + "?avif");
    try {
      const shapes = ["w=150", "h=90", "w=120&h=120", "w=120&h=120&fit=contain&bg=1e90ff", "w=120&h=120&fit=fill",
        "w=120&h=120&fit=inside", "w=120&h=120&fit=outside"];
      for (const master of ["avif/rgb.png", "avif/rgba.png"]) {
        for (const shape of shapes) {
          const what = `${master}?${shape}`;
          const keyOf = (q, ext) => `_variants/v2/${master}/${q.replaceAll("&", ",")}.${ext}`;
          // The canonical order is w,h,fit,fmt,q,bg.
          const avifQuery = shape.includes("&bg=") ? shape.replace("&bg=", "&fmt=avif&bg=") : `${shape}&fmt=avif`;
          const avif = await variantBytes(server, config.bucket,
            await fn.handler(eventFor("/" + master, avifQuery)), keyOf(avifQuery, "avif"));
          assert.equal(avif.type, "image/avif", what);
          const png = await variantBytes(server, config.bucket,
            await fn.handler(eventFor("/" + master, shape)), keyOf(shape, "png"));
          const seen = pillowCompare(dir, avif.bytes, png.bytes);
          const { width, height } = pngSize(png.bytes);
          assert.equal(seen.format, "AVIF", what);
          assert.deepEqual(seen.size, [width, height], what);
          assert.equal(seen.icc, false, `${what}: no colour profile`);
          const alpha = master.endsWith("rgba.png");
          assert.equal(seen.mode, alpha ? "RGBA" : "RGB", what);
          assert.ok(seen.alpha_error <= 2, `${what}: alpha error ${seen.alpha_error}`);
          assert.ok(seen.ssim >= 0.93, `${what}: SSIM ${seen.ssim} against the PNG variant`);
        }
      }
      // fmt=auto as the origin sees it when the viewer-request function did not resolve it.
      const browsers = [
        ["Chrome", "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8", "avif"],
        ["Firefox", "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5", "avif"],
        ["Safari 16.4+", "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5", "avif"],
        ["Safari 14-16.3", "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5", "webp"],
      ];
      for (const [name, accept, fmt] of browsers) {
        const res = await fn.handler(eventFor("/avif/rgb.png", "w=160&fmt=auto", accept));
        const got = await variantBytes(server, config.bucket, res, `_variants/v2/avif/rgb.png/w=160,fmt=${fmt}.${fmt}`);
        assert.equal(got.type, `image/${fmt}`, name);
      }
    } finally {
      await fn.shutdown();
    }
  } finally {
    await server.stop();
  }
});
