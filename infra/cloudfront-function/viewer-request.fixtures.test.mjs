// Signed URLs, policy and presets (DESIGN.md §10) in the viewer-request function, on the
// shared fixtures also read by edge/src/{sign,policy,guard}.rs:
//   tests/fixtures/signature-cases.json (signatures made by Python's hmac),
//   tests/fixtures/policy-cases.json.
// Every case runs on the source (policy baked in, not minified) and on the minified
// artifact of build.mjs, the code that is deployed. Keys come from a KeyValueStore
// stand-in (harness.mjs), as CloudFront's cf.kvs() would give them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { loadFunction, viewerRequestEvent as request } from './harness.mjs';
import { bake, build, compilePolicy, LIMIT, PolicyError, SOURCE } from './build.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', '..', 'tests', 'fixtures');
const signatures = JSON.parse(readFileSync(path.join(fixtures, 'signature-cases.json'), 'utf8'));
const policies = JSON.parse(readFileSync(path.join(fixtures, 'policy-cases.json'), 'utf8'));
const source = readFileSync(SOURCE, 'utf8');

// One loaded function per (policy, variant); the KVS store of each is set per case.
const loaded = new Map();
async function functionFor(policy, variant) {
  const id = `${variant} ${JSON.stringify(policy)}`;
  if (!loaded.has(id)) {
    const code =
      variant === 'minified' ? await build(policy) : bake(source, policy === null ? null : compilePolicy(policy));
    loaded.set(id, loadFunction(code, `viewer-request (${variant})`));
  }
  return loaded.get(id);
}

function setKeys(fn, text) {
  for (const k of Object.keys(fn.store)) delete fn.store[k];
  if (text !== null) fn.store['signing-keys'] = text;
}

// A case of either fixture: the canonical query, or the error's status/code/param, the
// cache header, and every string its message must mention.
async function check(fn, c, label) {
  const result = await fn.handler(request(c.uri, c.query, c.accept));
  if (c.error === undefined) {
    assert.equal(result.statusCode, undefined, `${label}: unexpected error ${result.body && result.body.data}`);
    assert.equal(result.querystring, c.canonical, label);
    // Verified as sent, forwarded in normal form (the fixture's forwarded; absent = unchanged).
    assert.equal(result.uri, c.forwarded === undefined ? c.uri : c.forwarded, `${label}: the forwarded path`);
    return;
  }
  assert.ok(result.statusCode, `${label}: expected an error, got the request ${JSON.stringify(result.querystring)}`);
  const body = JSON.parse(result.body.data);
  assert.equal(result.statusCode, c.error.status, label);
  assert.equal(body.status, c.error.status, label);
  assert.equal(body.error, c.error.error, label);
  if (c.error.param === null) assert.ok(!('param' in body), `${label}: no param expected, got ${body.param}`);
  else assert.equal(body.param, c.error.param, label);
  assert.equal(result.headers['cache-control'].value, 'public, max-age=60', label);
  assert.equal(result.headers['content-type'].value, 'application/json', label);
  assert.equal(result.headers['x-content-type-options'].value, 'nosniff', label);
  assert.ok(body.message.length > 0, label);
  for (const m of c.mentions || []) assert.ok(body.message.includes(m), `${label}: '${body.message}' should mention '${m}'`);
}

for (const variant of ['source', 'minified']) {
  test(`${variant}: every signature case`, async () => {
    assert.ok(signatures.cases.length >= 30);
    for (const c of signatures.cases) {
      const fn = await functionFor(c.policy === undefined ? null : c.policy, variant);
      setKeys(fn, c.keys.length ? c.keys.map((k) => signatures.keys[k]).join('\n') : null);
      await check(fn, c, `${c.name}: ${c.uri}?${c.query}`);
    }
  });

  test(`${variant}: every policy case`, async () => {
    assert.ok(policies.cases.length >= 40);
    for (const c of policies.cases) {
      const fn = await functionFor(policies.policies[c.policy], variant);
      setKeys(fn, null);
      await check(fn, c, `policy ${c.policy}: ${c.uri}?${c.query} (Accept: ${c.accept})`);
    }
  });

  test(`${variant}: keys files as the KVS value`, async () => {
    const fn = await functionFor(null, variant);
    const k1 = signatures.keys.k1;
    const valid = signatures.cases.find((c) => c.name === 'valid');
    for (const kf of signatures.keyfiles) {
      setKeys(fn, kf.text);
      const result = await fn.handler(request(valid.uri, valid.query, null));
      // A usable value with k1 in it verifies; any other fails closed (403), never open.
      const expected = kf.keys && kf.keys.includes(k1) ? undefined : 403;
      assert.equal(result.statusCode, expected, JSON.stringify(kf.text));
    }
  });

  test(`${variant}: plain master requests never read the KVS`, async () => {
    const fn = await functionFor(null, variant);
    setKeys(fn, signatures.keys.k1);
    const e = request('/outputs/2025-02-01/image_001.png', '', null);
    e.request.querystring = {};
    const saved = fn.context.__modules.cloudfront.kvs;
    fn.context.__modules.cloudfront.kvs = () => {
      throw new Error('KVS read for a request without a query');
    };
    try {
      const result = await fn.handler(e);
      assert.equal(result.querystring, '');
    } finally {
      fn.context.__modules.cloudfront.kvs = saved;
    }
  });
}

