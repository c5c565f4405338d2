// Node tests of the viewer-response CloudFront Function (Vary: Accept where fmt=auto chose the
// format, DESIGN.md §10): its own cases, then behind the viewer-request function on every
// accepted case of the shared fixtures (tests/fixtures/spec-cases.json, policy-cases.json),
// with the viewer-response event holding the request as the viewer-request function left it
// (what CloudFront documents for Lambda@Edge) and as the viewer sent it (what the CloudFront
// Functions guide can be read to say): both must give the same answer, except that a preset
// seen only as sent gets Vary whether or not it holds fmt=auto. Source and minified artifact.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { loadFunction, viewerRequestEvent, viewerResponseEvent } from './harness.mjs';
import { bake, build, buildResponse, compilePolicy, LIMIT, RESPONSE_SOURCE, SOURCE } from './build.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', '..', 'tests', 'fixtures');
const spec = JSON.parse(readFileSync(path.join(fixtures, 'spec-cases.json'), 'utf8'));
const policies = JSON.parse(readFileSync(path.join(fixtures, 'policy-cases.json'), 'utf8'));
const responseSource = readFileSync(RESPONSE_SOURCE, 'utf8');
const requestSource = readFileSync(SOURCE, 'utf8');
const responseMinified = await buildResponse();

const IMG = '/outputs/2025-02-01/image_001.png';

function decoded(value) {
  try {
    return decodeURIComponent(value);
  } catch (e) {
    return null;
  }
}

// The truth the functions must reach: fmt=auto in the query as sent, or in the preset it names.
function autoIn(query, policy) {
  const pairs = query === '' ? [] : query.split('&').map((p) => [p.split('=')[0], p.slice(p.indexOf('=') + 1)]);
  const preset = (name) => (policy && policy.presets && policy.presets[name]) || '';
  return pairs.some(([n, v]) => (n === 'fmt' && decoded(v) === 'auto') || (n === 'preset' && /(^|&)fmt=auto(&|$)/.test(preset(v))));
}

