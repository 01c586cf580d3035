import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManifestError, parseManifest } from '../src/core/manifest.js';

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
