import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseAllDocuments, stringify } from 'yaml';
import { ManifestError, parseManifest } from '../src/core/manifest.js';
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
});

describe('manifest: JSON, stringData, empty files and errors', () => {
  it('reads JSON', () => {
    const { pods } = parseManifest(
      '{"kind":"List","items":[{"kind":"Pod","metadata":{"name":"j","namespace":"n"}}]}',
      'pods.json',
    );
    assert.deepEqual(names(pods), ['n/j']);
  });

  it('folds stringData into base64 data, as the API server does', () => {
    const { secrets } = parseManifest(
      'kind: Secret\nmetadata: {name: routing}\nstringData: {api-key: supersecret}\n',
      's.yaml',
    );
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
    [
      'kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: a, namespace: default}\n',
      /document 2: Pod default\/a appears twice/,
    ],
  ] as const) {
    it(`names the file and the problem: ${problem.source}`, () => {
      assert.throws(
        () => parseManifest(text, 'bad.yaml'),
        (err: unknown) =>
          err instanceof ManifestError &&
          err.code === 'KR_BAD_MANIFEST' &&
          err.message.startsWith('manifest bad.yaml: ') &&
          problem.test(err.message),
      );
    });
  }
});

/** What the `yaml` package makes of the text: the meaning JSON.parse must keep. */
const exact = (text: string): unknown[] => {
  const docs = parseAllDocuments(text);
  return (Array.isArray(docs) ? docs.map((d) => d.toJS()) : []).filter((d) => d !== null && d !== undefined);
};

const key = fc.oneof(
  fc.string(),
  fc.constantFrom('__proto__', 'null', '~', '', 'true', '1', '0o7', '-', '? x', '&a', '*a', '!t', '<<', 'a: b', '#'),
);
const scalarText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 20 }),
  fc.constantFrom('yes', 'no', 'on', 'off', 'null', '~', '', 'true', '0o14', '014', '0x1F', '1:30', '.inf', '1e3'),
  fc.constantFrom('8080:/api', ' lead', 'a\nb', '# x', '"q"'),
);
const value: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  node: fc.oneof({ depthSize: 'small', withCrossShrink: true }, tie('leaf'), tie('list'), tie('map')),
  // JSON has no NaN or Infinity.
  leaf: fc.oneof(
    scalarText,
    fc.integer(),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constant(null),
  ),
  list: fc.array(tie('node'), { maxLength: 4 }),
  map: fc.dictionary(key, tie('node'), { maxKeys: 4 }),
})).node;

describe('manifest, JSON read with JSON.parse', () => {
  it('means what the yaml package reads, for any JSON document', () => {
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 4 }), fc.constantFrom(0, 2, 4), (doc, indent) => {
        const text = JSON.stringify(doc, null, indent);
        // The objects JSON.parse makes are those the yaml package makes of the same text.
        assert.deepStrictEqual([JSON.parse(text)], exact(text), text);
      }),
      {
        numRuns: Number(process.env.MANIFEST_RUNS ?? 500),
        ...(process.env.FC_SEED ? { seed: Number(process.env.FC_SEED) } : {}),
      },
    );
  });

  it('reads what kubectl prints the same in YAML and in JSON', () => {
    const items = Array.from({ length: 3 }, (_, i) =>
      pod(`web-${i}`, { namespace: 'shop', hosts: `a${i}.example.com b.example.com`, paths: '80:/ 3000:/api' }),
    );
    const list = { apiVersion: 'v1', kind: 'List', items, metadata: { resourceVersion: '' } };
    const fromYaml = parseManifest(stringify(list), 'list.yaml');
    assert.deepEqual(names(fromYaml.pods), ['shop/web-0', 'shop/web-1', 'shop/web-2']);
    for (const text of [JSON.stringify(list, null, 4), `\uFEFF${JSON.stringify(list)}`]) {
      assert.deepStrictEqual(parseManifest(text, 'list.json'), fromYaml);
    }
  });

  it('reads YAML 1.2 as the yaml package does: anchors, aliases, tags, and no YAML 1.1 booleans', () => {
    const { pods } = parseManifest(
      'kind: Pod\nmetadata:\n  name: a\n  labels: &l {routable: "true", on: yes}\n' +
        '  annotations: {routingPaths: 8080:/api, n: !!str 12}\nspec: {nodeSelector: *l}\n',
      'p.yaml',
    );
    type Read = { metadata: { labels: unknown; annotations: unknown }; spec: { nodeSelector: unknown } };
    const p = pods[0] as unknown as Read;
    assert.deepStrictEqual(p.metadata.labels, { routable: 'true', on: 'yes' });
    assert.deepStrictEqual(p.metadata.annotations, { routingPaths: '8080:/api', n: '12' });
    assert.deepStrictEqual(p.spec.nodeSelector, p.metadata.labels);
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
    check(
      'kind: Pod\nmetadata: {name: a}\n---\nkind: Pod\nmetadata: {name: [unclosed\n',
      /^manifest bad\.json: document 2: /,
    );
    check(
      '{"kind": "List", "items": [{"kind": "Pod", "metadata": {}}]}',
      /^manifest bad\.json: the document item 1 \(Pod\) has no metadata\.name$/,
    );
  });
});
