import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { defaultConfig, type RouterConfig } from '../src/core/config.js';
import type { Pod, Secret } from '../src/core/kube-objects.js';
import { parseManifest } from '../src/core/manifest.js';
import { buildRouteTable, type RouteTable } from '../src/core/route-table.js';
import { fnv1a32, nginxHashBucket, serverNamesHashSizes } from '../nginx/hash.js';
import { renderNginxConf, upstreamNames } from '../nginx/render.js';
import { lineDiff } from './support/line-diff.js';
import { nginxTest } from './support/nginx-check.js';
import { apiKeySecret, pod } from './support/objects.js';

// Every config this file renders is also handed to a real `nginx -t` (see the last test).
const rendered = new Map<string, string>();
const dir = mkdtempSync(join(tmpdir(), 'k8s-router-render-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function render(
  table: RouteTable,
  config: RouterConfig = defaultConfig(),
  label = `config ${rendered.size + 1}`,
): string {
  const text = renderNginxConf(table, config);
  rendered.set(label, text);
  return text;
}

function renderObjects(pods: Pod[], secrets: Secret[] = [], config = defaultConfig()): string {
  return render(buildRouteTable(config, pods, secrets), config);
}

const golden = (name: string): string => readFileSync(new URL(`golden/${name}`, import.meta.url), 'utf8');

function renderManifest(example: string): string {
  const { pods, secrets } = parseManifest(
    readFileSync(new URL(`../examples/${example}`, import.meta.url), 'utf8'),
    example,
  );
  return render(buildRouteTable(defaultConfig(), pods, secrets), defaultConfig(), example);
}

describe('the documented examples of the seed', () => {
  it('renders the empty config byte for byte', () => {
    const conf = renderManifest('seed-empty.yaml');
    assert.equal(conf, golden('empty.conf'));
    assert.equal(conf, golden('seed/empty.conf'));
  });

  it('renders the one-pod example, departing only where the README says why', () => {
    const conf = renderManifest('seed-demo-one-pod.yaml');
    assert.equal(conf, golden('one-pod.conf'));
    assert.deepEqual(lineDiff(golden('seed/one-pod.conf'), conf), {
      removed: ['# Pod nodejs-k8s-env-eq7mh'],
      added: [
        '# No pod serves / on this host: answer 404 rather than the nginx welcome page',
        'location / {',
        'return 404;',
        '}',
        '# Pod nodejs-k8s-env-eq7mh (namespace: default)',
      ],
    });
  });

  it('renders the three-pod example through upstream1866206336, pods in name order', () => {
    const conf = renderManifest('seed-demo-three-pods.yaml');
    assert.equal(conf, golden('three-pods.conf'));
    assert.match(conf, /^upstream upstream1866206336 \{$/m);
    const { removed, added } = lineDiff(golden('seed/three-pods.conf'), conf);
    assert.deepEqual(removed.sort(), [
      '# Pod nodejs-k8s-env-eq7mh',
      '# Pod nodejs-k8s-env-oq9xn',
      '# Pod nodejs-k8s-env-yr1my',
      'server 10.244.69.8:3000;',
    ]);
    assert.deepEqual(added.sort(), [
      '# No pod serves / on this host: answer 404 rather than the nginx welcome page',
      '# Pod nodejs-k8s-env-eq7mh (namespace: default)',
      '# Pod nodejs-k8s-env-oq9xn (namespace: default)',
      '# Pod nodejs-k8s-env-yr1my (namespace: default)',
      'location / {',
      'return 404;',
      'server 10.244.69.8:3000;',
      '}',
    ]);
  });

  it('names upstreams with the 32-bit FNV-1a hash of host + path', () => {
    assert.equal(fnv1a32('test.k8s.local/nodejs'), 1866206336);
    assert.equal(fnv1a32(''), 0x811c9dc5);
  });
});

describe('nginx.conf rendering: API keys, 404 and IPv6', () => {
  it('checks the API key of the namespace in each of its locations', () => {
    const conf = renderObjects(
      [pod('web', { namespace: 'my-namespace', ip: '10.0.0.9', hosts: 'test.k8s.local', paths: '80:/' })],
      [apiKeySecret('my-namespace', 'supersecret')],
    );
    assert.ok(
      conf.includes(
        [
          'location / {',
          '# API key required by Secret of namespace my-namespace',
          'if ($http_x_routing_api_key != "c3VwZXJzZWNyZXQ=") {',
          'return 403;',
          '}',
          '# Pod web (namespace: my-namespace)',
          'proxy_pass http://10.0.0.9;',
          '}',
        ].join('\n'),
      ),
      conf,
    );
  });

  it('reads the API key from the header the configuration names', () => {
    const config = defaultConfig({ apiKeyHeader: 'X-Tenant-Key' });
    const conf = renderObjects(
      [pod('web', { namespace: 'ns', hosts: 'h.example.com', paths: '80:/' })],
      [apiKeySecret('ns', 'k')],
      config,
    );
    assert.match(conf, /^if \(\$http_x_tenant_key != "aw=="\) \{$/m);
  });

  it('adds the 404 location only to hosts that route no /', () => {
    const conf = renderObjects([
      pod('root', { hosts: 'with-root.example.com', paths: '80:/ 80:/x' }),
      pod('sub', { hosts: 'without-root.example.com', paths: '80:/x' }),
    ]);
    const servers = conf.split('\nserver {\n').slice(1);
    assert.equal(servers.length, 3);
    assert.equal(servers[0]?.includes('return 404;'), false);
    assert.equal(servers[1]?.includes('location / {\nreturn 404;\n}'), true);
  });

  it('writes IPv6 pods in brackets and leaves out port 80', () => {
    const conf = renderObjects([
      pod('a', { ip: 'fd00::1', hosts: 'v6.example.com', paths: '80:/ 3000:/api' }),
      pod('b', { ip: 'fd00::2', hosts: 'v6.example.com', paths: '3000:/api' }),
    ]);
    assert.match(conf, /^proxy_pass http:\/\/\[fd00::1\];$/m);
    assert.match(conf, /^server \[fd00::1\]:3000;$/m);
    assert.match(conf, /^server \[fd00::2\]:3000;$/m);
  });
});

describe('nginx.conf rendering: listening, quoting and upstream names', () => {
  it('listens on the configured port and address', () => {
    const conf = renderObjects(
      [pod('a', { hosts: 'h.example.com', paths: '80:/' })],
      [],
      defaultConfig({ port: '8081', listenAddress: '127.0.0.1' }),
    );
    assert.match(conf, /^listen 127\.0\.0\.1:8081;$/m);
    assert.match(conf, /^listen 127\.0\.0\.1:8081 default_server;$/m);
    const v6 = render(buildRouteTable(defaultConfig(), [], []), defaultConfig({ port: '8081', listenAddress: '::1' }));
    assert.match(v6, /^listen \[::1\]:8081 default_server;$/m);
  });

  it('quotes a path nginx could misread, as a second line of defence', () => {
    const conf = renderObjects([pod('a', { hosts: 'h.example.com', paths: '80:/list(1)' })]);
    assert.match(conf, /^location "\/list\(1\)" \{$/m);
  });

  it('gives colliding upstream names a suffix, so a crafted host cannot break the config', () => {
    assert.equal(fnv1a32('h84337.example.com/'), fnv1a32('h1340180.example.com/'));
    const pods = ['h84337.example.com', 'h1340180.example.com'].flatMap((host) => [
      pod(`${host}-1`, { hosts: host, paths: '80:/', ip: '10.0.0.1' }),
      pod(`${host}-2`, { hosts: host, paths: '80:/', ip: '10.0.0.2' }),
    ]);
    const table = buildRouteTable(defaultConfig(), pods, []);
    assert.deepEqual([...upstreamNames(table.routes).values()], ['upstream2942376858', 'upstream2942376858_2']);
    const conf = render(table);
    assert.match(conf, /^upstream upstream2942376858 \{$/m);
    assert.match(conf, /^upstream upstream2942376858_2 \{$/m);
  });
});

const seedThreePods = (): RouteTable => {
  const { pods, secrets } = parseManifest(
    readFileSync(new URL('../examples/seed-demo-three-pods.yaml', import.meta.url), 'utf8'),
    'three',
  );
  return buildRouteTable(defaultConfig(), pods, secrets);
};

describe('upstream keep-alive and client limits', () => {
  it('keeps the documented bytes with the defaults (keep-alive 0, one worker)', () => {
    const config = defaultConfig({ upstreamKeepalive: '0', workerProcesses: '1' });
    assert.equal(render(seedThreePods(), config, 'keepalive 0'), golden('three-pods.conf'));
    assert.equal(render(buildRouteTable(config, [], []), config, 'empty, keepalive 0'), golden('empty.conf'));
  });

  it("writes the client timeouts and limits only where they are not nginx's defaults", () => {
    const documented = render(seedThreePods(), defaultConfig(), 'client limits at their defaults');
    assert.equal(documented, golden('three-pods.conf'));
    const config = defaultConfig({
      clientHeaderTimeoutMs: '1500',
      clientBodyTimeoutMs: '30000',
      keepaliveTimeoutMs: '0',
      keepaliveRequests: '100',
      clientMaxBodySize: '0',
    });
    const conf = render(seedThreePods(), config, 'client limits changed');
    const { removed, added } = lineDiff(golden('three-pods.conf'), conf);
    assert.deepEqual(removed, []);
    assert.deepEqual(added, [
      '# Client timeouts and limits set to other values than nginx defaults',
      'client_header_timeout 1500ms;',
      'client_body_timeout 30s;',
      'keepalive_timeout 0s;',
      'keepalive_requests 100;',
      'client_max_body_size 0;',
    ]);
    const empty = render(
      buildRouteTable(config, [], []),
      defaultConfig({ clientMaxBodySize: '10m' }),
      'empty, a client limit changed',
    );
    assert.match(empty, /^client_max_body_size 10485760;$/m);
  });

  it(
    'sends every route through an upstream with keepalive N, and no Connection header to the pod but for ' + 'upgrades',
    () => {
      const config = defaultConfig({ upstreamKeepalive: '16' });
      const pods = [
        pod('one', { ip: '10.0.0.1', hosts: 'a.example.com', paths: '80:/ 3000:/api' }),
        pod('two-a', { ip: '10.0.0.2', hosts: 'b.example.com', paths: '3000:/x' }),
        pod('two-b', { ip: '10.0.0.3', hosts: 'b.example.com', paths: '3000:/x' }),
      ];
      const conf = renderObjects(pods, [], config);
      const table = buildRouteTable(config, pods, []);
      const names = upstreamNames(table.routes, true);
      assert.equal(names.size, 3);
      for (const name of names.values()) {
        assert.match(conf, new RegExp(`^upstream ${name} \\{\\n(?:#.*\\n|server .*\\n)+keepalive 16;\\n\\}$`, 'm'));
        assert.match(conf, new RegExp(`^proxy_pass http://${name};$`, 'm'));
      }
      // No pod is proxied to directly: a connection kept alive belongs to an upstream block.
      assert.doesNotMatch(conf, /^proxy_pass http:\/\/10\./m);
      assert.ok(conf.includes("map $http_upgrade $p_connection {\ndefault upgrade;\n'' '';\n}\n"));
      assert.doesNotMatch(conf, /\$http_connection/);
      assert.match(conf, /^proxy_set_header Connection \$p_connection;$/m);
      assert.match(conf, /^proxy_set_header Upgrade \$http_upgrade;$/m);
      assert.match(conf, /^proxy_http_version 1\.1;$/m);
    },
  );
});

describe('upstream keep-alive and worker processes', () => {
  it('differs from the documented three-pod config only in the Connection map and the keepalive line', () => {
    const conf = render(seedThreePods(), defaultConfig({ upstreamKeepalive: '32' }), 'three pods, keepalive 32');
    const documented = golden('three-pods.conf').split('\n');
    // The documented Connection map and its comment: from after proxy_http_version to the map's closing brace.
    const documentedMap = documented.slice(
      documented.indexOf('proxy_http_version 1.1;') + 1,
      documented.indexOf('# Pass through the appropriate headers') - 1,
    );
    assert.equal(documentedMap.at(-1), "'' close;");
    const { removed, added } = lineDiff(golden('three-pods.conf'), conf);
    assert.deepEqual(removed, documentedMap);
    assert.deepEqual(
      added.filter((line) => !line.startsWith('#')),
      ['map $http_upgrade $p_connection {', 'default upgrade;', "'' '';", 'keepalive 32;'],
    );
  });

  it('writes worker_processes when it is not nginx default of 1', () => {
    for (const workers of ['auto', '4']) {
      const config = defaultConfig({ workerProcesses: workers });
      const conf = render(seedThreePods(), config, `workers ${workers}`);
      assert.equal(conf, `worker_processes ${workers};\n${golden('three-pods.conf')}`);
      const empty = render(buildRouteTable(config, [], []), config, `empty, workers ${workers}`);
      assert.equal(empty, `worker_processes ${workers};\n${golden('empty.conf')}`);
    }
    const managed = renderNginxConf(seedThreePods(), {
      ...defaultConfig({ workerProcesses: 'auto', upstreamKeepalive: '8' }),
      runtime: { pidFile: `${dir}/w.pid`, errorLog: `${dir}/w.log`, accessLog: `${dir}/a.log`, tempDir: dir },
    });
    rendered.set('managed, workers auto, keepalive 8', managed);
    assert.match(managed, /^daemon off;\npid .*\nerror_log .*\nworker_processes auto;\nevents \{$/m);
  });

  it('refuses values nginx would misread', () => {
    const table = seedThreePods();
    assert.throws(() => renderNginxConf(table, { ...defaultConfig(), upstreamKeepalive: 1.5 }), /not a whole number/);
    assert.throws(() => renderNginxConf(table, { ...defaultConfig(), workerProcesses: 0 }), /neither "auto" nor/);
  });
});

describe('session affinity', () => {
  /** The Go router's three pods, each with `routingAffinity` set to `value`. */
  const threePodsWith = (value: string): RouteTable => {
    const { pods, secrets } = parseManifest(
      readFileSync(new URL('../examples/seed-demo-three-pods.yaml', import.meta.url), 'utf8'),
      'three',
    );
    for (const p of pods) (p.metadata ??= {}).annotations = { ...p.metadata?.annotations, routingAffinity: value };
    return buildRouteTable(defaultConfig(), pods, secrets);
  };

  it('adds hash $remote_addr consistent to the upstream, before its servers, and changes nothing else', () => {
    const conf = render(threePodsWith('ip'), defaultConfig(), 'three pods, affinity ip');
    const { removed, added } = lineDiff(golden('three-pods.conf'), conf);
    assert.deepEqual(removed, []);
    assert.deepEqual(added, [
      '# Session affinity: each client address keeps to one pod (consistent hashing)',
      'hash $remote_addr consistent;',
    ]);
    assert.match(
      conf,
      /^upstream upstream1866206336 \{\n# Session affinity.*\nhash \$remote_addr consistent;\n# Pod /m,
    );
  });

  it('keeps keepalive last, after the hash and the servers (it wraps the balancer defined before it)', () => {
    const conf = render(
      threePodsWith('ip'),
      defaultConfig({ upstreamKeepalive: '8' }),
      'three pods, affinity ip, keepalive 8',
    );
    assert.match(
      conf,
      new RegExp(
        String.raw`^upstream upstream1866206336 \{\n#.*\nhash \$remote_addr consistent;\n` +
          String.raw`(?:# Pod .*\nserver .*;\n){3}keepalive 8;\n\}$`,
        'm',
      ),
    );
  });

  it('writes nothing for a route of one pod, whose only choice is that pod', () => {
    const one = (annotations: Record<string, string>): Pod[] => [
      pod('solo', { ip: '10.0.0.1', hosts: 'h', paths: '3000:/', annotations }),
    ];
    assert.equal(renderObjects(one({ routingAffinity: 'ip' })), renderObjects(one({})));
    const keepalive = defaultConfig({ upstreamKeepalive: '4' });
    assert.equal(renderObjects(one({ routingAffinity: 'ip' }), [], keepalive), renderObjects(one({}), [], keepalive));
  });

  it('renders a refused value as no affinity, and no text of it', () => {
    const hostile = 'ip;}\nhash $http_x consistent;';
    assert.equal(
      render(threePodsWith(hostile), defaultConfig(), 'three pods, hostile affinity'),
      golden('three-pods.conf'),
    );
  });
});

describe('server names hash', () => {
  it("places names in the buckets nginx's ngx_hash_key does (key * 31 + byte, unsigned 64-bit)", () => {
    const reference = (name: string, size: number): number => {
      let key = 0n;
      for (const byte of Buffer.from(name.toLowerCase(), 'latin1'))
        key = (key * 31n + BigInt(byte)) & ((1n << 64n) - 1n);
      return Number(key % BigInt(size));
    };
    fc.assert(
      fc.property(fc.stringMatching(/^[a-z0-9.-]{1,253}$/), fc.integer({ min: 1, max: 2 ** 26 }), (name, size) => {
        assert.equal(nginxHashBucket(name, size), reference(name, size));
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps the documented 512/64 when they fit', () => {
    assert.deepEqual(serverNamesHashSizes(['test.k8s.local']), { maxSize: 512, bucketSize: 64 });
  });

  it('grows the bucket for long host names', () => {
    const long = `${'a'.repeat(63)}.${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(61)}`;
    const sizes = serverNamesHashSizes([long]);
    assert.ok(sizes.bucketSize >= 2 * (8 + 256) + 8, `bucket ${sizes.bucketSize} holds two 253-character names`);
    renderObjects([pod('a', { hosts: `${long} short.example.com`, paths: '80:/' })]);
  });

  it('grows the table for many host names, sized so that nginx finds it at once', () => {
    const hosts = Array.from({ length: 20_000 }, (_, i) => `service-${i}.tenant-${i % 17}.example.com`);
    const sizes = serverNamesHashSizes(hosts);
    // Above 10000 and below 100 per name, nginx starts its search at max_size - 1000.
    assert.ok(
      sizes.maxSize > 10_000 && sizes.maxSize / hosts.length < 100,
      `max size ${sizes.maxSize} for 20000 names`,
    );
    // 200 pods of 100 hosts each: MAX_HOSTS_PER_POD caps a single pod at 100.
    const pods = Array.from({ length: 200 }, (_, p) =>
      pod(`p${p}`, { hosts: hosts.slice(p * 100, p * 100 + 100).join(' '), paths: '80:/' }),
    );
    const conf = renderObjects(pods);
    assert.equal(conf.match(/^server_name /gm)?.length, 20_000);
    assert.match(conf, new RegExp(`^server_names_hash_max_size ${sizes.maxSize};$`, 'm'));
  });

  it('sizes a few hundred names with the search nginx itself runs', () => {
    const hosts = Array.from({ length: 400 }, (_, i) => `svc-${i}.example.com`);
    assert.ok(serverNamesHashSizes(hosts).maxSize >= 512);
    renderObjects(
      Array.from({ length: 4 }, (_, p) =>
        pod(`q${p}`, { hosts: hosts.slice(p * 100, p * 100 + 100).join(' '), paths: '80:/' }),
      ),
    );
  });
});

describe('nginx.conf rendering: order, managed nginx and nginx -t', () => {
  it('renders the same bytes whatever order the objects arrive in', () => {
    const pods = [
      pod('b', { namespace: 'x', ip: '10.0.0.2', hosts: 'one.example.com two.example.com', paths: '80:/ 3000:/api' }),
      pod('a', { namespace: 'x', ip: '10.0.0.1', hosts: 'two.example.com', paths: '3000:/api' }),
      pod('c', { namespace: 'y', ip: '10.0.0.3', hosts: 'three.example.com', paths: '80:/' }),
    ];
    const secrets = [apiKeySecret('x', 'kx'), apiKeySecret('y', 'ky')];
    const expected = renderObjects(pods, secrets);
    fc.assert(
      fc.property(
        fc.shuffledSubarray(pods, { minLength: 3 }),
        fc.shuffledSubarray(secrets, { minLength: 2 }),
        (p, s) => {
          assert.equal(renderNginxConf(buildRouteTable(defaultConfig(), p, s), defaultConfig()), expected);
        },
      ),
    );
  });

  it('renders a config for a managed nginx with its own files and in the foreground', () => {
    const config = defaultConfig({ port: '18080', listenAddress: '127.0.0.1' });
    const runtime = {
      pidFile: `${dir}/nginx.pid`,
      errorLog: `${dir}/error.log`,
      accessLog: `${dir}/access.log`,
      tempDir: dir,
    };
    for (const table of [
      buildRouteTable(config, [], []),
      buildRouteTable(config, [pod('a', { hosts: 'h.example.com', paths: '80:/' })], []),
    ]) {
      const conf = renderNginxConf(table, { ...config, runtime });
      rendered.set(`managed ${table.routes.length}`, conf);
      assert.match(conf, /^daemon off;$/m);
      assert.doesNotMatch(conf, /^daemon on;$/m);
      assert.ok(conf.includes(`\npid ${dir}/nginx.pid;\n`));
      assert.ok(conf.includes(`\nerror_log ${dir}/error.log;\n`));
      assert.ok(conf.includes(`\nclient_body_temp_path ${dir}/client_body;\n`));
    }
  });

  // Runs last: tests in a file run in order, so every config rendered above is here.
  it('renders only configs that a real nginx -t accepts', async () => {
    assert.ok(rendered.size >= 12, `expected the file to render at least 12 configs, saw ${rendered.size}`);
    for (const [label, conf] of rendered) {
      const verdict = await nginxTest(conf);
      assert.ok(verdict.ok, `nginx -t refused ${label}:\n${verdict.output}\n---\n${conf.slice(0, 4000)}`);
      // A warning such as "could not build optimal server_names_hash" would mean our
      // sizing disagrees with nginx's own hash of the names.
      assert.doesNotMatch(verdict.output, /\[warn\]/, `nginx -t warned about ${label}`);
    }
  });
});
