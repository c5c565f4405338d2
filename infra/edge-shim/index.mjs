// imgedge Lambda@Edge shim. Lambda@Edge has no custom runtime, so this Node.js handler
// serves the Lambda Runtime API on loopback to the bundled Rust `bootstrap` (a child
// process) and relays each CloudFront event to it and its answer back.
//
// Protocol (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html), on
// 127.0.0.1:<ephemeral port>:
//   GET  /2018-06-01/runtime/invocation/next           long poll; hands over queued events in order
//   POST /2018-06-01/runtime/invocation/{id}/response  resolves that event's handler promise
//   POST /2018-06-01/runtime/invocation/{id}/error     → 502 generated response
//   POST /2018-06-01/runtime/init/error                → 502 for everything pending
// The child is started when the module loads (Lambda's init phase, so the first event finds
// it ready), restarted on the next event after it dies, killed and replaced when it does not
// ask for an event within INIT_TIMEOUT_MS of its spawn, and never waited on past the deadline
// (default 25 s, below CloudFront's 30 s origin timeout). Events and answers are size-bounded.
// No npm dependencies.

import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const API = "/2018-06-01/runtime";
// Lambda@Edge allows no environment variables of our own; these only serve tests/bench.
const DEADLINE_MS = Number(process.env.IMGEDGE_SHIM_DEADLINE_MS) || 25_000;
// From spawn to the first GET /next. The bootstrap gets there in ~20 ms (a cold start with
// its S3 client); 5 s is far beyond that and leaves two tries within the 25 s deadline.
const INIT_TIMEOUT_MS = Number(process.env.IMGEDGE_SHIM_INIT_TIMEOUT_MS) || 5_000;
// An origin-request event is a few KB (no body: IncludeBody is off); even with a body,
// CloudFront sends at most 1 MB base64. 2 MiB only stops what is not such an event.
export const MAX_EVENT_BYTES = 2 * 1024 * 1024;
// CloudFront takes at most 1 MB of generated response; 2 MiB bounds what the shim buffers
// from a child that has gone wrong (anything above it is read and dropped, the child killed).
export const MAX_ANSWER_BYTES = 2 * 1024 * 1024;
const BOOTSTRAP = process.env.IMGEDGE_SHIM_BOOTSTRAP || join(HERE, "bootstrap");
const CONFIG = join(HERE, "config.json");

/** A generated CloudFront response in the shape of the Rust errors (no-store: our failure). */
export function failureResponse(status, message) {
  const description = { 500: "Internal Server Error", 502: "Bad Gateway", 504: "Gateway Timeout" }[status] ?? "Error";
  return {
    status: String(status),
    statusDescription: description,
    headers: {
      "cache-control": [{ key: "Cache-Control", value: "no-store" }],
      "content-type": [{ key: "Content-Type", value: "application/json" }],
    },
    body: JSON.stringify({ status, error: "internal", message }),
  };
}

const state = {
  server: null, // the Runtime API server (kept referenced: Node must not exit between events)
  port: 0,
  child: null, // the bootstrap process
  starting: null, // promise of a server being started
  queue: [], // invocations not yet handed to the child, in arrival order
  inflight: new Map(), // id → invocation handed to the child
  pollers: [], // parked GET /next responses
  hungStarts: 0, // children killed in a row for not polling in time (reset by a poll)
};

/** Settle an invocation exactly once and forget it. */
function settle(inv, result) {
  if (inv.done) return;
  inv.done = true;
  clearTimeout(inv.timer);
  state.inflight.delete(inv.id);
  const i = state.queue.indexOf(inv);
  if (i >= 0) state.queue.splice(i, 1);
  inv.resolve(result);
}

function dispatch() {
  while (state.queue.length > 0 && state.pollers.length > 0) {
    const res = state.pollers.shift();
    if (res.destroyed || res.socket?.destroyed) continue; // a poller of a dead child
    const inv = state.queue.shift();
    state.inflight.set(inv.id, inv);
    const body = inv.body;
    res.writeHead(200, {
      "content-type": "application/json",
      "content-length": Buffer.byteLength(body),
      "lambda-runtime-aws-request-id": inv.id,
      "lambda-runtime-deadline-ms": String(inv.deadline),
      "lambda-runtime-invoked-function-arn": inv.arn,
      "lambda-runtime-trace-id": inv.traceId,
    });
    res.end(body);
  }
}

/**
 * A request body as text, or null when it exceeds `limit` bytes: then `onOverflow` runs at
 * once and the rest is read and dropped, so memory stays bounded whatever the child sends.
 */
