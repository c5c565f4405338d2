// Runs the viewer-request function's code the way CloudFront does, in Node: the file's
// source in a fresh context (strict mode, a top-level `handler`), its two imports
// ('crypto', 'cloudfront') bound to Node's crypto and a KeyValueStore stand-in.
// Used by build.mjs (to check a policy with the function's own parser) and the tests, which
// also build their events here, in the shapes CloudFront documents.
import nodeCrypto from 'node:crypto';
import vm from 'node:vm';

const IMPORT = /import\s*([\w$]+)\s*from\s*["']([\w-]+)["'];?/g;

// cf.kvs() as CloudFront documents it: get() rejects for a missing key, exists() does not.
// `store` is shared and mutable, so one loaded function can be run with different keys.
export function kvsStandIn(store) {
  return {
    kvs: () => ({
      exists: async (key) => Object.prototype.hasOwnProperty.call(store, key),
      get: async (key) => {
        if (!Object.prototype.hasOwnProperty.call(store, key)) throw new Error(`KVS key not found: ${key}`);
        return store[key];
      },
    }),
  };
}

/** Load function code; returns its context (handler, canonical, …) and the KVS store. */
export function loadFunction(code, filename = 'viewer-request.js') {
  const store = {};
  const modules = { crypto: nodeCrypto, cloudfront: kvsStandIn(store) };
  const imported = [];
  const body = code.replace(IMPORT, (_, name, from) => {
    if (!(from in modules)) throw new Error(`${filename}: imports unknown module '${from}'`);
    imported.push(from);
    return `var ${name} = __modules[${JSON.stringify(from)}];`;
  });
  const context = vm.createContext({ __modules: modules, Buffer });
  // CloudFront Functions run in strict mode.
  vm.runInContext('"use strict";' + body, context, { filename });
  if (typeof context.handler !== 'function') throw new Error(`${filename}: no top-level handler`);
  return { context, handler: context.handler, store, imported };
}

/**
 * A raw query as CloudFront Functions present it: an object keyed by parameter name (as sent,
 * not decoded), values as sent; a repeated name carries every value in multiValue. An empty
 * pair (`a&&b`) is modelled as an empty name, which is also how `=5` arrives.
 */
export function queryObject(raw) {
  const out = {};
  if (raw === '') return out;
  for (const pair of raw.split('&')) {
    const eq = pair.indexOf('=');
    const name = eq < 0 ? pair : pair.slice(0, eq);
    const value = eq < 0 ? '' : pair.slice(eq + 1);
    if (Object.prototype.hasOwnProperty.call(out, name)) {
      const entry = out[name];
      if (!entry.multiValue) entry.multiValue = [{ value: entry.value }];
      entry.multiValue.push({ value });
    } else {
      out[name] = { value };
    }
  }
  return out;
}

/** A viewer-request event for `uri?query` with an optional Accept header. */
export function viewerRequestEvent(uri, query, accept) {
  const headers = { host: { value: 'd111111abcdef8.cloudfront.net' } };
  if (accept !== null && accept !== undefined) headers.accept = { value: accept };
  return {
    version: '1.0',
    context: { eventType: 'viewer-request', distributionId: 'EDFDVBD6EXAMPLE' },
    viewer: { ip: '198.51.100.11' },
    request: { method: 'GET', uri, querystring: queryObject(query), headers, cookies: {} },
  };
}

/** A viewer-response event for `request` (as given) and a 200 with these response headers. */
export function viewerResponseEvent(request, headers = {}) {
  return {
    version: '1.0',
    context: { eventType: 'viewer-response', distributionId: 'EDFDVBD6EXAMPLE' },
    viewer: { ip: '198.51.100.11' },
    request,
    response: {
      statusCode: 200,
      statusDescription: 'OK',
      headers: { 'content-type': { value: 'image/webp' }, ...headers },
      cookies: {},
    },
  };
}
