// Cold start and warm per-event overhead of the shim + bootstrap, against moto.
//
//   node infra/edge-shim/bench.mjs [--zip dist/edge-function.zip] [--cold N] [--warm N]
//
// Without --zip it runs the bootstrap of the test kit (IMGEDGE_BOOTSTRAP or the debug
// build). Cold start = a fresh Node process importing index.mjs and answering its first
// event (module load, Runtime API server, bootstrap spawn and init, S3 client, the event).
// Warm overhead = sequential events in one process after warm-up: a bad query (answered
// by the bootstrap without I/O, so the time is the shim's relay plus the runtime client)
// and a cached variant (two HEADs to the local S3 server on top).
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

import { Moto, eventFor, fixture, functionDir, gradientPng, unzipTo } from "./test/helpers.mjs";

const BUCKET = "bench-bucket";
const MASTER = "outputs/2025-02-01/image_001.png";

function arg(name, fallback) {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

function stats(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p) => s[Math.min(s.length - 1, Math.floor(p * s.length))];
  return { n: s.length, min: s[0], median: q(0.5), p95: q(0.95), max: s[s.length - 1] };
}

const fmt = (x) => x.toFixed(2).padStart(8);

// One cold start, in this (fresh) process: `node bench.mjs --cold-once DIR`.
if (process.argv.includes("--cold-once")) {
  const dir = arg("--cold-once");
  const kind = arg("--event", "cached");
  const event = kind === "bad" ? eventFor(`/${MASTER}`, "w=0") : fixture("image_001-w512-webp.json");
  const t0 = performance.now();
  const shim = await import(join(dir, "index.mjs"));
  const res = await shim.handler(event);
  const ms = performance.now() - t0;
  await shim.shutdown();
  process.stdout.write(JSON.stringify({ ms, status: res.status ?? "rewrite" }) + "\n");
  process.exit(0);
}

const coldRuns = Number(arg("--cold", "10"));
const warmRuns = Number(arg("--warm", "300"));
const zip = arg("--zip");

const moto = await Moto.start();
await moto.createBucket(BUCKET);
await moto.put(BUCKET, MASTER, gradientPng(640, 480), "image/png");
const config = { bucket: BUCKET, region: "us-east-1", endpoint_url: moto.endpoint };

let dir;
let shim;
if (zip) {
  dir = mkdtempSync(join(tmpdir(), "imgedge-bench-"));
  unzipTo(zip, dir);
  const packaged = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...packaged, ...config }));
  shim = await import(join(dir, "index.mjs"));
} else {
  ({ dir, shim } = await functionDir(config));
}

// Warm: render the variant once, then time repeated events.
const first = await shim.handler(fixture("image_001-w512-webp.json"));
// A rewritten request, or (a small variant) the bytes as a generated 200.
if (first.status && first.status !== "200") throw new Error(`warm-up failed: ${JSON.stringify(first).slice(0, 500)}`);
const warm = {};
for (const [name, event] of [
  ["bad query (no I/O)", eventFor(`/${MASTER}`, "w=0")],
  ["cached variant (2 HEADs)", fixture("image_001-w512-webp.json")],
]) {
  for (let i = 0; i < 20; i++) await shim.handler(event);
  const samples = [];
  for (let i = 0; i < warmRuns; i++) {
    const t0 = performance.now();
    await shim.handler(event);
    samples.push(performance.now() - t0);
  }
  warm[name] = stats(samples);
}
await shim.shutdown();

// Cold: fresh processes, the variant already in the bucket.
const cold = {};
for (const kind of ["bad", "cached"]) {
  const samples = [];
  for (let i = 0; i < coldRuns; i++) {
    const run = spawnSync(process.execPath, [process.argv[1], "--cold-once", dir, "--event", kind], {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "ignore"],
    });
    const line = run.stdout.trim().split("\n").pop();
    samples.push(JSON.parse(line).ms);
  }
  cold[kind === "bad" ? "first event: bad query" : "first event: cached variant"] = stats(samples);
}
await moto.stop();

console.log(`imgedge shim bench — bootstrap: ${zip ? `${zip} (packaged)` : "test kit build"}; node ${process.version}`);
console.log(`${"measure".padEnd(34)}${"n".padStart(5)}${"min".padStart(9)}${"median".padStart(9)}${"p95".padStart(9)}${"max".padStart(9)}  (ms)`);
for (const [name, s] of [...Object.entries(cold).map(([k, v]) => [`cold ${k}`, v]), ...Object.entries(warm).map(([k, v]) => [`warm ${k}`, v])]) {
  console.log(`${name.padEnd(34)}${String(s.n).padStart(5)} ${fmt(s.min)} ${fmt(s.median)} ${fmt(s.p95)} ${fmt(s.max)}`);
}