function readBody(req, limit = MAX_ANSWER_BYTES, onOverflow = () => {}) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    let over = false;
    req.on("data", (c) => {
      if (over) return;
      size += c.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        onOverflow();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => resolve(over ? null : Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function reply(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(body) });
  res.end(body);
}

async function route(req, res) {
  const url = req.url ?? "";
  if (req.method === "GET" && url === `${API}/invocation/next`) {
    if (state.child && !state.child.polled) {
      state.child.polled = true;
      clearTimeout(state.child.initTimer);
      state.hungStarts = 0;
    }
    state.pollers.push(res);
    dispatch();
    return;
  }
  const m = url.match(/^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/);
  if (req.method === "POST" && m) {
    const inv = state.inflight.get(decodeURIComponent(m[1]));
    const child = state.child;
    const body = await readBody(req, MAX_ANSWER_BYTES, () => {
      if (!inv) return;
      console.error(`bootstrap answer for ${inv.id} exceeds ${MAX_ANSWER_BYTES} bytes; killing it`);
      settle(inv, failureResponse(502, "the image function returned an answer that is too large"));
      // A child producing such answers is broken: replace it rather than drain it forever.
      child?.kill("SIGKILL");
    });
    if (body === null) {
      reply(res, 413, { errorMessage: `body over ${MAX_ANSWER_BYTES} bytes`, errorType: "RequestEntityTooLarge" });
      return;
    }
    // A late answer for an invocation already timed out is accepted and dropped.
    if (inv && m[2] === "response") {
      let result;
      try {
        result = JSON.parse(body);
      } catch {
        result = failureResponse(502, "the image function returned an unreadable answer");
      }
      settle(inv, result);
    } else if (inv) {
      console.error(`bootstrap invocation error ${inv.id}: ${body}`);
      settle(inv, failureResponse(502, "the image function failed; try again later"));
    }
    reply(res, 202, { status: "OK" });
    return;
  }
  if (req.method === "POST" && url === `${API}/init/error`) {
    console.error(`bootstrap init error: ${(await readBody(req)) ?? "(too large to log)"}`);
    reply(res, 202, { status: "OK" });
    failAll("the image function could not start; try again later");
    return;
  }
  reply(res, 404, { errorMessage: `no route ${req.method} ${url}`, errorType: "NotFound" });
}

/** Every pending invocation gets a 502 (the child is gone or could not start). */
function failAll(message) {
  for (const inv of [...state.inflight.values(), ...state.queue]) settle(inv, failureResponse(502, message));
}

async function ensureServer() {
  if (state.server) return;
  state.starting ??= new Promise((resolve, reject) => {
    const server = createServer((req, res) => {
      route(req, res).catch((e) => {
        console.error("runtime API error", e);
        if (!res.headersSent) reply(res, 500, { errorMessage: String(e), errorType: "ShimError" });
      });
    });
    server.keepAliveTimeout = 0; // the child's long polls may idle for minutes
    server.requestTimeout = 0;
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      state.server = server;
      state.port = server.address().port;
      resolve();
    });
  });
  await state.starting;
}

