import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, defaultConfig, loadConfig, SETTINGS } from '../src/core/config.js';

describe('configuration', () => {
  it('has the seed defaults', () => {
    const config = loadConfig({});
    assert.equal(config.labelSelector.text, 'routable=true');
    assert.equal(config.hostsAnnotation, 'routingHosts');
    assert.equal(config.pathsAnnotation, 'routingPaths');
    assert.deepEqual(config.apiKeySecret, { name: 'routing', field: 'api-key' });
    assert.equal(config.apiKeyHeader, 'X-ROUTING-API-KEY');
    assert.equal(config.port, 80);
    assert.equal(config.listenAddress, '*');
    assert.equal(config.requireReady, true);
  });

  it('reads environment variables, and flags override them', () => {
    const env = { PORT: '8080', HOSTS_ANNOTATION: 'publicHosts', API_KEY_SECRET_LOCATION: 'routing:public-api-key' };
    const fromEnv = loadConfig(env);
    assert.equal(fromEnv.port, 8080);
    assert.equal(fromEnv.hostsAnnotation, 'publicHosts');
    assert.deepEqual(fromEnv.apiKeySecret, { name: 'routing', field: 'public-api-key' });
    assert.equal(loadConfig(env, { port: '81' }).port, 81);
  });

  it('has an admin server on 127.0.0.1:9180 that can be moved or turned off, and picks the log format itself', () => {
    const config = loadConfig({});
    assert.equal(config.adminPort, 9180);
    assert.equal(config.adminAddress, '127.0.0.1');
    assert.equal(config.logFormat, 'auto');
    assert.equal(loadConfig({ ADMIN_PORT: 'off' }).adminPort, 'off');
    assert.equal(loadConfig({ ADMIN_PORT: '0' }).adminPort, 0);
    assert.equal(loadConfig({}, { adminAddress: '::1' }).adminAddress, '::1');
  });

  it('treats an empty variable as unset', () => {
    assert.equal(loadConfig({ PORT: '' }).port, 80);
  });

  it('names the variable, the value and the problem in one line, with a stable code', () => {
    assert.throws(
      () => loadConfig({ PORT: '99999' }),
      (err: unknown) =>
        err instanceof ConfigError &&
        err.code === 'KR_INVALID_PORT' &&
        err.message === 'invalid PORT="99999": out of range: must be an integer from 1 to 65535 [KR_INVALID_PORT]',
    );
  });

  it('names the flag when the bad value came from a flag', () => {
    assert.throws(() => loadConfig({}, { port: 'http' }), /^ConfigError: invalid --port="http": not a number/);
  });
});

describe('configuration: values each setting refuses', () => {
  for (const [env, value, problem] of [
    ['PORT', '0', /out of range/],
    ['PORT', '-1', /not a number/],
    ['PORT', '80.5', /not a number/],
    ['ROUTABLE_LABEL_SELECTOR', 'routable in (true', /not a label selector/],
    ['HOSTS_ANNOTATION', 'routing hosts', /not a Kubernetes qualified name/],
    ['PATHS_ANNOTATION', 'example.com/', /qualified name/],
    ['API_KEY_SECRET_LOCATION', 'routing', /exactly one ":"/],
    ['API_KEY_SECRET_LOCATION', 'routing:api:key', /exactly one ":"/],
    ['API_KEY_SECRET_LOCATION', 'Routing:api-key', /secret name/],
    ['API_KEY_SECRET_LOCATION', 'routing:', /data field/],
    ['API_KEY_HEADER', 'X_ROUTING_KEY', /no "_"/],
    ['API_KEY_HEADER', 'X-Key: 1', /letters and digits/],
    ['LISTEN_ADDRESS', 'localhost', /an IPv4 or IPv6 address/],
    ['REQUIRE_READY', 'yes', /"true" or "false"/],
    ['ADMIN_PORT', 'none', /not a number: must be an integer from 1 to 65535, 0 \(any free port\) or "off"/],
    ['ADMIN_PORT', '70000', /out of range/],
    ['ADMIN_ADDRESS', 'localhost', /an IPv4 or IPv6 address/],
    ['LOG_FORMAT', 'text', /"auto", "json" or "pretty"/],
    ['NGINX_RELOAD_TIMEOUT_MS', '500', /out of range: must be at least 1000 milliseconds/],
    ['NGINX_RELOAD_TIMEOUT_MS', '600001', /out of range: must be at most 600000 milliseconds/],
    ['UPSTREAM_KEEPALIVE', '-1', /not a number/],
    ['UPSTREAM_KEEPALIVE', '10001', /out of range: must be from 0 to 10000/],
    ['WORKER_PROCESSES', '0', /out of range: must be from 1 to 1024/],
    ['WORKER_PROCESSES', 'all', /not a number/],
    ['CLIENT_HEADER_TIMEOUT_MS', '0', /out of range: must be at least 1 millisecond/],
    ['CLIENT_HEADER_TIMEOUT_MS', '60s', /not a number: must be a whole number of milliseconds/],
    ['CLIENT_BODY_TIMEOUT_MS', '3600001', /out of range: must be at most 3600000 milliseconds/],
    ['KEEPALIVE_TIMEOUT_MS', '-1', /not a number/],
    ['KEEPALIVE_REQUESTS', '1.5', /not a number/],
    ['CLIENT_MAX_BODY_SIZE', '1mb', /whole number of bytes, optionally with k, m or g/],
    ['CLIENT_MAX_BODY_SIZE', '1t', /whole number of bytes/],
    ['CLIENT_MAX_BODY_SIZE', '99999999999999999g', /out of range: too large/],
  ] as const) {
    it(`refuses ${env}=${JSON.stringify(value)}`, () => {
      assert.throws(
        () => loadConfig({ [env]: value }),
        (err: unknown) =>
          err instanceof ConfigError &&
          err.code === `KR_INVALID_${env}` &&
          err.source === env &&
          problem.test(err.message),
      );
    });
  }
});

