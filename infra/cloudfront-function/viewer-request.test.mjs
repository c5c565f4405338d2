// Node tests of the viewer-request CloudFront Function (run: node --test infra/cloudfront-function/).
//
// The function is not a CommonJS/ES module in the usual sense (a top-level `handler` plus
// CloudFront's own imports), so harness.mjs loads it like CloudFront does: the file's source
// evaluated in a fresh context with 'crypto' and 'cloudfront' (KeyValueStore) provided. Every
// test runs twice: on the source and on the minified artifact build.mjs makes for deployment.
// Every case of the shared fixture tests/fixtures/spec-cases.json (also read by the Rust
// VariantSpec tests) must give the same canonical query or the same error status/code/param.
// Signed URLs and policies: viewer-request.fixtures.test.mjs. Vary: viewer-response.test.mjs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { loadFunction, viewerRequestEvent as event } from './harness.mjs';
import { build } from './build.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const sourcePath = path.join(here, 'viewer-request.js');
const fixturePath =
  process.env.IMGEDGE_SPEC_CASES || path.join(here, '..', '..', 'tests', 'fixtures', 'spec-cases.json');
const source = readFileSync(sourcePath, 'utf8');
const fixture = JSON.parse(readFileSync(fixturePath, 'utf8'));
const minified = await build(null);

