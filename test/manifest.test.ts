import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseAllDocuments, stringify, type ToStringOptions } from 'yaml';
import { ManifestError, parseManifest, quickDocuments } from '../src/core/manifest.js';
import { pod } from './support/objects.js';

const names = (objects: Array<{ metadata?: { namespace?: string; name?: string } }>) =>
  objects.map((o) => `${o.metadata?.namespace}/${o.metadata?.name}`);

describe('manifest', () => {
  it('reads the v1 List that kubectl get pods,secrets -A -o yaml prints, skipping other kinds', () => {
    const { pods, secrets } = parseManifest(
      `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Pod
  metadata: {name: web, namespace: shop}
- apiVersion: v1
  kind: Secret
  metadata: {name: routing, namespace: shop}
  data: {api-key: c3VwZXJzZWNyZXQ=}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: settings, namespace: shop}
metadata:
  resourceVersion: ""
`,
      'list.yaml',
    );
    assert.deepEqual(names(pods), ['shop/web']);
    assert.deepEqual(names(secrets), ['shop/routing']);
    assert.equal(secrets[0]?.data?.['api-key'], 'c3VwZXJzZWNyZXQ=');
  });

  it('reads multi-document YAML, typed lists and a lone object, with "default" for a missing namespace', () => {
    const { pods, secrets } = parseManifest(
      `kind: Pod
metadata: {name: a}
---
kind: PodList
items:
- metadata: {name: b, namespace: x}
---
kind: SecretList
items:
- metadata: {name: routing, namespace: x}
---
`,
      'multi.yaml',
    );
    assert.deepEqual(names(pods), ['default/a', 'x/b']);
    assert.deepEqual(names(secrets), ['x/routing']);
  });

  it('reads JSON', () => {
    const { pods } = parseManifest('{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"j","namespace":"n"}}]}', 'pods.json');
    assert.deepEqual(names(pods), ['n/j']);
  });

  it('folds stringData into base64 data, as the API server does', () => {
    const { secrets } = parseManifest('kind: Secret\nmetadata: {name: routing}\nstringData: {api-key: supersecret}\n', 's.yaml');
    assert.deepEqual(secrets[0]?.data, { 'api-key': 'c3VwZXJzZWNyZXQ=' });
    assert.equal('stringData' in (secrets[0] ?? {}), false);
  });

  it('reads an empty file as no objects', () => {
    assert.deepEqual(parseManifest('', 'empty.yaml'), { pods: [], secrets: [] });
    assert.deepEqual(parseManifest('# nothing yet\n', 'empty.yaml'), { pods: [], secrets: [] });
  });

  for (const [text, problem] of [
    ['kind: Pod\nmetadata: {name: [unclosed\n', /^manifest bad\.yaml: the document: /],
    ['- just\n- a list\n', /the document is not an object/],
    ['metadata: {name: x}\n', /the document has no "kind"/],
    ['kind: List\nitems: nope\n', /is a List without an "items" list/],
    ['kind: Pod\nmetadata: {namespace: x}\n', /\(Pod\) has no metadata\.name/],
    ['kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: a, namespace: default}\n', /document 2: Pod default\/a appears twice/],
  ] as const) {
    it(`names the file and the problem: ${problem.source}`, () => {
      assert.throws(
        () => parseManifest(text, 'bad.yaml'),
        (err: unknown) => err instanceof ManifestError && err.code === 'KR_BAD_MANIFEST' && err.message.startsWith('manifest bad.yaml: ') && problem.test(err.message),
      );
    });
  }
});

