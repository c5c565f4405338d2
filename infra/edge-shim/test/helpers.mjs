// Test kit for the shim: a real moto S3 server, a real `bootstrap`, a function directory
// laid out like the Lambda zip (index.mjs + bootstrap + config.json), and a PNG writer.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { deflateSync, inflateSync } from "node:zlib";

const HERE = dirname(fileURLToPath(import.meta.url));
export const SHIM_DIR = resolve(HERE, "..");
export const REPO = resolve(SHIM_DIR, "../..");
export const FIXTURES = join(REPO, "edge/tests/fixtures/cloudfront");

// The SDK in the child reads these; moto accepts any credentials.
process.env.AWS_ACCESS_KEY_ID ??= "testing";
process.env.AWS_SECRET_ACCESS_KEY ??= "testing";
process.env.AWS_REGION ??= "us-east-1";
process.env.AWS_EC2_METADATA_DISABLED = "true";

/** The real bootstrap: `$IMGEDGE_BOOTSTRAP`, else the release build of the target dir. */
export function bootstrapPath() {
  const path =
    process.env.IMGEDGE_BOOTSTRAP ??
    join(process.env.CARGO_TARGET_DIR ?? join(REPO, "target"), "release", "bootstrap");
  if (!existsSync(path)) {
    throw new Error(`${path} is missing: run \`cargo build -p edge --bin bootstrap\` or set IMGEDGE_BOOTSTRAP`);
  }
  return path;
}

export function fixture(name) {
  return JSON.parse(readFileSync(join(FIXTURES, name), "utf8"));
}

async function waitForPort(port, timeoutMs) {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const ok = await new Promise((r) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => (s.destroy(), r(true)));
      s.once("error", () => r(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

// moto routes a request to a service by the credential scope of its Authorization header
// (signatures are not checked); without one, S3 calls are misrouted.
const AUTH = {
  authorization:
    "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0",
};

async function s3fetch(url, init = {}) {
  return fetch(url, { ...init, headers: { ...AUTH, ...init.headers } });
}

/**
 * moto's S3 server on loopback; `stop()` and `start()` again on the same port. The first
 * start lets moto pick the port and reads it from its startup line: a port chosen here and
 * released during moto's second of imports can be taken by a parallel test's listener.
 */
export class Moto {
  static async start() {
    const moto = new Moto();
    await moto.start();
    return moto;
  }
  async start() {
    const program = process.env.MOTO_SERVER ?? "moto_server";
    const port = this.port ?? 0;
    this.child = spawn(program, ["-H", "127.0.0.1", "-p", String(port)], { stdio: ["ignore", "ignore", "pipe"] });
    this.child.on("error", (e) => console.error(`cannot start ${program}: ${e.message}`));
    this.child.stderr.setEncoding("utf8");
    if (port === 0) {
      this.port = await new Promise((resolve, reject) => {
        let seen = "";
        const onData = (chunk) => {
          seen += chunk;
          const m = seen.match(/Running on http:\/\/127\.0\.0\.1:(\d+)/);
          if (m) {
            this.child.stderr.off("data", onData);
            resolve(Number(m[1]));
          }
        };
        this.child.stderr.on("data", onData);
        this.child.once("exit", () => reject(new Error(`${program} exited before it listened:\n${seen}`)));
      });
      this.endpoint = `http://127.0.0.1:${this.port}`;
    }
    this.child.stderr.resume(); // moto logs every request there; keep draining it
    await waitForPort(this.port, 20_000);
  }
  async stop() {
    if (!this.child) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGKILL");
    await exited;
    this.child = null;
  }
  url(bucket, key = "") {
    return `${this.endpoint}/${bucket}/${key.split("/").map(encodeURIComponent).join("/")}`;
  }
  async createBucket(bucket) {
    const res = await s3fetch(this.url(bucket), { method: "PUT" });
    if (!res.ok) throw new Error(`create bucket: ${res.status}`);
  }
  /** PUT an object; returns its ETag (quoted, as S3 gives it). */
  async put(bucket, key, body, contentType) {
    const res = await s3fetch(this.url(bucket, key), {
      method: "PUT",
      body,
      headers: { "content-type": contentType },
    });
    if (!res.ok) throw new Error(`put ${key}: ${res.status}`);
    return res.headers.get("etag");
  }
  async head(bucket, key) {
    return s3fetch(this.url(bucket, key), { method: "HEAD" });
  }
  async get(bucket, key) {
    const res = await s3fetch(this.url(bucket, key));
    return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
  }
  async keys(bucket, prefix) {
    const res = await s3fetch(`${this.endpoint}/${bucket}?list-type=2&prefix=${encodeURIComponent(prefix)}`);
    const xml = await res.text();
    if (!res.ok || !xml.includes("<ListBucketResult")) throw new Error(`list ${prefix}: ${res.status} ${xml}`);
    return [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]);
  }
}

/**
 * A directory laid out like the function zip: a copy of index.mjs, the bootstrap
 * (symlinked), config.json. Returns the imported shim module (one instance per dir).
 */
export async function functionDir(config, { bootstrap = bootstrapPath(), index = join(SHIM_DIR, "index.mjs") } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "imgedge-shim-"));
  copyFileSync(index, join(dir, "index.mjs"));
  symlinkSync(bootstrap, join(dir, "bootstrap"));
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  const shim = await import(join(dir, "index.mjs"));
  return { dir, shim };
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf) {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type, data) {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, "ascii");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/** An 8-bit RGB PNG of a colour gradient, `width`×`height`. */
export function gradientPng(width, height) {
  return rgbPng(width, height, (x, y) => [(x * 255) / width, (y * 255) / height, ((x + y) * 97) & 0xff]);
}

