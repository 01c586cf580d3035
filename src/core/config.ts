import { isIP } from 'node:net';
import { invalidSettingCode, type ErrorCode } from './error-codes.js';
import { qualifiedNameProblem, dnsSubdomainProblem } from './kube-names.js';
import { parseLabelSelector, SelectorSyntaxError, type LabelSelector } from './label-selector.js';

// Every setting is an environment variable with a CLI flag that overrides it. The table
// below is the single description of them: the CLI builds its options from it, the
// README lists it (a test checks that), and validation names the variable or flag that
// carried a bad value.

export interface RouterConfig {
  labelSelector: LabelSelector;
  hostsAnnotation: string;
  pathsAnnotation: string;
  affinityAnnotation: string;
  apiKeySecret: { name: string; field: string };
  apiKeyHeader: string;
  port: number;
  listenAddress: string;
  requireReady: boolean;
  maxHostsPerPod: number;
  maxPathsPerPod: number;
  upstreamKeepalive: number;
  workerProcesses: number | 'auto';
  workerShutdownTimeoutMs: number | 'off';
  clientHeaderTimeoutMs: number;
  clientBodyTimeoutMs: number;
  keepaliveTimeoutMs: number;
  keepaliveRequests: number;
  clientMaxBodySize: number;
  backend: Backend;
  holdOffMs: number;
  maxDelayMs: number;
  watchBackoffMaxMs: number;
  nginxMode: NginxMode;
  nginxBinary: string;
  nginxPrefix: string;
  nginxConfig: string;
  nginxStatusPort: number | 'auto';
  nginxTestConfig: boolean;
  nginxReloadTimeoutMs: number;
  logLevel: LogLevel;
  printNginxConfig: boolean;
  adminPort: number | 'off';
  adminAddress: string;
  logFormat: LogFormat;
  events: boolean;
  eventsQps: number;
  eventsBurst: number;
  eventsStateDelayMs: number;
  podName: string;
  shutdownGraceMs: number;
}

export type Backend = 'auto' | 'nginx' | 'proxy';
/** The backend a router runs: BACKEND with 'auto' decided. */
export type ResolvedBackend = Exclude<Backend, 'auto'>;
/** How a route table reaches nginx: rendered into nginx.conf and reloaded, or sent as data to Lua in nginx. */
export type NginxMode = 'documented' | 'dynamic';
export const NGINX_MODES: readonly NginxMode[] = ['documented', 'dynamic'];
export type LogFormat = 'auto' | 'json' | 'pretty';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
const LOG_LEVELS: readonly LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export type SettingKey = keyof RouterConfig;

export interface Setting<K extends SettingKey = SettingKey> {
  key: K;
  /** Commands that use it: every command, or only `run`. */
  scope: 'all' | 'run';
  env: string;
  flag: string;
  metavar: string;
  default: string;
  description: string;
  /** Turns the raw text into the value, or throws InvalidValue with what is wrong. */
  parse(raw: string): RouterConfig[K];
}

/** Thrown by a setting's parser; only the problem, the caller knows which setting. */
export class InvalidValue extends Error {}

/** A setting with a bad value; `message` is the one line the CLI prints. */
export class ConfigError extends Error {
  constructor(
    readonly code: ErrorCode,
    readonly source: string,
    readonly value: string,
    readonly problem: string,
  ) {
    super(`invalid ${source}=${JSON.stringify(value)}: ${problem} [${code}]`);
    this.name = 'ConfigError';
  }
}

function annotationName(raw: string): string {
  const problem = qualifiedNameProblem(raw);
  if (problem !== null) throw new InvalidValue(`not a Kubernetes qualified name: ${problem}`);
  return raw;
}

export function parsePort(raw: string): number {
  if (!/^[0-9]+$/.test(raw)) throw new InvalidValue('not a number: must be an integer from 1 to 65535');
  const port = Number(raw);
  if (port < 1 || port > 65535) throw new InvalidValue('out of range: must be an integer from 1 to 65535');
  return port;
}