function suite(label, handler) {
  const t = (name, fn) => test(`${label}: ${name}`, fn);

// Events are built by harness.mjs as CloudFront would: the raw query as an object (names and
// values as sent, repeats under multiValue).
function run(uri, query, accept) {
  return handler(event(uri, query, accept));
}

// The JSON body of a generated response, after checking the response's shape.
function errorBody(result, label) {
  assert.ok(result.statusCode, `${label}: expected an error response, got request ${JSON.stringify(result)}`);
  assert.equal(result.headers['content-type'].value, 'application/json', label);
  assert.equal(result.headers['cache-control'].value, 'public, max-age=60', label);
  assert.equal(result.headers['x-content-type-options'].value, 'nosniff', label);
  assert.equal(result.body.encoding, 'text', label);
  const body = JSON.parse(result.body.data);
  assert.equal(body.status, result.statusCode, label);
  assert.equal(typeof body.message, 'string', label);
  assert.ok(body.message.length > 0, `${label}: message says what was wrong`);
  return body;
}

function expectCanonical(result, canonical, label) {
  assert.equal(result.statusCode, undefined, `${label}: unexpected error ${result.body && result.body.data}`);
  assert.equal(result.querystring, canonical, label);
}

function expectError(result, expected, label) {
  const body = errorBody(result, label);
  assert.equal(result.statusCode, expected.status, label);
  assert.equal(body.error, expected.error, label);
  if ('param' in expected) assert.equal(body.param, expected.param, label);
  else assert.ok(!('param' in body), `${label}: no param expected, got ${body.param}`);
}

t('fixture has cases of both kinds', async () => {
  assert.ok(fixture.query_cases.length >= 3);
  assert.ok(fixture.key_cases.length >= 3);
});

t('every query case of the shared fixture', async () => {
  for (const c of fixture.query_cases) {
    const label = `${c.uri}?${c.query} (Accept: ${c.accept})`;
    const result = await run(c.uri, c.query, c.accept);
    if (c.error) expectError(result, c.error, label);
    else expectCanonical(result, c.canonical, label);
  }
});

t('every key case of the shared fixture', async () => {
  for (const c of fixture.key_cases) {
    const result = await run(c.uri, '', null);
    if (c.error) expectError(result, c.error, c.uri);
    else {
      expectCanonical(result, '', c.uri);
      assert.equal(decodeURIComponent(result.uri.slice(1)), c.key, `${c.uri}: the forwarded path names the same key`);
    }
  }
});

// Spellings of one key share one cache entry: the forwarded path is the RFC 3986 normal form.
t('every path case of the shared fixture', async () => {
  assert.ok(fixture.path_cases.length >= 10);
  for (const c of fixture.path_cases) {
    for (const query of ['', 'w=5']) {
      const result = await run(c.uri, query, null);
      assert.equal(result.statusCode, undefined, `${c.uri}?${query}: ${result.body && result.body.data}`);
      assert.equal(result.uri, c.forwarded, `${c.uri}?${query}`);
    }
    assert.equal((await run(c.forwarded, '', null)).uri, c.forwarded, `${c.forwarded} is its own normal form`);
    assert.equal(decodeURIComponent(c.forwarded.slice(1)), c.key, `${c.forwarded} names ${c.key}`);
    assert.equal(decodeURIComponent(c.uri.slice(1)), c.key, `${c.uri} names ${c.key}`);
  }
});

t('a signed path is verified as sent, then forwarded in normal form', async () => {
  // The signature covers the path exactly as sent; the cache sees the normal form.
  const sent = '/caf%c3%a9/%41.png';
  const e = event(sent, 'w=5', null);
  const result = await handler(e);
  assert.equal(result.uri, '/caf%C3%A9/A.png');
  assert.equal(result.querystring, 'w=5');
});


const IMG = '/outputs/2025-02-01/image_001.png';
const JPG = '/outputs/2025-02-01/photo.jpg';

t('equivalent spellings share one canonical query', async () => {
  const spellings = ['w=512&fmt=webp', 'fmt=webp&w=512', 'fmt=webp&w=512&q=80', 'w=256&dpr=2&fmt=webp', 'dpr=2&fmt=webp&w=256&bg=FFFFFF'];
  for (const q of spellings) expectCanonical(await run(IMG, q, null), 'w=512&fmt=webp', q);
  expectCanonical(await run(JPG, 'fmt=jpg&w=10&h=20&fit=cover&q=80', null), 'w=10&h=20', 'jpg alias is the master format');
  expectCanonical(await run(JPG, 'h=20&w=10&fit=inside&q=50&bg=AbCdEf', null), 'w=10&h=20&fit=inside&q=50&bg=abcdef', 'full order');
});

t('identity queries forward an empty query string', async () => {
  for (const q of ['', 'q=80&fmt=jpeg', 'bg=ffffff', 'fmt=jpg']) expectCanonical(await run(JPG, q, null), '', q);
  for (const q of ['fmt=png', 'bg=000000']) expectCanonical(await run(IMG, q, null), '', `${q} on a png`);
  expectCanonical(await run(JPG, 'bg=000000', null), 'bg=000000', 'bg flattens into a jpeg output');
});

t('dpr folds into the sides, rounding half up, and its limit is on the side', async () => {
  expectCanonical(await run(IMG, 'w=333&dpr=1.5', null), 'w=500', '333 x 1.5 = 499.5 -> 500');
  expectCanonical(await run(IMG, 'h=3&dpr=1.25', null), 'h=4', '3.75 -> 4');
  expectCanonical(await run(IMG, 'w=8192&dpr=1.0', null), 'w=8192', 'dpr 1.0');
  expectError(await run(IMG, 'w=10&h=4097&dpr=2', null), { status: 400, error: 'invalid_parameter', param: 'h' }, 'h x 2 > 8192');
  for (const dpr of ['0.5', '4.01', '1.555', '1.', '.5', '01', '+2', '5']) {
    expectError(await run(IMG, `w=10&dpr=${dpr}`, null), { status: 400, error: 'invalid_parameter', param: 'dpr' }, dpr);
  }
  expectError(await run(IMG, 'dpr=2', null), { status: 400, error: 'invalid_parameter', param: 'dpr' }, 'dpr alone');
});

t('strict integers', async () => {
  for (const w of ['+5', '05', '5.0', '0', '8193', '-1', '1e3', '99999999999', ' 5', '%35%35']) {
    const result = await run(IMG, `w=${w}`, null);
    if (w === '%35%35') expectCanonical(result, 'w=55', 'percent-encoded digits decode');
    else expectError(result, { status: 400, error: 'invalid_parameter', param: 'w' }, w);
  }
  expectError(await run(JPG, 'q=101', null), { status: 400, error: 'invalid_parameter', param: 'q' }, 'q=101');
});

t('repeats, empty values, unknown and uppercase names and values', async () => {
  const cases = [
    ['w=1&w=1', 'w'],
    ['w=', 'w'],
    ['w', 'w'],
    ['W=5', 'W'],
    ['width=5', 'width'],
    ['fmt=WEBP', 'fmt'],
    ['fit=Cover&w=1&h=1', 'fit'],
    ['w=5&&h=5', 'query'],
    ['=5', 'query'],
    ['bg=fff', 'bg'],
    ['bg=%23ffffff', 'bg'],
    ['w=%zz', 'w'],
    ['fmt=%FF', 'fmt'],
    ['constructor=1', 'constructor'],
    ['fit=constructor&w=1&h=1', 'fit'],
  ];
  for (const [q, param] of cases) expectError(await run(IMG, q, null), { status: 400, error: 'invalid_parameter', param }, q);
});

t('a query over 2048 bytes is rejected as a whole', async () => {
  const long = 'w=5&x' + '0'.repeat(2048) + '=1';
  expectError(await run(IMG, long, null), { status: 400, error: 'invalid_parameter', param: 'query' }, 'long query');
  expectCanonical(await run(IMG, 'bg=' + 'a'.repeat(6), null), '', 'short query is parsed');
});

t('fit and q rules', async () => {
  expectError(await run(IMG, 'w=5&fit=contain', null), { status: 400, error: 'invalid_parameter', param: 'fit' }, 'fit one side');
  expectError(await run(IMG, 'w=5&q=50', null), { status: 400, error: 'invalid_parameter', param: 'q' }, 'q on png default');
  expectError(await run(JPG, 'w=5&fmt=png&q=50', null), { status: 400, error: 'invalid_parameter', param: 'q' }, 'q with fmt=png');
  expectCanonical(await run(IMG, 'w=5&fmt=auto&q=50', 'image/png'), 'w=5', 'q is ignored when auto picks png');
  expectCanonical(await run(IMG, 'w=5&fmt=auto&q=50', 'image/webp'), 'w=5&fmt=webp&q=50', 'q kept when auto picks webp');
});

t('bg is kept only where it can change pixels', async () => {
  expectCanonical(await run(IMG, 'w=5&h=5&fit=contain&bg=000000', null), 'w=5&h=5&fit=contain&bg=000000', 'contain pads');
  expectCanonical(await run(IMG, 'w=5&fmt=jpeg&bg=000000', null), 'w=5&fmt=jpeg&bg=000000', 'jpeg flattens');
  expectCanonical(await run(IMG, 'w=5&h=5&bg=000000', null), 'w=5&h=5', 'cover png: no effect');
  expectCanonical(await run(IMG, 'w=5&fmt=webp&bg=000000', null), 'w=5&fmt=webp', 'webp keeps alpha');
});

t('avif is a format, and auto prefers it for browsers that list it', async () => {
  expectCanonical(await run(IMG, 'fmt=avif&w=5', null), 'w=5&fmt=avif', 'fmt=avif');
  expectCanonical(await run(JPG, 'fmt=avif&q=80', null), 'fmt=avif', 'default q dropped');
  // Image requests (<img>) of real browsers; Safari lists webp first, which is no preference.
  const browsers = [
    ['Chrome', 'image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8', 'avif'],
    ['Firefox 128', 'image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5', 'avif'],
    ['Firefox 92', 'image/avif,image/webp,*/*', 'avif'],
    ['Safari 16.4+', 'image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5', 'avif'],
    ['Safari 14-16.3', 'image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5', 'webp'],
  ];
  for (const [name, accept, fmt] of browsers) {
    expectCanonical(await run(IMG, 'w=5&fmt=auto', accept), 'w=5&fmt=' + fmt, name);
  }
  expectCanonical(await run(IMG, 'w=5&fmt=auto', 'image/avif'), 'w=5&fmt=avif', 'avif only');
  expectCanonical(await run(IMG, 'w=5&fmt=auto', 'image/avif;q=0,image/webp'), 'w=5&fmt=webp', 'avif refused by weight');
  expectCanonical(await run(JPG, 'fmt=auto', 'image/avif;q=0,image/*,*/*'), '', 'wildcards do not count');
});

t('Accept is parsed as media ranges with weights', async () => {
  const cases = [
    ['image/webp', 'fmt=webp'],
    ['IMAGE/WebP', 'fmt=webp'],
    [' image/webp ; q=0.5 ', 'fmt=webp'],
    ['image/webp;q=0', ''],
    ['image/webp;q=0.000', ''],
    ['image/webp;q=0.001', 'fmt=webp'],
    ['image/webp;q=1.0', 'fmt=webp'],
    ['image/webp;q=2', ''],
    ['image/webpx', ''],
    ['text/html, image/webp;level=1', 'fmt=webp'],
    ['*/*', ''],
    ['', ''],
  ];
  for (const [accept, canonical] of cases) expectCanonical(await run(JPG, 'fmt=auto', accept), canonical, `Accept: ${accept}`);
  // A repeated Accept header arrives as multiValue; all of it counts.
  const e = event(JPG, 'fmt=auto', null);
  e.request.headers.accept = { value: 'text/html', multiValue: [{ value: 'text/html' }, { value: 'image/webp' }] };
  expectCanonical(await handler(e), 'fmt=webp', 'multiValue Accept');
});

t('keys are validated before the query, and variants are not addressable', async () => {
  expectError(await run('/outputs/../x.png', 'W=5', null), { status: 400, error: 'invalid_key' }, 'key first');
  expectError(await run('/_variants/v1/a.png/w=5.png', '', null), { status: 404, error: 'not_found' }, 'variants');
  expectError(await run('/%5Fvariants/v1/a.png/w=5.png', 'w=5', null), { status: 404, error: 'not_found' }, 'encoded variants');
  for (const uri of ['/a.PNG', '/a.gif', '/a', '/', '//a.png', '/a/./b.png', '/a%00.png', '/a\\b.png', '/a%5Cb.png', '/a%zz.png', '/a%C3.png', '/dir/', 'a.png', '/' + 'a'.repeat(1021) + '.png']) {
    expectError(await run(uri, '', null), { status: 400, error: 'invalid_key' }, uri);
  }
  expectCanonical(await run('/caf%C3%A9/a+b%20c.webp', 'w=5', null), 'w=5', 'encoded key');
  expectCanonical(await run('/' + 'a'.repeat(1020) + '.png', '', null), '', '1024 bytes is allowed');
});

t('a request without query or headers passes through', async () => {
  const e = { version: '1.0', request: { method: 'GET', uri: IMG, querystring: {}, headers: {} } };
  const result = await handler(e);
  assert.equal(result, e.request);
  assert.equal(result.querystring, '');
});

// A small deterministic PRNG (mulberry32), so property cases are the same on every run.
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const POOLS = {
  w: ['1', '64', '512', '8192', '4097', '0', '05'],
  h: ['1', '48', '300', '8192', '3000'],
  fit: ['cover', 'contain', 'fill', 'inside', 'outside'],
  fmt: ['webp', 'png', 'jpeg', 'jpg', 'auto'],
  q: ['1', '50', '80', '100'],
  dpr: ['1', '1.5', '2', '2.25', '3', '4'],
  bg: ['ffffff', '000000', 'FF8800', 'abcdef'],
};

function randomQuery(next) {
  const pairs = [];
  for (const [name, pool] of Object.entries(POOLS)) {
    if (next() < 0.5) pairs.push([name, pool[Math.floor(next() * pool.length)]]);
  }
  return pairs;
}

function shuffled(list, next) {
  const out = list.slice();
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(next() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

t('property: order does not matter and the canonical form is a fixed point', async () => {
  const next = rng(20250201);
  let accepted = 0;
  for (let i = 0; i < 3000; i++) {
    const pairs = randomQuery(next);
    const uri = next() < 0.5 ? IMG : JPG;
    const accept = next() < 0.5 ? 'image/webp,*/*' : null;
    const query = pairs.map((p) => p.join('=')).join('&');
    const first = await run(uri, query, accept);
    if (first.statusCode) continue;
    accepted++;
    const canonical = first.querystring;
    const again = await run(uri, shuffled(pairs, next).map((p) => p.join('=')).join('&'), accept);
    assert.equal(again.querystring, canonical, `permutation of ${query}`);
    // Re-parsing the canonical form gives itself, with or without Accept (auto is resolved).
    assert.equal((await run(uri, canonical, null)).querystring, canonical, `fixed point of ${query}`);
    assert.match(canonical, /^(w=\d+)?&?(h=\d+)?&?(fit=\w+)?&?(fmt=\w+)?&?(q=\d+)?&?(bg=[0-9a-f]{6})?$/, canonical);
    assert.doesNotMatch(canonical, /dpr|auto|jpg|&&|^&|&$/, canonical);
  }
  assert.ok(accepted > 500, `enough accepted cases (${accepted})`);
});

t('fuzz: arbitrary paths and queries give a request or a JSON error, never an exception', async () => {
  const next = rng(7);
  const alphabet = ['w', 'h', 'fit', 'fmt', 'q', 'dpr', 'bg', '=', '&', '%', '%2', '%C3%A9', '%FF', '.', '..', '/', '\\', '_variants', 'png', '.png', '+', ' ', '0', '9', 'A', 'é', '\u0000', '\ud83d\ude00', '\ud800'];
  const pick = (n) => Array.from({ length: n }, () => alphabet[Math.floor(next() * alphabet.length)]).join('');
  for (let i = 0; i < 3000; i++) {
    const uri = '/' + pick(Math.floor(next() * 8)) + (next() < 0.7 ? '.png' : '');
    const query = pick(Math.floor(next() * 10));
    const result = await run(uri, query, next() < 0.5 ? pick(4) : null);
    if (result.statusCode) {
      assert.ok([400, 404].includes(result.statusCode), `${uri}?${query}`);
      const body = JSON.parse(result.body.data);
      assert.ok(['invalid_key', 'invalid_parameter', 'not_found'].includes(body.error), `${uri}?${query}`);
    } else {
      assert.equal(typeof result.querystring, 'string', `${uri}?${query}`);
      // The normal form names the same key and is a fixed point.
      assert.equal(decodeURIComponent(result.uri), decodeURIComponent(uri), uri);
      assert.equal((await run(result.uri, '', null)).uri, result.uri, uri);
    }
  }
});

}

test('the deployable (minified) function is under CloudFront\'s 10 KB and keeps its shape', () => {
  const size = Buffer.byteLength(minified);
  assert.ok(size < 10240, `CloudFront Functions code is at most 10 KB; minified: ${size} bytes`);
  assert.match(minified, /async function handler\(/, 'CloudFront calls a top-level handler by name');
  for (const code of [source, minified]) {
    assert.doesNotMatch(code, /^\s*export\s/m, 'exports nothing');
    assert.doesNotMatch(code, /\brequire\(/, 'no CommonJS');
    assert.deepEqual(loadFunction(code).imported.sort(), ['cloudfront', 'crypto'], 'imports only what CloudFront provides');
  }
});

suite('source', loadFunction(source, sourcePath).handler);
suite('minified', loadFunction(minified, 'viewer-request.min.js').handler);