/** RGB noise (deterministic): it does not compress, so a PNG of it is ~3 bytes a pixel. */
export function noisePng(width, height) {
  let state = 0x9e3779b9;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return state & 0xff;
  };
  return rgbPng(width, height, () => [next(), next(), next()]);
}

/** An 8-bit RGBA PNG: a gradient whose left third is transparent and middle third half so. */
export function rgbaPng(width, height) {
  return rgbPng(width, height, (x, y) => [(x * 255) / width, (y * 255) / height, 90,
    x < width / 3 ? 0 : x < (2 * width) / 3 ? 128 : 255], 4);
}

/** An 8-bit RGB (or RGBA, `channels` 4) PNG whose pixel (x, y) is `pixel(x, y)`. */
function rgbPng(width, height, pixel, channels = 3) {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = channels === 4 ? 6 : 2; // colour type RGBA or RGB
  const raw = Buffer.alloc(height * (1 + width * channels));
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * channels);
    raw[row] = 0; // filter: none
    for (let x = 0; x < width; x++) {
      const p = row + 1 + x * channels;
      const v = pixel(x, y);
      for (let c = 0; c < channels; c++) raw[p + c] = v[c];
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", ihdr),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/**
 * A PNG checked as far as a decoder reads it: signature, every chunk's CRC, IHDR first and
 * IEND last, and IDAT inflating to exactly one filter byte (0–4) plus the pixel bytes per
 * row. Throws on a broken or truncated image; returns its size.
 */
export function checkPng(buf) {
  assert.ok(buf.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])), "PNG signature");
  const chunks = [];
  for (let at = 8; at < buf.length; ) {
    assert.ok(at + 12 <= buf.length, `chunk header at ${at} cut short`);
    const length = buf.readUInt32BE(at);
    const type = buf.subarray(at + 4, at + 8).toString("latin1");
    assert.ok(at + 12 + length <= buf.length, `${type} cut short`);
    const data = buf.subarray(at + 8, at + 8 + length);
    assert.equal(buf.readUInt32BE(at + 8 + length), crc32(buf.subarray(at + 4, at + 8 + length)), `${type} CRC`);
    chunks.push({ type, data });
    at += 12 + length;
  }
  assert.equal(chunks[0]?.type, "IHDR");
  assert.equal(chunks.at(-1)?.type, "IEND");
  const ihdr = chunks[0].data;
  const [width, height, depth, colour, interlace] = [ihdr.readUInt32BE(0), ihdr.readUInt32BE(4), ihdr[8], ihdr[9], ihdr[12]];
  assert.equal(interlace, 0, "our encoder writes no interlaced PNG");
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colour];
  const rowBytes = Math.ceil((width * channels * depth) / 8);
  const raw = inflateSync(Buffer.concat(chunks.filter((c) => c.type === "IDAT").map((c) => c.data)));
  assert.equal(raw.length, height * (1 + rowBytes), "pixel data size");
  for (let y = 0; y < height; y++) assert.ok(raw[y * (1 + rowBytes)] <= 4, `row ${y} filter`);
  return { width, height };
}