test('the deployable (minified) viewer-response function is small and keeps its shape', () => {
  const size = Buffer.byteLength(responseMinified);
  assert.ok(size < LIMIT, `${size} bytes`);
  assert.match(responseMinified, /function handler\(/, 'CloudFront calls a top-level handler by name');
  for (const code of [responseSource, responseMinified]) {
    assert.doesNotMatch(code, /^\s*export\s/m, 'exports nothing');
    assert.doesNotMatch(code, /\brequire\(/, 'no CommonJS');
    assert.deepEqual(loadFunction(code).imported, [], 'imports nothing');
  }
});

for (const [variant, code] of [['source', responseSource], ['minified', responseMinified]]) {
  const { handler } = loadFunction(code, `viewer-response (${variant})`);
  const vary = (request, headers) => {
    const response = handler(viewerResponseEvent(request, headers));
    assert.equal(response.statusCode, 200, 'the response goes on');
    return response.headers.vary ? response.headers.vary.value : undefined;
  };
  const marked = () => ({ method: 'GET', uri: IMG, querystring: {}, headers: { 'x-imgedge-auto': { value: '1' } } });

  test(`${variant}: Vary: Accept where the request is marked, merged with a Vary already there`, () => {
    assert.equal(vary(marked()), 'Accept');
    assert.equal(vary({ method: 'GET', uri: IMG, querystring: {}, headers: {} }), undefined, 'no mark, no Vary');
    assert.equal(vary(marked(), { vary: { value: 'Accept-Encoding' } }), 'Accept-Encoding, Accept');
    assert.equal(vary(marked(), { vary: { value: 'Origin', multiValue: [{ value: 'Origin' }, { value: 'Accept-Encoding' }] } }), 'Origin, Accept-Encoding, Accept');
    for (const given of ['accept', 'Origin, ACCEPT', '*']) assert.equal(vary(marked(), { vary: { value: given } }), given, `${given}: already varies`);
  });

  test(`${variant}: on the request as sent, fmt=auto (any spelling) or a preset`, () => {
    const sent = (query) => ({ method: 'GET', uri: IMG, querystring: viewerRequestEvent(IMG, query).request.querystring, headers: {} });
    assert.equal(vary(sent('w=5&fmt=auto')), 'Accept');
    assert.equal(vary(sent('fmt=%61uto&w=5')), 'Accept');
    assert.equal(vary(sent('preset=thumb&sig=x')), 'Accept', 'a preset may hold fmt=auto');
    for (const q of ['', 'w=5', 'w=5&fmt=webp', 'fmt=%zz', 'fmt=AUTO']) assert.equal(vary(sent(q)), undefined, q);
    // The canonical query as a string (if CloudFront passed it on so) never holds auto.
    assert.equal(vary({ method: 'GET', uri: IMG, querystring: 'w=5&fmt=webp', headers: {} }), undefined);
    assert.equal(vary({ method: 'GET', uri: IMG }), undefined, 'no headers or query at all');
  });
}

// Each (policy, variant) of the viewer-request function, loaded once.
const requestFunctions = new Map();
async function requestFunction(policy, variant) {
  const id = `${variant} ${JSON.stringify(policy)}`;
  if (!requestFunctions.has(id)) {
    const code = variant === 'minified' ? await build(policy) : bake(requestSource, policy && compilePolicy(policy));
    requestFunctions.set(id, loadFunction(code, `viewer-request (${variant})`));
  }
  return requestFunctions.get(id);
}

// Both functions on one request; the Vary a viewer gets when the response event holds the
// request as the viewer-request function left it, and when it holds the request as sent.
async function pipeline(requestFn, responseFn, uri, query, accept, extraHeaders = {}) {
  const e = viewerRequestEvent(uri, query, accept);
  Object.assign(e.request.headers, extraHeaders);
  const sent = structuredClone(e.request);
  const forwarded = await requestFn.handler(e);
  assert.equal(forwarded.statusCode, undefined, `${uri}?${query}: ${forwarded.body && forwarded.body.data}`);
  const varyOf = (request) => {
    const headers = responseFn.handler(viewerResponseEvent(request)).headers;
    return headers.vary ? headers.vary.value : undefined;
  };
  return { left: varyOf(forwarded), sent: varyOf(sent) };
}

for (const variant of ['source', 'minified']) {
  const responseFn = loadFunction(variant === 'minified' ? responseMinified : responseSource);

  test(`${variant}: behind viewer-request, Vary: Accept exactly for fmt=auto on every accepted URL API case`, async () => {
    const requestFn = await requestFunction(null, variant);
    let autos = 0;
    for (const c of spec.query_cases.filter((c) => !c.error)) {
      const want = autoIn(c.query, null) ? 'Accept' : undefined;
      if (want) autos++;
      const got = await pipeline(requestFn, responseFn, c.uri, c.query, c.accept);
      assert.equal(got.left, want, `${c.uri}?${c.query} (Accept: ${c.accept}), request as left`);
      assert.equal(got.sent, want, `${c.uri}?${c.query} (Accept: ${c.accept}), request as sent`);
    }
    assert.ok(autos >= 5, `enough fmt=auto cases (${autos})`);
  });

  test(`${variant}: behind viewer-request, presets holding fmt=auto vary, others only when seen as sent`, async () => {
    let autos = 0;
    for (const c of policies.cases.filter((c) => !c.error)) {
      const policy = policies.policies[c.policy];
      const requestFn = await requestFunction(policy, variant);
      const want = autoIn(c.query, policy) ? 'Accept' : undefined;
      if (want && c.query.includes('preset=')) autos++;
      const got = await pipeline(requestFn, responseFn, c.uri, c.query, c.accept);
      const label = `policy ${c.policy}: ${c.uri}?${c.query}`;
      assert.equal(got.left, want, `${label}, request as left`);
      assert.equal(got.sent, want || (/(^|&)preset=/.test(c.query) ? 'Accept' : undefined), `${label}, request as sent`);
    }
    assert.ok(autos >= 1, 'a preset with fmt=auto is covered');
  });

  test(`${variant}: a viewer cannot set the mark itself`, async () => {
    const requestFn = await requestFunction(null, variant);
    const spoof = { 'x-imgedge-auto': { value: '1' } };
    const got = await pipeline(requestFn, responseFn, IMG, 'w=5&fmt=webp', null, spoof);
    assert.deepEqual(got.left, undefined);
    const plain = await pipeline(requestFn, responseFn, IMG, '', null, spoof);
    assert.deepEqual(plain.left, undefined, 'not on a plain master request either');
  });
}
