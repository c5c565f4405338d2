// Plays CloudFront around an origin-request handler for the distance task of bench.py:
// `node origin-driver.mjs HANDLER.mjs ORIGIN_URL BUCKET` imports the handler (the packaged
// shim, or the sharp peer) in this process, then for each JSON line on stdin
// {"event": {...}} sends it the event and, when the answer is a rewritten request, GETs the
// rewritten URI from ORIGIN_URL (path-style: /BUCKET/key) on a kept-alive connection, as
// CloudFront fetches from its S3 origin. It answers one line per event, prefixed with "@@ "
// (the bootstrap child writes its own log lines to the same stdout):
//   {"handler_ms", "follow_ms", "total_ms", "shape": "body"|"rewrite"|"error", "status", "bytes"}
import { Agent, request } from "node:http";
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const [handlerPath, originUrl, bucket] = process.argv.slice(2);
const t0 = performance.now();
const handlerModule = await import(pathToFileURL(handlerPath).href);
const { handler } = handlerModule;
const importMs = performance.now() - t0;
// CloudFront keeps its connections to an origin open between requests.
const agent = new Agent({ keepAlive: true, maxSockets: 8 });
// moto routes a request to S3 by the credential scope of its Authorization header (the
// signature is not checked); CloudFront's OAC signs its GETs the same way.
const AUTH = "AWS4-HMAC-SHA256 Credential=bench/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

function follow(uri) {
  return new Promise((resolve, reject) => {
    const req = request(`${originUrl}/${bucket}${uri}`, { agent, headers: { authorization: AUTH } }, (res) => {
      let bytes = 0;
      res.on("data", (c) => (bytes += c.length));
      res.on("end", () => resolve({ status: res.statusCode, bytes }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

function say(obj) {
  process.stdout.write("@@ " + JSON.stringify(obj) + "\n");
}

say({ ready: true, import_ms: importMs });
for await (const line of createInterface({ input: process.stdin })) {
  if (!line.trim()) continue;
  const { event } = JSON.parse(line);
  try {
    const start = performance.now();
    const result = await handler(event, {});
    const answered = performance.now();
    let reply;
    if (result.status === undefined) {
      const got = await follow(result.uri + (result.querystring ? `?${result.querystring}` : ""));
      reply = { shape: "rewrite", status: got.status, bytes: got.bytes, uri: result.uri };
    } else {
      const ok = result.status === "200";
      const bytes = ok && result.body ? Buffer.from(result.body, result.bodyEncoding === "base64" ? "base64" : "utf8").length : 0;
      reply = { shape: ok ? "body" : "error", status: Number(result.status), bytes, body: ok ? undefined : result.body };
    }
    const done = performance.now();
    say({ ...reply, handler_ms: answered - start, follow_ms: done - answered, total_ms: done - start });
  } catch (e) {
    say({ error: String(e?.stack ?? e) });
  }
}
await handlerModule.shutdown?.(); // the shim's bootstrap child goes with us
process.exit(0);
