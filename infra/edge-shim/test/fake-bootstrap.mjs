#!/usr/bin/env node
// A stand-in for the Rust bootstrap that misbehaves on request, for the shim's supervision
// tests (what is tested is the shim, not the image pipeline). Started by fake-bootstrap.sh,
// which records each start's pid in `starts` beside $IMGEDGE_CONFIG and makes the first
// `fake.hang_starts` starts of the config (-1: every start) hang before polling. This part
// speaks the Lambda Runtime API at $AWS_LAMBDA_RUNTIME_API like the real one, records each
// event's uri in `events`, and acts on the uri:
//   /crash          exits with code 3 (a crash mid-event)
//   /huge-answer    posts an answer of 3 MiB
//   /stop-polling   answers, then never asks for another event
//   anything else   answers the request with `uri` replaced by "/answered-by/<pid>"
import { appendFileSync } from "node:fs";
import { request } from "node:http";
import { dirname, join } from "node:path";

// `node --test infra/edge-shim/test/` runs every module here: outside the shim, do nothing.
if (!process.env.AWS_LAMBDA_RUNTIME_API) process.exit(0);

const dir = dirname(process.env.IMGEDGE_CONFIG);
const [host, port] = process.env.AWS_LAMBDA_RUNTIME_API.split(":");
const API = "/2018-06-01/runtime";


function call(method, path, body) {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, method, path, agent: false }, (res) => {
      const chunks = [];
      res.on("data", (c) => chunks.push(c));
      res.on("end", () => resolve({ headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

const forever = () => new Promise(() => setInterval(() => {}, 1 << 30));

for (;;) {
  const next = await call("GET", `${API}/invocation/next`);
  const id = next.headers["lambda-runtime-aws-request-id"];
  const cf = JSON.parse(next.body).Records[0].cf.request;
  appendFileSync(join(dir, "events"), `${cf.uri}\n`);
  if (cf.uri === "/crash") process.exit(3);
  const answer =
    cf.uri === "/huge-answer"
      ? { ...cf, body: "x".repeat(3 * 1024 * 1024) }
      : { ...cf, uri: `/answered-by/${process.pid}` };
  await call("POST", `${API}/invocation/${id}/response`, JSON.stringify(answer)).catch(() => {});
  if (cf.uri === "/stop-polling") await forever();
}
