// Node tests of the viewer-request function in regional mode (build.mjs --mode regional): after
// the same checks and canonical query as in edge mode, a variant URL becomes its variant's key
// (the bucket answers it; a miss goes to the regional function through the origin group), and
// the URL as sent travels in x-imgedge-viewer-url. The prefix's version is the core's
// (edge/src/key.rs), and the rewrite names the very key the Rust fixture of a miss asks for.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { loadFunction, viewerRequestEvent as event } from './harness.mjs';
import { bake, build, transformVersion, variantsPrefix } from './build.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');
const source = readFileSync(path.join(here, 'viewer-request.js'), 'utf8');
const fixture = JSON.parse(readFileSync(path.join(root, 'tests', 'fixtures', 'spec-cases.json'), 'utf8'));
const missFixture = JSON.parse(
  readFileSync(path.join(root, 'edge', 'tests', 'fixtures', 'function-url', 'variant-miss.json'), 'utf8'),
);
const EXT = { png: 'png', jpg: 'jpg', jpeg: 'jpg', webp: 'webp' };
const VIEWER_URL = 'x-imgedge-viewer-url';

const edge = loadFunction(bake(source, null, 'edge')).handler;
const variants = {
  source: loadFunction(bake(source, null, 'regional')).handler,
  minified: loadFunction(await build(null, source, 'regional'), 'viewer-request.min.js').handler,
};

test('the version comes from the core, declared once', () => {
  const keyRs = readFileSync(path.join(root, 'edge', 'src', 'key.rs'), 'utf8');
  const version = transformVersion(keyRs);
  assert.ok(Number.isInteger(version) && version >= 1);
  assert.equal(variantsPrefix(), `_variants/v${version}/`);
  assert.throws(() => transformVersion('pub const TRANSFORM_VERSION: u64 = 1;'), /TRANSFORM_VERSION/);
  assert.throws(() => bake(source, null, 'lambda'), /unknown mode/);
  // Edge mode leaves the URL alone: its build holds no prefix.
  assert.ok(!bake(source, null, 'edge').includes(variantsPrefix()));
});

for (const [label, handler] of Object.entries(variants)) {
  const t = (name, fn) => test(`${label}: ${name}`, fn);
  const run = (uri, query, accept, headers = {}) => {
    const e = event(uri, query, accept);
    Object.assign(e.request.headers, headers);
    return handler(e);
  };

  t('a variant URL becomes the key of the Rust fixture of a miss', async () => {
    const result = await run('/outputs/2025-02-01/image_001.png', 'fmt=webp&w=512', null);
    const want = missFixture.rawPath.replace('{TRANSFORM_VERSION}', String(transformVersion()));
    assert.equal(result.uri, want);
    assert.equal(result.querystring, '');
    assert.equal(result.headers[VIEWER_URL].value, missFixture.headers[VIEWER_URL]);
  });

  t('every query case: the edge rewrite, as the variant key the core names', async () => {
    let variantsSeen = 0;
    for (const c of fixture.query_cases) {
      const name = `${c.uri}?${c.query} (Accept: ${c.accept})`;
      const [ours, theirs] = [await run(c.uri, c.query, c.accept), await edge(event(c.uri, c.query, c.accept))];
      if (c.error) {
        // Errors are the edge mode's, word for word (compared as JSON: each loaded function
        // has its own realm, so its objects have their own prototypes).
        assert.equal(JSON.stringify(ours), JSON.stringify(theirs), name);
        continue;
      }
      if (c.canonical === '') {
        // The master itself: its path, no query, nothing for the regional function.
        assert.equal(ours.uri, theirs.uri, name);
        assert.equal(ours.querystring, '', name);
        assert.equal(ours.headers[VIEWER_URL], undefined, name);
        continue;
      }
      variantsSeen++;
      const fmt = /(?:^|&)fmt=([a-z]+)/.exec(c.canonical);
      const ext = fmt ? EXT[fmt[1]] : EXT[c.uri.slice(c.uri.lastIndexOf('.') + 1)];
      const key = `/${variantsPrefix()}${theirs.uri.slice(1)}/${c.canonical.replace(/&/g, ',')}.${ext}`;
      assert.equal(ours.uri, key, name);
      assert.equal(ours.querystring, '', name);
      assert.equal(ours.headers[VIEWER_URL].value, `${c.uri}?${c.query}`, name);
    }
    assert.ok(variantsSeen >= 20, `${variantsSeen} variant cases`);
  });

  t("a viewer's own x-imgedge-viewer-url never reaches the origin", async () => {
    const forged = { [VIEWER_URL]: { value: '//evil.example/' } };
    const master = await run('/outputs/a.png', '', null, forged);
    assert.equal(master.headers[VIEWER_URL], undefined);
    const variant = await run('/outputs/a.png', 'w=5', null, forged);
    assert.equal(variant.headers[VIEWER_URL].value, '/outputs/a.png?w=5');
    const refused = await edge({ ...event('/outputs/a.png', 'w=5', null) });
    assert.equal(refused.headers[VIEWER_URL], undefined);
  });

  t('the URL as sent keeps its spelling and signature; the key is the normal form', async () => {
    const result = await run('/caf%c3%a9/%41.png', 'fmt=webp&w=5&sig=abc', null);
    assert.equal(result.uri, `/${variantsPrefix()}caf%C3%A9/A.png/w=5,fmt=webp.webp`);
    assert.equal(result.headers[VIEWER_URL].value, '/caf%c3%a9/%41.png?fmt=webp&w=5&sig=abc');
  });
}
