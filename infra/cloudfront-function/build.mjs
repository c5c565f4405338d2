// Package step of the CloudFront Functions (viewer-request.js, viewer-response.js):
//
//   node infra/cloudfront-function/build.mjs [--policy policy.json] [--mode edge|regional] [--out DIR]
//   node infra/cloudfront-function/build.mjs --check --policy policy.json
//
// 1. checks the policy (same rules as edge/src/policy.rs) and compiles it into the form
//    the function compares with (dpr in hundredths, fmt jpg = jpeg, bg lowercase);
//    --check stops here (infra/package.sh uses it before putting the policy in config.json);
// 2. bakes it into the viewer-request source in place of `var POLICY = null;`, and for
//    --mode regional the variants' prefix in place of `var VARIANTS = null;`, with the
//    transform version read from the core (edge/src/key.rs: one constant for every part);
// 3. minifies both functions with terser (pinned in package.json / package-lock.json) —
//    CloudFront Functions are limited to 10 KB — and loads each once as CloudFront would;
// 4. writes DIR/viewer-request.js and DIR/viewer-response.js (default: dist/ beside this
//    file) and prints their sizes.
//
// The policy is baked in rather than read from the KeyValueStore: KVS values are at most
// 1 KB (a few presets exceed it), a bad policy fails here instead of on every request, and
// the function's rules change in the same deploy as the Lambda's config.json copy.
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadFunction } from './harness.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SOURCE = path.join(here, 'viewer-request.js');
export const RESPONSE_SOURCE = path.join(here, 'viewer-response.js');
export const LIMIT = 10240;
const PLACEHOLDER = 'var POLICY = null;';
const VARIANTS_PLACEHOLDER = 'var VARIANTS = null;';
export const MODES = ['edge', 'regional'];
// The core's transform version, declared once; a Rust test keeps the line in this shape.
const KEY_RS = path.join(here, '..', '..', 'edge', 'src', 'key.rs');
const VERSION_LINE = /^pub const TRANSFORM_VERSION: u32 = ([1-9][0-9]*);$/m;

/** The core's transform version, from edge/src/key.rs. */
export function transformVersion(keyRs = readFileSync(KEY_RS, 'utf8')) {
  const m = VERSION_LINE.exec(keyRs);
  if (!m) throw new Error(`${KEY_RS}: no 'pub const TRANSFORM_VERSION: u32 = N;' line`);
  return Number(m[1]);
}

/** The prefix regional mode rewrites URLs under: '_variants/v<N>/'. */
export function variantsPrefix(version = transformVersion()) {
  return `_variants/v${version}/`;
}
const MAX_SIDE = 8192;
const MASTERS = ['png', 'jpeg', 'webp'];
const FIELDS = ['widths', 'heights', 'qualities', 'formats', 'dprs', 'backgrounds', 'presets'];

export class PolicyError extends Error {}

function fail(message) {
  throw new PolicyError('policy: ' + message);
}

const show = (v) => JSON.stringify(v);

function integer(min, max) {
  return (v) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new Error(`${show(v)} is not an integer from ${min} to ${max}`);
    }
    return v;
  };
}

function formatName(v) {
  if (['webp', 'avif', 'png', 'jpeg', 'auto'].includes(v)) return v;
  if (v === 'jpg') return 'jpeg';
  throw new Error(`${show(v)} is not a format of the URL API; allowed: webp, avif, png, jpeg (or jpg), auto`);
}

function dprEntry(v) {
  const scaled = typeof v === 'number' ? v * 100 : NaN;
  // 1.1 * 100 is 110.00000000000001 in binary floating point.
  if (!(Math.abs(scaled - Math.round(scaled)) <= 1e-6) || Math.round(scaled) < 100 || Math.round(scaled) > 400) {
    throw new Error(`${show(v)} is not a dpr: a number from 1 to 4 with at most 2 decimals`);
  }
  return Math.round(scaled);
}