function secretLocation(raw: string): { name: string; field: string } {
  const parts = raw.split(':');
  if (parts.length !== 2) throw new InvalidValue('must be SECRET_NAME:DATA_FIELD with exactly one ":"');
  const [name = '', field = ''] = parts;
  const nameProblem = dnsSubdomainProblem(name);
  if (nameProblem !== null) throw new InvalidValue(`secret name ${nameProblem}`);
  // Secret data keys: alphanumerics, "-", "_" and "." (apimachinery IsConfigMapKey).
  if (!/^[-._A-Za-z0-9]+$/.test(field) || field.length > 253) {
    throw new InvalidValue('data field must be 1 to 253 characters of alphanumerics, "-", "_" or "."');
  }
  return { name, field };
}

function headerName(raw: string): string {
  // nginx reads the header through $http_<name>, with "-" turned into "_"; it ignores
  // request headers that contain "_" by default, so such a header could never match.
  if (!/^[A-Za-z0-9]+(-[A-Za-z0-9]+)*$/.test(raw)) {
    throw new InvalidValue(
      'must be letters and digits in words joined by single "-" (no "_": nginx ignores such headers)',
    );
  }
  return raw;
}

function selector(raw: string): LabelSelector {
  try {
    return parseLabelSelector(raw);
  } catch (err) {
    if (err instanceof SelectorSyntaxError) throw new InvalidValue(`not a label selector: ${err.message}`);
    throw err;
  }
}

/** "*" (every IPv4 address, as nginx's own default) or one IPv4 or IPv6 address. */
function listenAddress(raw: string): string {
  if (raw === '*' || isIP(raw) !== 0) return raw;
  throw new InvalidValue('must be "*" (all IPv4 addresses) or an IPv4 or IPv6 address');
}

function wholeNumber(raw: string, min: number, max: number): number {
  if (!/^[0-9]+$/.test(raw)) throw new InvalidValue(`not a number: must be a whole number from ${min} to ${max}`);
  const n = Number(raw);
  if (n < min || n > max) throw new InvalidValue(`out of range: must be from ${min} to ${max}`);
  return n;
}

/** A parser of whole numbers from 1 to `max`. */
function countUpTo(max: number): (raw: string) => number {
  return (raw) => wholeNumber(raw, 1, max);
}

const entryLimit = countUpTo(10_000);

function autoOrCount(raw: string): number | 'auto' {
  return raw === 'auto' ? 'auto' : wholeNumber(raw, 1, 1024);
}

/** nginx's size syntax: bytes, or a number of kilobytes, megabytes or gigabytes (`k`, `m`, `g`). */
function byteSize(raw: string): number {
  const m = /^([0-9]+)([kKmMgG]?)$/.exec(raw);
  if (m === null)
    throw new InvalidValue(
      'must be a whole number of bytes, optionally with k, m or g (as nginx writes sizes: 1m, 512k)',
    );
  const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[(m[2] as string).toLowerCase() as '' | 'k' | 'm' | 'g'];
  const bytes = Number(m[1]) * unit;
  if (!Number.isSafeInteger(bytes)) throw new InvalidValue('out of range: too large');
  return bytes;
}

function nginxMode(raw: string): NginxMode {
  const mode = NGINX_MODES.find((m) => m === raw);
  if (mode === undefined) throw new InvalidValue(`must be one of ${NGINX_MODES.join(', ')}`);
  return mode;
}

/** "off" (nginx's default: old workers live as long as their connections) or a timeout nginx takes. */
function offOrPositiveMilliseconds(raw: string): number | 'off' {
  return raw === 'off' ? 'off' : positiveMilliseconds(raw);
}

function bool(raw: string): boolean {
  if (raw === 'true') return true;
  if (raw === 'false') return false;
  throw new InvalidValue('must be "true" or "false"');
}