/** Width and height of a PNG from its IHDR. */
export function pngSize(buf) {
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

/** An origin-request event like the documented one, for `uri?querystring`. */
export function eventFor(uri, querystring, accept) {
  const event = fixture("image_001-w512-webp.json");
  const request = event.Records[0].cf.request;
  request.uri = uri;
  request.querystring = querystring;
  if (accept === undefined) delete request.headers.accept;
  else request.headers.accept = [{ key: "Accept", value: accept }];
  return event;
}

export function header(response, name) {
  return response.headers?.[name]?.[0]?.value;
}

/** Unpack a zip into `dir` (`unzip` keeps Unix modes; python's zipfile needs a chmod). */
export function unzipTo(zip, dir) {
  const hasUnzip = spawnSync("unzip", ["-v"], { stdio: "ignore" }).status === 0;
  const run = hasUnzip
    ? spawnSync("unzip", ["-q", "-o", zip, "-d", dir], { stdio: "inherit" })
    : spawnSync("python3", ["-m", "zipfile", "-e", zip, dir], { stdio: "inherit" });
  if (run.status !== 0) throw new Error(`cannot unzip ${zip}`);
  if (!hasUnzip) chmodSync(join(dir, "bootstrap"), 0o755);
}

/** Names in a zip, sorted. */
export function zipEntries(zip) {
  const run = spawnSync("python3", ["-c", "import sys,zipfile; print('\\n'.join(sorted(zipfile.ZipFile(sys.argv[1]).namelist())))", zip], {
    encoding: "utf8",
  });
  if (run.status !== 0) throw new Error(`cannot list ${zip}: ${run.stderr}`);
  return run.stdout.trim().split("\n");
}

/** The uri a rewrite to object `key` carries (segments percent-encoded, `/` kept). */
export function uriOf(key) {
  return "/" + key.split("/").map(encodeURIComponent).join("/");
}

/**
 * The answer serves the stored variant `key` in one of the two shapes of the origin-request:
 * a rewrite to it, or (small variants) its exact bytes as a base64 body with the stored
 * object's Content-Type, Cache-Control and ETag. Returns "rewrite" or "body".
 */
export async function assertServesVariant(moto, bucket, res, key) {
  if (res.status === undefined) {
    assert.equal(res.uri, uriOf(key), JSON.stringify(res).slice(0, 300));
    assert.equal(res.querystring, "");
    return "rewrite";
  }
  assert.equal(res.status, "200", JSON.stringify(res).slice(0, 300));
  assert.equal(res.bodyEncoding, "base64");
  const stored = await moto.get(bucket, key);
  assert.equal(stored.status, 200, `${key} is stored`);
  assert.ok(Buffer.from(res.body, "base64").equals(stored.body), "the body is the stored object, byte for byte");
  assert.equal(header(res, "content-type"), stored.headers.get("content-type"));
  assert.equal(header(res, "cache-control"), "public, max-age=31536000, immutable");
  assert.equal(header(res, "etag"), stored.headers.get("etag"));
  return "body";
}

/**
 * `scripts/s3_proxy.py` between the bootstrap and moto: latency and injected faults, switched
 * through its control listener while it runs (see the script's doc).
 */
export class FaultProxy {
  static async start(upstream) {
    const proxy = new FaultProxy();
    const script = join(REPO, "scripts/s3_proxy.py");
    proxy.child = spawn(process.env.PYTHON ?? "python3", [script, "--upstream", upstream.replace("http://", "")], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    // Not left behind by a test file that ends without its `after` (a crash, a timeout).
    process.once("exit", () => proxy.child.kill("SIGKILL"));
    const line = await new Promise((resolve, reject) => {
      let out = "";
      proxy.child.stdout.on("data", (d) => {
        out += d;
        if (out.includes("\n")) resolve(out.split("\n")[0]);
      });
      proxy.child.once("exit", (code) => reject(new Error(`s3_proxy.py exited (${code}) before its URLs`)));
    });
    ({ proxy: proxy.url, control: proxy.control } = JSON.parse(line));
    return proxy;
  }
  /** e.g. `{mode: "reset", skip: 4}` or `{delay_ms: 150}`; what is left out is cleared. */
  async set(fault) {
    const res = await fetch(`${this.control}/fault`, { method: "POST", body: JSON.stringify(fault) });
    assert.equal(res.status, 200, await res.clone().text());
    return res.json();
  }
  /** No fault, no latency; returns the state of the fault it ended (what it met). */
  async clear() {
    const ended = await this.state();
    await this.set({});
    return ended;
  }
  /** {mode, delay_ms, skip, requests, faulted}: counts since the fault was set. */
  async state() {
    return (await fetch(`${this.control}/fault`)).json();
  }
  async stop() {
    if (!this.child || this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once("exit", r));
    this.child.kill("SIGKILL");
    await exited;
  }
}

/**
 * What a fault may never leave behind, checked at moto: every object under `_variants/` is a
 * whole PNG made from its master's current bytes (`source-etag` = the master's ETag), and no
 * failure is remembered. Returns the variant keys, sorted.
 */
export async function assertBucketSound(moto, bucket, context) {
  const keys = (await moto.keys(bucket, "_variants/")).sort();
  for (const key of keys) {
    assert.ok(!key.endsWith("/error.json"), `${context}: a store fault was remembered as the image's failure: ${key}`);
    const object = await moto.get(bucket, key);
    assert.equal(object.status, 200, `${context}: ${key}`);
    checkPng(object.body);
    const master = key.replace(/^_variants\/v\d+\//, "").replace(/\/[^/]*$/, "");
    const head = await moto.head(bucket, master);
    assert.equal(object.headers.get("x-amz-meta-source-etag"), head.headers.get("etag"), `${context}: ${key} not made from ${master}`);
  }
  return keys;
}
