import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { matchesLabels, parseLabelSelector, SelectorSyntaxError } from '../src/core/label-selector.js';

const matches = (selector: string, labels: Record<string, string>): boolean =>
  matchesLabels(parseLabelSelector(selector), labels);

describe('label selector', () => {
  it('matches equality, double equality and inequality', () => {
    assert.equal(matches('routable=true', { routable: 'true' }), true);
    assert.equal(matches('routable==true', { routable: 'true' }), true);
    assert.equal(matches('routable=true', { routable: 'false' }), false);
    assert.equal(matches('routable=true', {}), false);
    assert.equal(matches('tier!=db', { tier: 'web' }), true);
    assert.equal(matches('tier!=db', {}), true, '!= matches pods without the label, as in Kubernetes');
    assert.equal(matches('tier!=db', { tier: 'db' }), false);
  });

  it('matches set-based requirements', () => {
    assert.equal(matches('env in (prod, staging)', { env: 'staging' }), true);
    assert.equal(matches('env in (prod,staging)', { env: 'dev' }), false);
    assert.equal(matches('env in (prod)', {}), false);
    assert.equal(matches('env notin (dev)', { env: 'prod' }), true);
    assert.equal(matches('env notin (dev)', {}), true);
    assert.equal(matches('env notin (dev)', { env: 'dev' }), false);
  });

  it('matches existence and absence', () => {
    assert.equal(matches('routable', { routable: 'anything' }), true);
    assert.equal(matches('routable', {}), false);
    assert.equal(matches('!canary', {}), true);
    assert.equal(matches('!canary', { canary: 'true' }), false);
  });

  it('requires every comma-separated requirement', () => {
    const selector = 'routable=true,env in (prod,staging),!canary,example.com/team';
    assert.equal(matches(selector, { routable: 'true', env: 'prod', 'example.com/team': 'a' }), true);
    assert.equal(matches(selector, { routable: 'true', env: 'prod', 'example.com/team': 'a', canary: 'x' }), false);
    assert.equal(matches(selector, { routable: 'true', env: 'prod' }), false);
  });

  it('accepts an empty value after = as Kubernetes does', () => {
    assert.equal(matches('tier=', { tier: '' }), true);
    assert.equal(matches('tier=', { tier: 'web' }), false);
  });

  for (const [text, message] of [
    ['', /empty/],
    ['a in (b', /"," or "\)"/],
    ['a in b', /"\("/],
    ['=b', /label key/],
    ['a=b c', /","/],
    ['a b', /unexpected "b"/],
    ['-a=b', /label key "-a"/],
    ['a=b$', /label value "b\$"/],
    [`a=${'x'.repeat(64)}`, /at most 63/],
    ['a/b/c=d', /at most one "\/"/],
    ['a,,b', /label key/],
  ] as const) {
    it(`refuses ${JSON.stringify(text)} with a readable reason`, () => {
      assert.throws(
        () => parseLabelSelector(text),
        (err: unknown) => err instanceof SelectorSyntaxError && message.test(err.message),
      );
    });
  }
});