function backend(raw: string): Backend {
  if (raw === 'auto' || raw === 'nginx' || raw === 'proxy') return raw;
  throw new InvalidValue('must be "auto", "nginx" or "proxy"');
}

/** A parser of whole numbers of milliseconds up to `max`. */
function millisecondsUpTo(max: number): (raw: string) => number {
  return (raw) => {
    if (!/^[0-9]+$/.test(raw)) throw new InvalidValue('not a number: must be a whole number of milliseconds');
    const ms = Number(raw);
    if (ms > max) throw new InvalidValue(`out of range: must be at most ${max} milliseconds`);
    return ms;
  };
}

const milliseconds = millisecondsUpTo(60_000);

/** A timeout nginx takes: 1 ms to an hour (nginx has no "never" for these). */
function positiveMilliseconds(raw: string): number {
  const ms = millisecondsUpTo(3_600_000)(raw);
  if (ms < 1) throw new InvalidValue('out of range: must be at least 1 millisecond');
  return ms;
}

function filePath(raw: string): string {
  // eslint-disable-next-line no-control-regex -- control characters are exactly what this rejects
  if (raw.length === 0 || /[\x00-\x1f\x7f]/.test(raw))
    throw new InvalidValue('must be a path without control characters');
  return raw;
}

function autoOrPath(raw: string): string {
  if (raw !== 'auto' && !raw.startsWith('/')) throw new InvalidValue('must be "auto" or an absolute path');
  return filePath(raw);
}

function autoOrPort(raw: string): number | 'auto' {
  return raw === 'auto' ? 'auto' : parsePort(raw);
}

function logLevel(raw: string): LogLevel {
  const level = LOG_LEVELS.find((l) => l === raw);
  if (level === undefined) throw new InvalidValue(`must be one of ${LOG_LEVELS.join(', ')}`);
  return level;
}

/** A port, 0 for any free one, or "off". */
function adminPort(raw: string): number | 'off' {
  if (raw === 'off') return 'off';
  if (raw === '0') return 0;
  try {
    return parsePort(raw);
  } catch (err) {
    throw new InvalidValue(`${(err as Error).message}, 0 (any free port) or "off"`);
  }
}

function ipAddress(raw: string): string {
  if (isIP(raw) === 0) throw new InvalidValue('must be an IPv4 or IPv6 address');
  return raw;
}

function logFormat(raw: string): LogFormat {
  if (raw === 'auto' || raw === 'json' || raw === 'pretty') return raw;
  throw new InvalidValue('must be "auto", "json" or "pretty"');
}

function eventsPerSecond(raw: string): number {
  if (!/^[0-9]+(\.[0-9]+)?$/.test(raw))
    throw new InvalidValue('not a number: must be a number of writes per second, such as 5 or 0.5');
  const qps = Number(raw);
  if (qps < 0.01 || qps > 1000) throw new InvalidValue('out of range: must be from 0.01 to 1000');
  return qps;
}

/** "auto" (the host name) or a pod name, as the downward API gives it. */
function podName(raw: string): string {
  if (raw === 'auto') return raw;
  const problem = dnsSubdomainProblem(raw);
  if (problem !== null) throw new InvalidValue(`must be "auto" or a pod name: ${problem}`);
  return raw;
}

function setting<K extends SettingKey>(s: Omit<Setting<K>, 'scope'> & { scope?: Setting<K>['scope'] }): Setting<K> {
  return { scope: 'all', ...s };
}

