// Do two packaged functions make the same variants? Sends the same origin-request events to
// both (each its own bucket on one moto server, the same masters) and compares every stored
// variant byte for byte. Used to check that a change meant to keep outputs (a refactor, a
// smaller binary) kept them.
//
//   node infra/edge-shim/compare-zips.mjs OLD.zip NEW.zip MASTER_FILE…
//
// Needs moto_server on PATH (or MOTO_SERVER). Exits 1 when a variant differs or exists on
// one side only.
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { basename, extname, join } from "node:path";

import { Moto, eventFor, unzipTo } from "./test/helpers.mjs";

const QUERIES = [
  "w=512&fmt=webp", "w=256", "w=300&h=200", "w=300&h=200&fit=contain&bg=ff0000",
  "w=300&h=200&fit=fill", "w=300&h=200&fit=inside", "w=300&h=200&fit=outside",
  "w=640&fmt=jpeg&q=70", "w=128&fmt=png", "w=200&dpr=2.5&fmt=webp&q=90", "h=333&fmt=jpg",
  "w=64&fmt=auto",
];
const TYPES = { ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp" };

const [oldZip, newZip, ...masters] = process.argv.slice(2);
if (!oldZip || !newZip || masters.length === 0) {
  console.error("usage: node infra/edge-shim/compare-zips.mjs OLD.zip NEW.zip MASTER_FILE…");
  process.exit(2);
}

const moto = await Moto.start();
const sides = [];
for (const [name, zip] of [["old", oldZip], ["new", newZip]]) {
  const bucket = `compare-${name}`;
  await moto.createBucket(bucket);
  const dir = mkdtempSync(join(tmpdir(), `imgedge-compare-${name}-`));
  unzipTo(zip, dir);
  const packaged = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  writeFileSync(join(dir, "config.json"), JSON.stringify({ ...packaged, bucket, endpoint_url: moto.endpoint }));
  sides.push({ name, bucket, shim: await import(join(dir, "index.mjs")) });
}

let events = 0;
for (const file of masters) {
  const key = `outputs/compare/${basename(file)}`;
  const body = readFileSync(file);
  for (const { bucket } of sides) await moto.put(bucket, key, body, TYPES[extname(file).toLowerCase()]);
  for (const query of QUERIES) {
    for (const { shim } of sides) await shim.handler(eventFor(`/${key}`, query, "image/webp,*/*"));
    events++;
  }
}

const digest = (buf) => createHash("sha256").update(buf).digest("hex");
const stored = [];
for (const { bucket } of sides) {
  const map = new Map();
  for (const k of await moto.keys(bucket, "_variants/")) {
    if (!k.endsWith("/error.json")) map.set(k.replace(/^_variants\/v\d+\//, ""), digest((await moto.get(bucket, k)).body));
  }
  stored.push(map);
}
const [a, b] = stored;
// A key on one side only whose bytes the other side stored under another key is a rename
// (e.g. a canonical-form change such as clamping to the master's size), not a new output.
let same = 0;
const renamed = [];
const differ = [];
const bDigests = new Map([...b].map(([k, d]) => [d, k]));
for (const k of new Set([...a.keys(), ...b.keys()])) {
  if (a.get(k) === b.get(k)) same++;
  else if (a.has(k) && !b.has(k) && bDigests.has(a.get(k))) renamed.push(`${k} → ${bDigests.get(a.get(k))}`);
  else if (b.has(k) && !a.has(k) && [...a.values()].includes(b.get(k))) continue; // the other half of a rename
  else differ.push(`${k}: ${a.get(k)?.slice(0, 12) ?? "(only new)"} vs ${b.get(k)?.slice(0, 12) ?? "(only old)"}`);
}
for (const { shim } of sides) await shim.shutdown();
await moto.stop();
console.log(`${events} events per side, ${masters.length} masters; variants: old ${a.size}, new ${b.size}; ` +
  `identical bytes under the same key ${same}, under a renamed key ${renamed.length}, different ${differ.length}`);
for (const line of renamed) console.log(`  renamed: ${line}`);
for (const line of differ) console.log(`  differs: ${line}`);
process.exit(differ.length ? 1 : 0);
