import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NGINX_UNIQUE_HEADERS, requestHasBody, scanRequestHeaders } from '../proxy/request-headers.js';

test('the first of repeated headers is the one read, whatever the case of its name', () => {
  const headers = scanRequestHeaders(
    [
      'HOST',
      'a.test',
      'Connection',
      'keep-alive',
      'connection',
      'close',
      'Upgrade',
      'websocket',
      'X-Routing-Api-Key',
      'k1',
      'x-routing-api-key',
      'k2',
    ],
    'x-routing-api-key',
  );
  assert.equal(headers.host, 'a.test');
  assert.equal(headers.hostCount, 1);
  assert.equal(headers.connection, 'keep-alive');
  assert.equal(headers.upgrade, 'websocket');
  assert.equal(headers.apiKey, 'k1');
  assert.equal(headers.repeatedUnique, false);
});

test('two Host headers are counted, for the 400 nginx gives them', () => {
  const headers = scanRequestHeaders(['Host', 'a.test', 'host', 'b.test'], 'x-routing-api-key');
  assert.equal(headers.hostCount, 2);
  assert.equal(headers.host, 'a.test');
});

test('every header nginx takes once is noticed when it comes twice (Host counted, Content-Length left to Node)', () => {
  for (const name of NGINX_UNIQUE_HEADERS) {
    // Node's parser refuses a second Content-Length before the router sees the request.
    if (name === 'content-length') continue;
    const mixedCase = name.replace(/(^|-)([a-z])/g, (m) => m.toUpperCase());
    const headers = scanRequestHeaders([mixedCase, 'x', name, 'y'], 'x-routing-api-key');
    const noticed = name === 'host' ? headers.hostCount === 2 : headers.repeatedUnique;
    assert.equal(noticed, true, `${mixedCase} then ${name}: ${JSON.stringify(headers)}`);
  }
});

test('headers that may repeat are not taken for unique ones', () => {
  for (const name of ['Accept', 'Cookie', 'Via', 'If-Matches', 'Expects', 'X-Forwarded-For', 'Connection', 'Upgrade']) {
    const headers = scanRequestHeaders([name, 'x', name, 'y'], 'x-routing-api-key');
    assert.equal(headers.repeatedUnique, false, name);
  }
});

test('the head size is worked out from the names and values', () => {
  const headers = scanRequestHeaders(['Host', 'a.test', 'Accept', '*/*'], 'x-routing-api-key');
  assert.equal(headers.headerBytes, 'Host'.length + 'a.test'.length + 'Accept'.length + '*/*'.length);
});

test('a request has a body when it declares a length over 0 or a transfer coding', () => {
  const has = (raw: string[]): boolean => requestHasBody(scanRequestHeaders(raw, 'x-routing-api-key'));
  assert.equal(has(['Content-Length', '5']), true);
  assert.equal(has(['Content-Length', '0']), false);
  assert.equal(has(['Transfer-Encoding', 'chunked']), true);
  assert.equal(has(['Host', 'a.test']), false);
});