function startChild() {
  const env = {
    // Lambda sets these for every runtime; defaults only for local runs and tests.
    AWS_LAMBDA_FUNCTION_NAME: "imgedge-edge",
    AWS_LAMBDA_FUNCTION_VERSION: "$LATEST",
    AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "1024",
    ...process.env, // AWS_* credentials and region pass through unchanged
    AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${state.port}`,
    IMGEDGE_CONFIG: CONFIG,
  };
  const child = spawn(BOOTSTRAP, [], { env, stdio: ["ignore", "inherit", "inherit"] });
  child.polled = false; // set once it asks for an event: it started up
  child.hung = false; // set when killed for not polling within INIT_TIMEOUT_MS
  state.child = child;
  // Measured from spawn, not from an event: a child stuck in its init (a hung connection,
  // a deadlock) would otherwise hold every event until its deadline, forever.
  child.initTimer = setTimeout(() => {
    if (child.polled || child.exitCode !== null || child.signalCode !== null) return;
    console.error(`bootstrap did not ask for an event within ${INIT_TIMEOUT_MS} ms of its start; killing it`);
    child.hung = true;
    child.kill("SIGKILL");
  }, INIT_TIMEOUT_MS);
  child.on("error", (e) => {
    // Spawning failed (no `exit` follows): nothing can serve the pending events.
    console.error(`cannot run ${BOOTSTRAP}: ${e.message}`);
    clearTimeout(child.initTimer);
    if (state.child === child) state.child = null;
    if (!child.pid) failAll("the image function could not start; try again later");
  });
  child.on("exit", (code, signal) => {
    clearTimeout(child.initTimer);
    if (state.child === child) state.child = null;
    // Every parked long poll was the dead child's (a new child starts only below).
    for (const res of state.pollers) res.destroy();
    state.pollers = [];
    console.error(`bootstrap exited (code ${code}, signal ${signal})`);
    if (child.hung) {
      // One more try at once (a slow start may be a passing fault); a second hang in a row
      // fails the waiting events now rather than at their deadline, and the next event
      // starts the next child: no respawn loop while idle.
      state.hungStarts += 1;
      if (state.hungStarts < 2 && !state.closed) {
        startChild();
      } else {
        failAll(`the image function did not start within ${INIT_TIMEOUT_MS} ms; try again later`);
      }
      return;
    }
    if (!child.polled) {
      // Died during init (bad config, missing binary…): restarting now would only loop.
      failAll("the image function could not start; try again later");
      return;
    }
    for (const inv of [...state.inflight.values()]) {
      settle(inv, failureResponse(502, "the image function failed; try again later"));
    }
    // Events still queued are the "next events": serve them with a fresh child.
    if (state.queue.length > 0 && !state.closed) startChild();
  });
}

/** The Lambda handler: one CloudFront origin-request event in, its result out. */
export async function handler(event, context) {
  // Serialised once, here: its size is checked before anything is queued or started.
  let body;
  try {
    body = JSON.stringify(event);
  } catch {
    // cyclic or BigInt: not an event CloudFront sends
  }
  if (body === undefined) return failureResponse(500, "the request could not be passed to the image function");
  const size = Buffer.byteLength(body);
  if (size > MAX_EVENT_BYTES) {
    console.error(`event of ${size} bytes refused (at most ${MAX_EVENT_BYTES})`);
    return failureResponse(500, `the request is too large for the image function (at most ${MAX_EVENT_BYTES} bytes)`);
  }
  await ensureServer();
  if (!state.child && !state.closed) startChild();
  const remaining = context?.getRemainingTimeInMillis?.();
  const budget = remaining ? Math.max(1, Math.min(DEADLINE_MS, remaining - 500)) : DEADLINE_MS;
  return new Promise((resolve) => {
    const inv = {
      id: randomUUID(),
      body,
      resolve,
      done: false,
      deadline: Date.now() + budget,
      arn: context?.invokedFunctionArn ?? "arn:aws:lambda:us-east-1:000000000000:function:imgedge-edge",
      traceId: process.env._X_AMZN_TRACE_ID ?? "",
    };
    inv.timer = setTimeout(() => {
      const stuck = state.inflight.has(inv.id);
      // Still queued with nothing in flight: the child has stopped asking for events.
      const deaf = !stuck && state.queue.includes(inv) && state.inflight.size === 0 && state.child?.polled;
      settle(inv, failureResponse(504, `the image function did not answer within ${budget} ms`));
      // A child stuck past the deadline would block every later event: replace it.
      if ((stuck || deaf) && state.child) state.child.kill("SIGKILL");
    }, budget);
    state.queue.push(inv);
    if (!state.child && state.closed) settle(inv, failureResponse(502, "the image function is shut down"));
    dispatch();
  });
}

/** The bootstrap's pid (tests kill it to check recovery). */
export function childPid() {
  return state.child?.pid;
}

/** Events handed to the child and not answered yet (tests use it to kill mid-event). */
export function inflightCount() {
  return state.inflight.size;
}

/** Stop the child and the server so a test process can exit. Lambda never calls it. */
export async function shutdown() {
  state.closed = true;
  await state.starting?.catch(() => {}); // a server still starting would outlive the close
  const child = state.child;
  if (child) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    await exited;
  }
  failAll("the image function is shut down");
  for (const res of state.pollers) res.destroy();
  state.pollers = [];
  if (state.server) {
    state.server.closeAllConnections?.();
    await new Promise((r) => state.server.close(r));
  }
  state.server = null;
  state.starting = null;
}

// Lambda runs module code in the function's init phase, before the first event: start the
// Runtime API and the bootstrap there, so the first event finds the child initialised (S3
// client built) and already polling. A failure here is logged and the first event retries.
ensureServer()
  .then(() => {
    if (!state.child && !state.closed) startChild();
  })
  .catch((e) => console.error(`imgedge shim init: ${e.message}`));
