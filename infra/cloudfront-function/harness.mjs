// Runs the viewer-request function's code the way CloudFront does, in Node: the file's
// source in a fresh context (strict mode, a top-level `handler`), its two imports
// ('crypto', 'cloudfront') bound to Node's crypto and a KeyValueStore stand-in.
// Used by build.mjs (to check a policy with the function's own parser) and the tests.
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