describe('configuration: selectors, addresses, keep-alive and limits', () => {
  it('accepts the full selector syntax, IPv6 listen addresses and prefixed annotation names', () => {
    const config = defaultConfig({
      labelSelector: 'routable==true,env in (a,b),!canary',
      listenAddress: '::1',
      hostsAnnotation: 'router.example.com/hosts',
    });
    assert.equal(config.labelSelector.requirements.length, 3);
    assert.equal(config.listenAddress, '::1');
    assert.equal(config.hostsAnnotation, 'router.example.com/hosts');
  });

  it('reads upstream keep-alive and nginx worker processes, defaulting to the documented config', () => {
    assert.equal(loadConfig({}).upstreamKeepalive, 0);
    assert.equal(loadConfig({}).workerProcesses, 1);
    const config = loadConfig({ UPSTREAM_KEEPALIVE: '32', WORKER_PROCESSES: 'auto' });
    assert.equal(config.upstreamKeepalive, 32);
    assert.equal(config.workerProcesses, 'auto');
    assert.equal(loadConfig({}, { workerProcesses: '4' }).workerProcesses, 4);
  });

  it("reads client timeouts and limits, defaulting to nginx's own defaults", () => {
    const defaults = loadConfig({});
    assert.equal(defaults.clientHeaderTimeoutMs, 60_000);
    assert.equal(defaults.clientBodyTimeoutMs, 60_000);
    assert.equal(defaults.keepaliveTimeoutMs, 75_000);
    assert.equal(defaults.keepaliveRequests, 1000);
    assert.equal(defaults.clientMaxBodySize, 1024 * 1024);
    const config = loadConfig({
      CLIENT_HEADER_TIMEOUT_MS: '500',
      KEEPALIVE_TIMEOUT_MS: '0',
      KEEPALIVE_REQUESTS: '0',
      CLIENT_MAX_BODY_SIZE: '512k',
    });
    assert.equal(config.clientHeaderTimeoutMs, 500);
    assert.equal(config.keepaliveTimeoutMs, 0);
    assert.equal(config.keepaliveRequests, 0);
    assert.equal(config.clientMaxBodySize, 512 * 1024);
    assert.equal(loadConfig({ CLIENT_MAX_BODY_SIZE: '0' }).clientMaxBodySize, 0);
    assert.equal(loadConfig({ CLIENT_MAX_BODY_SIZE: '2G' }).clientMaxBodySize, 2 * 1024 ** 3);
    assert.equal(loadConfig({}, { clientBodyTimeoutMs: '1500' }).clientBodyTimeoutMs, 1500);
  });

  it('gives every setting a distinct variable and flag', () => {
    assert.equal(new Set(SETTINGS.map((s) => s.env)).size, SETTINGS.length);
    assert.equal(new Set(SETTINGS.map((s) => s.flag)).size, SETTINGS.length);
    for (const s of SETTINGS) assert.doesNotThrow(() => s.parse(s.default), `default of ${s.env} must be valid`);
  });
});

describe('events settings', () => {
  it(
    'defaults to Events on, 5 writes a second in bursts of 10, pod states reported after a minute, the host ' +
      'name as identity',
    () => {
      const config = loadConfig({});
      assert.deepEqual(
        [config.events, config.eventsQps, config.eventsBurst, config.eventsStateDelayMs, config.podName],
        [true, 5, 10, 60_000, 'auto'],
      );
      assert.equal(loadConfig({ EVENTS_QPS: '0.5', POD_NAME: 'k8s-router-x7k2p' }).eventsQps, 0.5);
    },
  );

  for (const [env, value, problem] of [
    ['EVENTS', 'off', /"true" or "false"/],
    ['EVENTS_QPS', 'fast', /not a number/],
    ['EVENTS_QPS', '0', /out of range/],
    ['EVENTS_QPS', '1e3', /not a number/],
    ['EVENTS_BURST', '0', /out of range: must be from 1 to 1000/],
    ['EVENTS_BURST', '2.5', /not a number/],
    ['EVENTS_STATE_DELAY_MS', '3600001', /at most 3600000/],
    ['POD_NAME', 'Router_0', /must be "auto" or a pod name/],
  ] as const) {
    it(`refuses ${env}=${JSON.stringify(value)}`, () => {
      assert.throws(
        () => loadConfig({ [env]: value }),
        (err: unknown) => err instanceof ConfigError && err.code === `KR_INVALID_${env}` && problem.test(err.message),
      );
    });
  }
});