export const SETTINGS: readonly Setting[] = [
  setting({
    key: 'labelSelector',
    env: 'ROUTABLE_LABEL_SELECTOR',
    flag: '--label-selector',
    metavar: 'SELECTOR',
    default: 'routable=true',
    description: 'label selector of the pods to route (=, ==, !=, in, notin, exists, !key)',
    parse: selector,
  }),
  setting({
    key: 'hostsAnnotation',
    env: 'HOSTS_ANNOTATION',
    flag: '--hosts-annotation',
    metavar: 'NAME',
    default: 'routingHosts',
    description: 'pod annotation holding the whitespace-separated hosts',
    parse: annotationName,
  }),
  setting({
    key: 'pathsAnnotation',
    env: 'PATHS_ANNOTATION',
    flag: '--paths-annotation',
    metavar: 'NAME',
    default: 'routingPaths',
    description: 'pod annotation holding the whitespace-separated PORT:PATH entries',
    parse: annotationName,
  }),
  setting({
    key: 'affinityAnnotation',
    env: 'AFFINITY_ANNOTATION',
    flag: '--affinity-annotation',
    metavar: 'NAME',
    default: 'routingAffinity',
    description:
      'pod annotation asking for session affinity: "ip" keeps each client address on one pod ' +
      "(nginx's hash $remote_addr consistent)",
    parse: annotationName,
  }),
  setting({
    key: 'apiKeySecret',
    env: 'API_KEY_SECRET_LOCATION',
    flag: '--api-key-secret-location',
    metavar: 'NAME:FIELD',
    default: 'routing:api-key',
    description: 'SECRET_NAME:DATA_FIELD of the per-namespace API key',
    parse: secretLocation,
  }),
  setting({
    key: 'apiKeyHeader',
    env: 'API_KEY_HEADER',
    flag: '--api-key-header',
    metavar: 'HEADER',
    default: 'X-ROUTING-API-KEY',
    description: 'request header that carries the API key',
    parse: headerName,
  }),
  setting({
    key: 'port',
    env: 'PORT',
    flag: '--port',
    metavar: 'PORT',
    default: '80',
    description: 'port the data plane listens on',
    parse: parsePort,
  }),
  setting({
    key: 'listenAddress',
    env: 'LISTEN_ADDRESS',
    flag: '--listen-address',
    metavar: 'ADDRESS',
    default: '*',
    description: 'address the data plane listens on: "*" for all IPv4 addresses, or one IP address',
    parse: listenAddress,
  }),
  setting({
    key: 'requireReady',
    env: 'REQUIRE_READY',
    flag: '--require-ready',
    metavar: 'BOOL',
    default: 'true',
    description: 'route only pods whose Ready condition is True',
    parse: bool,
  }),
  setting({
    key: 'maxHostsPerPod',
    env: 'MAX_HOSTS_PER_POD',
    flag: '--max-hosts-per-pod',
    metavar: 'N',
    default: '100',
    description: 'hosts one pod may route; more are dropped with a reason (routes are hosts x paths)',
    parse: entryLimit,
  }),
  setting({
    key: 'maxPathsPerPod',
    env: 'MAX_PATHS_PER_POD',
    flag: '--max-paths-per-pod',
    metavar: 'N',
    default: '100',
    description: 'paths one pod may route; more are dropped with a reason',
    parse: entryLimit,
  }),
  setting({
    key: 'upstreamKeepalive',
    env: 'UPSTREAM_KEEPALIVE',
    flag: '--upstream-keepalive',
    metavar: 'N',
    default: '0',
    description:
      'idle connections kept open to each pod for reuse (nginx upstream keepalive); 0 opens one per request, ' +
      'as documented',
    parse: (raw) => wholeNumber(raw, 0, 10_000),
  }),
  setting({
    key: 'workerProcesses',
    env: 'WORKER_PROCESSES',
    flag: '--worker-processes',
    metavar: 'N',
    default: '1',
    description: 'nginx worker_processes: a number, or auto for one per core',
    parse: autoOrCount,
  }),
  setting({
    key: 'workerShutdownTimeoutMs',
    env: 'WORKER_SHUTDOWN_TIMEOUT_MS',
    flag: '--worker-shutdown-timeout-ms',
    metavar: 'MS',
    default: 'off',
    description:
      "nginx's worker_shutdown_timeout: how long old workers may keep serving their open connections " +
      '(WebSockets) after a reload; off: as long as those last',
    parse: offOrPositiveMilliseconds,
  }),
  setting({
    key: 'clientHeaderTimeoutMs',
    env: 'CLIENT_HEADER_TIMEOUT_MS',
    flag: '--client-header-timeout-ms',
    metavar: 'MS',
    default: '60000',
    description:
      "nginx's client_header_timeout: a client must send a request's line and headers within this long, or " +
      'the connection is closed without an answer',
    parse: positiveMilliseconds,
  }),
  setting({
    key: 'clientBodyTimeoutMs',
    env: 'CLIENT_BODY_TIMEOUT_MS',
    flag: '--client-body-timeout-ms',
    metavar: 'MS',
    default: '60000',
    description:
      "nginx's client_body_timeout: longest pause between two reads of a request body before the request is abandoned",
    parse: positiveMilliseconds,
  }),
  setting({
    key: 'keepaliveTimeoutMs',
    env: 'KEEPALIVE_TIMEOUT_MS',
    flag: '--keepalive-timeout-ms',
    metavar: 'MS',
    default: '75000',
    description:
      "nginx's keepalive_timeout: how long an idle client connection is kept open for its next request; 0 " +
      'closes every connection after one request',
    parse: millisecondsUpTo(3_600_000),
  }),
  setting({
    key: 'keepaliveRequests',
    env: 'KEEPALIVE_REQUESTS',
    flag: '--keepalive-requests',
    metavar: 'N',
    default: '1000',
    description:
      "nginx's keepalive_requests: requests one client connection may carry; the last is answered with " +
      'Connection: close',
    parse: (raw) => wholeNumber(raw, 0, 1_000_000_000),
  }),
  setting({
    key: 'clientMaxBodySize',
    env: 'CLIENT_MAX_BODY_SIZE',
    flag: '--client-max-body-size',
    metavar: 'SIZE',
    default: '1m',
    description:
      "nginx's client_max_body_size: a larger request body is refused with 413; bytes, or with k, m or g; 0 " +
      'for no limit',
    parse: byteSize,
  }),
  setting({
    key: 'backend',
    scope: 'run',
    env: 'BACKEND',
    flag: '--backend',
    metavar: 'NAME',
    default: 'auto',
    description: 'data plane: nginx, proxy (in-process), or auto (nginx in a cluster pod, proxy elsewhere)',
    parse: backend,
  }),
  setting({
    key: 'holdOffMs',
    scope: 'run',
    env: 'HOLD_OFF_MS',
    flag: '--hold-off-ms',
    metavar: 'MS',
    default: '100',
    description: 'quiet period after a change before the routes are rebuilt, so bursts cause one update',
    parse: milliseconds,
  }),
  setting({
    key: 'maxDelayMs',
    scope: 'run',
    env: 'MAX_DELAY_MS',
    flag: '--max-delay-ms',
    metavar: 'MS',
    default: '250',
    description: 'longest wait from a change to its rebuild, however long a burst lasts',
    parse: milliseconds,
  }),
  setting({
    key: 'watchBackoffMaxMs',
    scope: 'run',
    env: 'WATCH_BACKOFF_MAX_MS',
    flag: '--watch-backoff-max-ms',
    metavar: 'MS',
    default: '30000',
    description:
      'longest wait between attempts to reach the API server after failures (the wait starts at 500 ms and doubles)',
    parse: (raw) => {
      const ms = milliseconds(raw);
      if (ms < 100) throw new InvalidValue('out of range: must be at least 100 milliseconds');
      return ms;
    },
  }),
  setting({
    key: 'nginxMode',
    scope: 'run',
    env: 'NGINX_MODE',
    flag: '--nginx-mode',
    metavar: 'MODE',
    default: 'documented',
    description:
      'how a route table reaches nginx: documented (rendered into nginx.conf, nginx reloads) or dynamic ' +
      '(sent as data to Lua in nginx: no reload for a route change)',
    parse: nginxMode,
  }),
  setting({
    key: 'nginxBinary',
    scope: 'run',
    env: 'NGINX_BINARY',
    flag: '--nginx-binary',
    metavar: 'PATH',
    default: 'nginx',
    description: 'nginx executable: a path, or a name looked up in PATH, /usr/sbin and /usr/local/sbin',
    parse: filePath,
  }),
  setting({
    key: 'nginxPrefix',
    scope: 'run',
    env: 'NGINX_PREFIX',
    flag: '--nginx-prefix',
    metavar: 'DIR',
    default: 'auto',
    description: 'directory for the nginx pid, logs and temporary files; auto: <tmpdir>/k8s-router-<PORT>',
    parse: autoOrPath,
  }),
  setting({
    key: 'nginxConfig',
    scope: 'run',
    env: 'NGINX_CONFIG',
    flag: '--nginx-config',
    metavar: 'FILE',
    default: 'auto',
    description: 'where the router writes nginx.conf; auto: nginx.conf in the prefix',
    parse: autoOrPath,
  }),
  setting({
    key: 'nginxStatusPort',
    scope: 'run',
    env: 'NGINX_STATUS_PORT',
    flag: '--nginx-status-port',
    metavar: 'PORT',
    default: 'auto',
    description: 'loopback port where nginx tells the router which config it serves; auto: a free port',
    parse: autoOrPort,
  }),
  setting({
    key: 'nginxTestConfig',
    scope: 'run',
    env: 'NGINX_TEST_CONFIG',
    flag: '--nginx-test-config',
    metavar: 'BOOL',
    default: 'true',
    description:
      'check each new config with nginx -t before nginx loads it; false lets the reload be the check (one ' +
      'parse instead of two)',
    parse: bool,
  }),
  setting({
    key: 'nginxReloadTimeoutMs',
    scope: 'run',
    env: 'NGINX_RELOAD_TIMEOUT_MS',
    flag: '--nginx-reload-timeout-ms',
    metavar: 'MS',
    default: '30000',
    description:
      'how long nginx may take to start, or to load a new config, before the attempt counts as failed (a ' +
      'config of tens of thousands of routes takes nginx seconds to parse)',
    parse: (raw) => {
      const ms = millisecondsUpTo(600_000)(raw);
      if (ms < 1000) throw new InvalidValue('out of range: must be at least 1000 milliseconds');
      return ms;
    },
  }),
  setting({
    key: 'logLevel',
    scope: 'run',
    env: 'LOG_LEVEL',
    flag: '--log-level',
    metavar: 'LEVEL',
    default: 'info',
    description: `log level: ${LOG_LEVELS.join(', ')}`,
    parse: logLevel,
  }),
  setting({
    key: 'printNginxConfig',
    scope: 'run',
    env: 'PRINT_NGINX_CONFIG',
    flag: '--print-nginx-config',
    metavar: 'BOOL',
    default: 'false',
    description: 'print the nginx.conf for every new route table to standard output',
    parse: bool,
  }),
  setting({
    key: 'adminPort',
    scope: 'run',
    env: 'ADMIN_PORT',
    flag: '--admin-port',
    metavar: 'PORT',
    default: '9180',
    description:
      'port of the admin server (health, readiness, metrics, status page); 0: any free port; off: no admin server',
    parse: adminPort,
  }),
  setting({
    key: 'adminAddress',
    scope: 'run',
    env: 'ADMIN_ADDRESS',
    flag: '--admin-address',
    metavar: 'ADDRESS',
    default: '127.0.0.1',
    description: 'IP address the admin server listens on',
    parse: ipAddress,
  }),
  setting({
    key: 'logFormat',
    scope: 'run',
    env: 'LOG_FORMAT',
    flag: '--log-format',
    metavar: 'FORMAT',
    default: 'auto',
    description:
      'json (one JSON object a line), pretty (readable lines), or auto (pretty when standard error is a terminal)',
    parse: logFormat,
  }),
  setting({
    key: 'events',
    scope: 'run',
    env: 'EVENTS',
    flag: '--events',
    metavar: 'BOOL',
    default: 'true',
    description:
      'write a Kubernetes Event (Warning, RouteRejected) on each pod that is not routed, saying why (cluster ' +
      'source only)',
    parse: bool,
  }),
  setting({
    key: 'eventsQps',
    scope: 'run',
    env: 'EVENTS_QPS',
    flag: '--events-qps',
    metavar: 'N',
    default: '5',
    description: 'Event writes per second, at most (on average)',
    parse: eventsPerSecond,
  }),
  setting({
    key: 'eventsBurst',
    scope: 'run',
    env: 'EVENTS_BURST',
    flag: '--events-burst',
    metavar: 'N',
    default: '10',
    description: 'Event writes allowed at once after a quiet spell, above EVENTS_QPS',
    parse: countUpTo(1000),
  }),
  setting({
    key: 'eventsStateDelayMs',
    scope: 'run',
    env: 'EVENTS_STATE_DELAY_MS',
    flag: '--events-state-delay-ms',
    metavar: 'MS',
    default: '60000',
    description:
      'a pod that is not running, not ready or has no IP gets its Event only after it stayed so this long ' +
      '(start-ups and rollouts leave none)',
    parse: millisecondsUpTo(3_600_000),
  }),
  setting({
    key: 'podName',
    scope: 'run',
    env: 'POD_NAME',
    flag: '--pod-name',
    metavar: 'NAME',
    default: 'auto',
    description:
      "the router's name in its Events (reportingInstance): its pod name from the downward API; auto: the host name",
    parse: podName,
  }),
  setting({
    key: 'shutdownGraceMs',
    scope: 'run',
    env: 'SHUTDOWN_GRACE_MS',
    flag: '--shutdown-grace-ms',
    metavar: 'MS',
    default: '25000',
    description:
      "on SIGTERM, how long requests and WebSockets in flight may take to finish; keep it below the pod's " +
      'terminationGracePeriodSeconds',
    parse: millisecondsUpTo(3_600_000),
  }),
];