test('bad policies are refused by the package step, naming the entry', () => {
  assert.ok(policies.bad_policies.length >= 20);
  for (const b of policies.bad_policies) {
    assert.throws(
      () => compilePolicy(b.policy),
      (e) => {
        assert.ok(e instanceof PolicyError, `${JSON.stringify(b.policy)}: ${e.stack}`);
        for (const m of b.mentions) assert.ok(e.message.includes(m), `${JSON.stringify(b.policy)}: '${e.message}' should mention '${m}'`);
        return true;
      },
      JSON.stringify(b.policy),
    );
  }
});

test('the minified function with every fixture policy stays under 10 KB', async () => {
  for (const [name, policy] of Object.entries(policies.policies)) {
    const size = Buffer.byteLength(await build(policy));
    assert.ok(size < LIMIT, `${name}: ${size} bytes`);
  }
});

test('a large policy still fits: 16 widths, 16 heights, 41 qualities, 20 presets', async (t) => {
  // The size docs/url-api.md quotes; the headroom left for policies larger than the fixture's.
  const sides = [64, 128, 160, 200, 256, 320, 400, 480, 512, 640, 768, 960, 1024, 1280, 1600, 2048];
  const presets = {};
  for (let i = 0; i < 20; i++) {
    presets[`preset-${i}`] = `w=${sides[i % 16]}&h=${sides[(i + 3) % 16]}&fmt=${i % 2 ? 'auto' : 'webp'}&q=${60 + i}`;
  }
  const policy = { widths: sides, heights: sides, qualities: Array.from({ length: 41 }, (_, i) => 60 + i), presets };
  const size = Buffer.byteLength(await build(policy));
  t.diagnostic(`minified with the large policy: ${size} bytes`);
  assert.ok(size < LIMIT, `${size} bytes`);
});

test('KVS errors other than a missing key fail closed (the function throws)', async () => {
  const fn = await functionFor(null, 'minified');
  const saved = fn.context.__modules.cloudfront.kvs;
  fn.context.__modules.cloudfront.kvs = () => ({
    exists: async () => {
      throw new Error('KVS unavailable');
    },
  });
  try {
    await assert.rejects(fn.handler(request('/a.png', 'w=5', null)), /KVS unavailable/);
  } finally {
    fn.context.__modules.cloudfront.kvs = saved;
  }
});

test('what the function rebuilds from CloudFront\'s query object differs only where the query is invalid anyway', async () => {
  // CloudFront gives no raw query: a name without '=' and a repeated name cannot be told
  // apart from `name=` and grouped repeats. Such queries are 400s when sent unsigned; signed,
  // the function answers 403 where the Rust service (raw query) answers 400. Pinned here.
  const fn = await functionFor(null, 'source');
  const k1 = signatures.keys.k1;
  setKeys(fn, k1);
  const { createHmac } = await import('node:crypto');
  const sig = (p, q) => createHmac('sha256', Buffer.from(k1, 'hex')).update(`${p}?${q}`).digest('base64url');
  const result = await fn.handler(request('/a.png', `w=5&h=5&w=6&sig=${sig('/a.png', 'w=5&h=5&w=6')}`, null));
  assert.equal(result.statusCode, 403);
});

test('the signing snippets of docs/url-api.md match the fixture vectors', async () => {
  const { execFileSync } = await import('node:child_process');
  const doc = readFileSync(path.join(here, '..', '..', 'docs', 'url-api.md'), 'utf8');
  const block = (lang) => {
    const m = new RegExp('## Signed URLs[\\s\\S]*?```' + lang + '\\n([\\s\\S]*?)```').exec(doc);
    assert.ok(m, `a ${lang} snippet in the Signed URLs section`);
    return m[1];
  };
  const env = { ...process.env, IMGEDGE_SIGNING_KEY: signatures.keys.k1 };
  for (const v of signatures.vectors.filter((v) => v.key === 'k1')) {
    const want = v.query ? `${v.path}?${v.query}&sig=${v.sig}` : `${v.path}?sig=${v.sig}`;
    const call = `signed(${JSON.stringify(v.path)}, ${JSON.stringify(v.query)})`;
    const js = execFileSync(process.execPath, ['--input-type=module', '-e', `${block('js')}\nconsole.log(${call});`], { env });
    assert.equal(js.toString().trim(), want, 'Node snippet');
    const py = execFileSync('python3', ['-c', `${block('python')}\nprint(${call})`], { env });
    assert.equal(py.toString().trim(), want, 'Python snippet');
  }
});
