import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { demoPodSpecs } from '../src/commands/demo-pods.js';
import { demoCommands, withDemoDefaults } from '../src/commands/demo.js';
import { defaultConfig } from '../src/core/config.js';
import { pod } from './support/objects.js';

// The pure parts of `k8s-router demo`: which pod processes a manifest asks for, and the
// commands it prints. The demo itself runs in test/e2e/demo.test.ts.

describe('demo pods', () => {
  it(
    'runs every Running pod on a loopback address, on its container ports, or its paths’ ports when it ' +
      'declares none',
    () => {
      const pods = [
        pod('web-0', { namespace: 'shop', ip: '127.0.0.11', ports: [3000, 3001], paths: '3000:/' }),
        pod('bare-0', { namespace: 'shop', ip: '127.0.0.12', ports: [], paths: '8080:/ 9090:/x bad' }),
        pod('unready-0', { namespace: 'shop', ip: '127.0.0.13', ports: [80], ready: false }),
        pod('far-0', { namespace: 'shop', ip: '10.0.0.1', ports: [80] }),
        pod('pending-0', { namespace: 'shop', ip: '127.0.0.14', ports: [80], phase: 'Pending' }),
        pod('v6-0', { namespace: 'shop', ip: '::1', ports: [80] }),
      ];
      assert.deepEqual(demoPodSpecs(pods, 'routingPaths'), [
        { key: 'shop/bare-0', namespace: 'shop', name: 'bare-0', ip: '127.0.0.12', ports: [8080, 9090] },
        { key: 'shop/unready-0', namespace: 'shop', name: 'unready-0', ip: '127.0.0.13', ports: [80] },
        { key: 'shop/web-0', namespace: 'shop', name: 'web-0', ip: '127.0.0.11', ports: [3000, 3001] },
      ]);
    },
  );
});

describe('demo commands', () => {
  const input = {
    config: defaultConfig({ listenAddress: '127.0.0.1' }),
    port: 8080,
    adminPort: 9180,
    backend: 'proxy',
    manifest: '/repo/examples/demo/demo.yaml',
    wsClient: '/repo/examples/demo/ws-client.mjs',
    pods: 6,
    cwd: '/repo',
  };
  const commands = (text: string): string[] =>
    text
      .split('\n')
      .filter((l) => l.startsWith('  '))
      .map((l) => l.trim());

  it('starts with a plain curl whose URL glob shows round robin, and ends with the status page', () => {
    const list = commands(demoCommands(input));
    assert.equal(list[0], "curl -s -H 'Host: shop.k8s.local' 'http://127.0.0.1:8080/?n=[1-3]'");
    assert.equal(list[5], 'node examples/demo/ws-client.mjs ws://127.0.0.1:8080/ws --host shop.k8s.local hello');
    assert.equal(list.at(-1), 'http://127.0.0.1:9180/');
  });

  it('follows the settings: port, a wildcard or IPv6 address, the API-key header, no admin server', () => {
    const text = demoCommands({
      ...input,
      port: 18080,
      adminPort: null,
      config: defaultConfig({ listenAddress: '::1', apiKeyHeader: 'X-Key' }),
    });
    assert.match(text, /'http:\/\/\[::1\]:18080\/\?n=\[1-3\]'/);
    assert.match(text, /-H 'X-Key: ZGVtby1zZWNyZXQ='/);
    assert.doesNotMatch(text, /Status page/);
    assert.match(
      demoCommands({ ...input, config: defaultConfig({ listenAddress: '*' }) }),
      /http:\/\/127\.0\.0\.1:8080\//,
    );
  });

  it('names files by absolute path when run from elsewhere', () => {
    assert.match(demoCommands({ ...input, cwd: '/home/someone' }), /node \/repo\/examples\/demo\/ws-client\.mjs /);
  });

  it('defaults to port 8080 on loopback with the in-process proxy, unless a variable says otherwise', () => {
    assert.deepEqual(withDemoDefaults({ PORT: '', BACKEND: 'nginx' }), {
      PORT: '8080',
      LISTEN_ADDRESS: '127.0.0.1',
      BACKEND: 'nginx',
    });
  });
});