export function settingCode(s: Setting): ErrorCode {
  return invalidSettingCode(s.env);
}

/**
 * Builds the configuration: a flag wins over its variable, which wins over the default.
 * An empty variable counts as unset, as shells and manifests often leave them so.
 * Throws ConfigError for the first bad value, naming where it came from.
 */
export function loadConfig(
  env: Readonly<Record<string, string | undefined>>,
  flags: Readonly<Partial<Record<SettingKey, string>>> = {},
): RouterConfig {
  const config: Partial<Record<SettingKey, unknown>> = {};
  for (const s of SETTINGS) {
    const fromFlag = flags[s.key];
    const fromEnv = env[s.env];
    const [source, raw] =
      fromFlag !== undefined
        ? [s.flag, fromFlag]
        : fromEnv !== undefined && fromEnv !== ''
          ? [s.env, fromEnv]
          : [`${s.env} (default)`, s.default];
    try {
      config[s.key] = s.parse(raw);
    } catch (err) {
      if (err instanceof InvalidValue) throw new ConfigError(settingCode(s), source, raw, err.message);
      throw err;
    }
  }
  return config as RouterConfig;
}

/** The configuration with every default, for tests and tools. */
export function defaultConfig(overrides: Readonly<Partial<Record<SettingKey, string>>> = {}): RouterConfig {
  return loadConfig({}, overrides);
}

/**
 * The options of `defaults`, each taken from `given` where it is there and not undefined.
 * Each entry point with options fills them so, with defaults made from the settings table
 * (its `...OptionsFrom(defaultConfig())`), so that the library called without options
 * behaves as the CLI with no flags. Other properties of `given` are left out.
 */
export function withDefaults<T extends object>(defaults: T, given: Readonly<Partial<T>>): T {
  const out = { ...defaults };
  for (const key of Object.keys(defaults) as (keyof T)[]) {
    const value = given[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}