function background(v) {
  if (typeof v !== 'string' || !/^[0-9A-Fa-f]{6}$/.test(v)) {
    throw new Error(`${show(v)} is not a colour as 6 hex digits RRGGBB without '#' (e.g. "ffffff")`);
  }
  return v.toLowerCase();
}

function list(policy, field, entry) {
  const value = policy[field];
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value)) fail(`${field} must be a list such as [256, 512], got ${show(value)}`);
  if (value.length === 0) fail(`${field} is empty, which would refuse every value; leave it out to allow all`);
  return value.map((v, i) => {
    try {
      return entry(v);
    } catch (e) {
      return fail(`${field}[${i}]: ${e.message}`);
    }
  });
}

/**
 * Check a policy (parsed JSON) and compile it for the function. Presets are run through
 * the function's own parser (`api` = a loaded function's context, with the compiled lists
 * in place) for a master of every format, as edge/src/policy.rs does with VariantSpec.
 */
export function compilePolicy(policy, source = readFileSync(SOURCE, 'utf8')) {
  if (policy === null || typeof policy !== 'object' || Array.isArray(policy)) {
    fail('a policy is a JSON object such as {"widths": [256, 512]}');
  }
  for (const field of Object.keys(policy)) {
    if (!FIELDS.includes(field)) fail(`unknown field '${field}'; allowed: ${FIELDS.join(', ')}`);
  }
  const compiled = {};
  const lists = {
    widths: integer(1, MAX_SIDE),
    heights: integer(1, MAX_SIDE),
    qualities: integer(1, 100),
    formats: formatName,
    dprs: dprEntry,
    backgrounds: background,
  };
  for (const [field, entry] of Object.entries(lists)) {
    const values = list(policy, field, entry);
    if (values !== undefined) compiled[field] = values;
  }
  compiled.presets = {};
  const presets = policy.presets;
  if (presets === undefined || presets === null) return compiled;
  if (typeof presets !== 'object' || Array.isArray(presets)) {
    fail(`presets must be an object such as {"thumb": "w=256&h=256&fmt=auto"}, got ${show(presets)}`);
  }
  // The function itself, with the lists only, parses each preset.
  const api = loadFunction(bake(source, { ...compiled, presets: {} })).context;
  for (const [name, query] of Object.entries(presets)) {
    if (!/^[a-z0-9][a-z0-9_-]{0,63}$/.test(name)) {
      fail(`presets: the name '${name}' is not allowed; names are 1-64 of a-z 0-9 - _, starting with a letter or digit`);
    }
    if (typeof query !== 'string' || query === '') {
      fail(`presets.${name}: must be a non-empty query string such as "w=256&fmt=auto", got ${show(query)}`);
    }
    const pairs = query.split('&').map((p) => {
      const eq = p.indexOf('=');
      return eq < 0 ? [p, ''] : [p.slice(0, eq), p.slice(eq + 1)];
    });
    for (const master of MASTERS) {
      for (const accept of [null, 'image/webp', 'image/avif']) {
        try {
          api.canonical(pairs, master, accept);
        } catch (e) {
          if (e.status === undefined) throw e;
          fail(`presets.${name}: '${query}' is not a valid query for a ${master} master: ${e.message}`);
        }
      }
    }
    compiled.presets[name] = query;
  }
  return compiled;
}

function replaceOnce(source, placeholder, line) {
  const at = source.indexOf(placeholder);
  if (at < 0 || source.indexOf(placeholder, at + 1) >= 0) {
    throw new Error(`viewer-request.js must hold '${placeholder}' exactly once`);
  }
  return source.slice(0, at) + line + source.slice(at + placeholder.length);
}

/** The source with the compiled policy in place of its placeholder, and in regional mode
 * the variants' prefix in place of its own. */
