// The REAL bootstrap's output in the Lambda (DESIGN.md §11): one line per request on
// stdout that is both the JSON log record and a CloudWatch Embedded Metric Format document.
// The function runs in a child process so its stdout can be read whole; every line is
// checked against the EMF specification's rules.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { Moto, eventFor, functionDir, gradientPng } from "./helpers.mjs";

const BUCKET = "emf-bucket";
const MASTER = "outputs/2025-02-01/image_001.png";
const UNITS = new Set([
  "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes",
  "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count",
  "Bytes/Second", "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second",
  "Bits/Second", "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second",
  "Count/Second", "None",
]);

/** The EMF specification's rules on one document; returns the problems found. */
export function emfProblems(doc) {
  const out = [];
  const aws = doc._aws;
  if (typeof aws !== "object" || aws === null) return ["no _aws object"];
  if (!Number.isInteger(aws.Timestamp) || aws.Timestamp < 0) out.push("_aws.Timestamp is not a non-negative integer");
  if (!Array.isArray(aws.CloudWatchMetrics) || aws.CloudWatchMetrics.length === 0) return [...out, "no CloudWatchMetrics"];
  for (const d of aws.CloudWatchMetrics) {
    if (typeof d.Namespace !== "string" || !d.Namespace.trim() || d.Namespace.length > 1024) out.push("bad Namespace");
    if (!Array.isArray(d.Dimensions)) out.push("Dimensions is not an array");
    for (const set of d.Dimensions ?? []) {
      if (!Array.isArray(set) || set.length > 30) out.push("bad dimension set");
      for (const k of set) {
        if (typeof doc[k] !== "string" || !doc[k] || doc[k].length > 1024) out.push(`dimension ${k} is not a top-level string`);
      }
    }
    if (!Array.isArray(d.Metrics) || d.Metrics.length > 100) out.push("bad Metrics");
    for (const m of d.Metrics ?? []) {
      if (typeof m.Name !== "string" || !m.Name || m.Name.length > 1024) out.push("bad metric name");
      if (m.Unit !== undefined && !UNITS.has(m.Unit)) out.push(`${m.Name}: unknown unit ${m.Unit}`);
      const v = doc[m.Name];
      const numeric = typeof v === "number" || (Array.isArray(v) && v.length <= 100 && v.every((x) => typeof x === "number"));
      if (!numeric) out.push(`metric ${m.Name} has no numeric value`);
    }
  }
  return out;
}

let moto;
let dir;
let shim; // loaded by functionDir in this process too; its child must be stopped after

before(async () => {
  moto = await Moto.start();
  await moto.createBucket(BUCKET);
  await moto.put(BUCKET, MASTER, gradientPng(200, 100), "image/png");
  ({ dir, shim } = await functionDir({ bucket: BUCKET, region: "us-east-1", endpoint_url: moto.endpoint }));
});

after(async () => {
  await shim?.shutdown();
  await moto?.stop();
});

/** Run the shim in a child node process on `events`; its stdout, line by line. */
function runFunction(events) {
  const script = `
    const shim = await import(${JSON.stringify(join(dir, "index.mjs"))});
    for (const event of ${JSON.stringify(events)}) await shim.handler(event, { awsRequestId: "lambda-req" });
    await shim.shutdown();
  `;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    let stdout = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(stdout.split("\n").filter(Boolean)) : reject(new Error(`exit ${code}`))));
  });
}

test("every request writes one line that is its log record and a valid EMF document", async () => {
  const events = [
    eventFor(`/${MASTER}`, "w=100&fmt=webp"),
    eventFor(`/${MASTER}`, "w=100&fmt=webp"),
    eventFor(`/${MASTER}`, ""),
    eventFor("/outputs/nope.png", "w=10"),
    eventFor(`/${MASTER}`, "w=0"),
  ];
  const lines = await runFunction(events);
  const docs = lines.map((l) => JSON.parse(l)).filter((d) => d._aws);
  assert.equal(docs.length, events.length, lines.join("\n"));
  for (const doc of docs) {
    assert.deepEqual(emfProblems(doc), [], JSON.stringify(doc));
    assert.equal(doc._aws.CloudWatchMetrics[0].Namespace, "imgedge");
    assert.equal(doc.message, "request");
    assert.equal(doc.Requests, 1);
  }
  assert.deepEqual(docs.map((d) => d.outcome), ["built", "reused", "master", "not_found", "invalid_parameter"]);
  assert.deepEqual(docs.map((d) => d.Outcome), ["built", "reused", "master", "error", "error"]);
  assert.equal(docs[3].ErrorCode, "not_found");
  assert.equal(docs[3].status, 404);
  // The request id is CloudFront's (the event's requestId), never empty.
  for (const d of docs) assert.ok(d.request_id.length > 0);
  // A build's stages and store trips; a reuse is one round trip.
  assert.ok(docs[0].RenderMs > 0 && docs[0].BytesIn > 0 && docs[0].BytesOut > 0, JSON.stringify(docs[0]));
  assert.equal(docs[1].store_round_trips, 1, JSON.stringify(docs[1]));
  assert.equal(docs[2].store_round_trips, 0, "a master request makes no store call");
});

test("the checker refuses broken documents", () => {
  const good = { _aws: { Timestamp: 1, CloudWatchMetrics: [{ Namespace: "imgedge", Dimensions: [["Outcome"]], Metrics: [{ Name: "Requests", Unit: "Count" }] }] }, Outcome: "built", Requests: 1 };
  assert.deepEqual(emfProblems(good), []);
  assert.notDeepEqual(emfProblems({ ...good, Requests: "1" }), []);
  assert.notDeepEqual(emfProblems({ ...good, Outcome: undefined }), []);
  assert.notDeepEqual(emfProblems({ ...good, _aws: { ...good._aws, Timestamp: "now" } }), []);
});