describe('manifest, read quickly', () => {
  /** What the `yaml` package makes of the text: the meaning the quick reading must keep. */
  const exact = (text: string): unknown[] => {
    const docs = parseAllDocuments(text);
    return (Array.isArray(docs) ? docs.map((d) => d.toJS()) : []).filter((d) => d !== null && d !== undefined);
  };
  const quick = (text: string): unknown[] | null => quickDocuments(text)?.filter((d) => d !== null && d !== undefined) ?? null;

  const key = fc.oneof(fc.string(), fc.constantFrom('__proto__', 'null', '~', '', 'true', '1', '0o7', '-', '? x', '&a', '*a', '!t', '<<', 'a: b', '#'));
  const scalarText = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 20 }),
    fc.constantFrom('yes', 'no', 'on', 'off', 'y', 'n', 'null', 'Null', '~', '', 'true', 'False', '0o14', '014', '0x1F', '0b101', '1_000', '1:30', '.inf', '-.Inf', '.nan', '1e3', '1.', '.5', '+12', '-0', '2024-01-01T00:00:00Z', '2024-01-01', '12345678901234567890', '8080:/api', '1.2.3.4', ' lead', 'trail ', 'a\nb', 'a\n\nb\n', '- x', ': x', '# x', 'x # y', "it's", '"q"', '@at', '`tick', '%pct', '|', '>'),
  );
  const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
    node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), tie('list'), tie('map')),
    leaf: fc.oneof(scalarText, fc.integer(), fc.double({ noNaN: true }), fc.boolean(), fc.constant(null)),
    list: fc.array(tie('node'), { maxLength: 4 }),
    map: fc.dictionary(key, tie('node'), { maxKeys: 4 }),
  })).node;
  const options = fc.record(
    {
      indent: fc.integer({ min: 1, max: 4 }),
      indentSeq: fc.boolean(),
      lineWidth: fc.constantFrom(0, 20, 80),
      minContentWidth: fc.constantFrom(0, 20),
      defaultStringType: fc.constantFrom('PLAIN', 'QUOTE_DOUBLE', 'QUOTE_SINGLE', 'BLOCK_LITERAL', 'BLOCK_FOLDED'),
      defaultKeyType: fc.constantFrom(null, 'PLAIN', 'QUOTE_DOUBLE'),
      collectionStyle: fc.constantFrom('any', 'block', 'flow'),
      doubleQuotedAsJSON: fc.boolean(),
      flowCollectionPadding: fc.boolean(),
    },
    { requiredKeys: [] },
  ) as fc.Arbitrary<Record<string, unknown>>;

  it('means what the yaml package reads, for any document it writes', () => {
    let quickly = 0;
    const runs = Number(process.env.MANIFEST_RUNS ?? 1500);
    fc.assert(
      // Mappings, as a manifest's documents are (any other document is refused anyway).
      fc.property(fc.array(fc.dictionary(key, value, { maxKeys: 4 }), { minLength: 1, maxLength: 3 }), options, (docs, opts) => {
        const text = docs.map((d) => stringify(d, opts as ToStringOptions)).join('---\n');
        const read = quick(text);
        if (read === null) return;
        quickly++;
        assert.deepStrictEqual(read, exact(text), text);
      }),
      { numRuns: runs, includeErrorInReport: true, ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}) },
    );
    // Most documents take the quick path, or this would prove little.
    assert.ok(quickly > runs / 2, `${quickly} of ${runs} documents read quickly`);
  });

  it('takes the quick path for what kubectl prints, in YAML and in JSON', () => {
    const items = Array.from({ length: 3 }, (_, i) => pod(`web-${i}`, { namespace: 'shop', hosts: `a${i}.example.com b.example.com`, paths: '80:/ 3000:/api' }));
    const list = { apiVersion: 'v1', kind: 'List', items, metadata: { resourceVersion: '' } };
    for (const text of [stringify(list), JSON.stringify(list, null, 4), `\uFEFF${JSON.stringify(list)}`]) {
      assert.deepStrictEqual(quick(text), exact(text.replace(/^\uFEFF/, '')));
      assert.deepEqual(names(parseManifest(text, 'list').pods), ['shop/web-0', 'shop/web-1', 'shop/web-2']);
    }
  });

  it('leaves to the yaml package what js-yaml would read otherwise', () => {
    for (const text of ['a: &x 1\nb: *x\n', 'a: !!str 12\n', '%YAML 1.1\n---\na: yes\n', '? [a]\n: 1\n', '[a]: 1\n', '~: a\n', 'null: a\n', ': a\n', '{a: 1}: b\n']) {
      assert.equal(quickDocuments(text), null, text);
    }
  });

  it('agrees with the yaml package on scalars and keys it reads quickly', () => {
    const cases = ['a: -0', 'a: 0b101', 'a: 1_000', 'a: 1:30', '1: a', 'true: a', '1.50: a', '.nan: a', '__proto__: {x: 1}', 'a: "\\x41\\u00e9\\U0001F600"', 'a: |+\n  x\n\n', 'a: >-\n  x\n  y\n', "a: 'it''s'", 'a: plain\n  continued', 'a:\r\n- 1\r\n- 2\r\n', '{a, b: 1}', '[a, b]', 'a: b # c', '---\n...\n', '# only'];
    for (const text of cases) {
      const read = quick(text);
      assert.notEqual(read, null, text);
      assert.deepStrictEqual(read, exact(text), text);
    }
  });

  it('gives the messages of the yaml package for broken files, in the order of their documents', () => {
    const check = (text: string, problem: RegExp): void => {
      assert.throws(
        () => parseManifest(text, 'bad.json'),
        (err: unknown) => err instanceof ManifestError && problem.test(err.message),
      );
    };
    check('{"kind": "Pod", "metadata": {"name": "a"}', /^manifest bad\.json: the document: .* at line 1, column/);
    check('[1, 2]', /^manifest bad\.json: the document is not an object$/);
    check('- x\n---\nkind: Pod\nmetadata: {name: [unclosed\n', /^manifest bad\.json: document 1 is not an object$/);
    check('kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: [unclosed\n', /^manifest bad\.json: document 2: /);
    check('{"kind": "List", "items": [{"kind": "Pod", "metadata": {}}]}', /^manifest bad\.json: the document item 1 \(Pod\) has no metadata\.name$/);
  });
});