export function bake(source, compiled, mode = 'edge') {
  if (!MODES.includes(mode)) throw new Error(`unknown mode '${mode}'; allowed: ${MODES.join(', ')}`);
  const variants = mode === 'regional' ? JSON.stringify(variantsPrefix()) : 'null';
  const baked = replaceOnce(source, PLACEHOLDER, `var POLICY = ${JSON.stringify(compiled)};`);
  return replaceOnce(baked, VARIANTS_PLACEHOLDER, `var VARIANTS = ${variants};`);
}

/** Minify with terser; `handler` keeps its name (CloudFront calls it), the rest is mangled. */
export async function minify(code) {
  const { minify: terser } = await import('terser');
  const out = await terser(code, {
    module: true,
    ecma: 2020,
    compress: { passes: 2, top_retain: ['handler'] },
    mangle: { toplevel: true, reserved: ['handler'] },
    format: { comments: false },
  });
  return out.code;
}

/** The deployable function for a policy (parsed JSON or null) and a mode: baked, minified,
 * loadable. */
export async function build(policy = null, source = readFileSync(SOURCE, 'utf8'), mode = 'edge') {
  const compiled = policy === null ? null : compilePolicy(policy, source);
  const code = await minify(bake(source, compiled, mode));
  loadFunction(code, 'viewer-request.min.js');
  return code;
}

/** The deployable viewer-response function: minified, loadable (it needs no policy). */
export async function buildResponse(source = readFileSync(RESPONSE_SOURCE, 'utf8')) {
  const code = await minify(source);
  loadFunction(code, 'viewer-response.min.js');
  return code;
}

async function main(argv) {
  let policyFile = null;
  let out = path.join(here, 'dist');
  let checkOnly = false;
  let mode = 'edge';
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--policy') policyFile = argv[++i];
    else if (argv[i] === '--mode') mode = argv[++i];
    else if (argv[i] === '--out') out = argv[++i];
    else if (argv[i] === '--check') checkOnly = true;
    else if (argv[i] === '-h' || argv[i] === '--help') {
      console.log('usage: node build.mjs [--policy policy.json] [--mode edge|regional] [--out DIR] | --check --policy policy.json');
      return 0;
    } else {
      console.error(`build.mjs: unknown argument ${argv[i]}`);
      return 2;
    }
  }
  if (!out || policyFile === undefined || (checkOnly && !policyFile)) {
    console.error('build.mjs: --out needs a directory, --policy a file (and --check needs --policy)');
    return 2;
  }
  if (!MODES.includes(mode)) {
    console.error(`build.mjs: --mode must be one of ${MODES.join(', ')}, got ${mode}`);
    return 2;
  }
  let policy = null;
  if (policyFile) {
    try {
      policy = JSON.parse(readFileSync(policyFile, 'utf8'));
    } catch (e) {
      console.error(`build.mjs: policy ${policyFile}: ${e.message}`);
      return 1;
    }
  }
  let codes;
  try {
    if (checkOnly) {
      compilePolicy(policy);
      console.log(`${policyFile}: a valid policy`);
      return 0;
    }
    codes = { 'viewer-request.js': await build(policy, undefined, mode), 'viewer-response.js': await buildResponse() };
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    console.error(`build.mjs: ${policyFile}: ${e.message}`);
    return 1;
  }
  for (const [name, code] of Object.entries(codes)) {
    const size = Buffer.byteLength(code);
    if (size >= LIMIT) {
      console.error(`build.mjs: the minified ${name} is ${size} bytes; CloudFront allows less than ${LIMIT}`);
      return 1;
    }
  }
  mkdirSync(out, { recursive: true });
  for (const [name, code] of Object.entries(codes)) {
    const file = path.join(out, name);
    writeFileSync(file, code);
    const policyNote = name !== 'viewer-request.js' ? '' : `, ${mode} mode${policyFile ? `, policy ${policyFile}` : ''}`;
    console.log(`${file}: ${Buffer.byteLength(code)} bytes (limit ${LIMIT})${policyNote}`);
  }
  return 0;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
