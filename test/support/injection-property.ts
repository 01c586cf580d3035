import fc from 'fast-check';
import { defaultConfig, type RouterConfig } from '../../src/core/config.js';
import type { Pod, Secret } from '../../src/core/kube-objects.js';
import { buildRouteTable, type RouteTable } from '../../src/core/route-table.js';
import { serverNamesHashSizes } from '../../nginx/hash.js';
import { renderNginxConf, target, upstreamNames } from '../../nginx/render.js';
import { nginxTest } from './nginx-check.js';
import { parseNginxConf, type Directive } from './nginx-conf-parser.js';
import { pod } from './objects.js';

// The injection property: whatever text tenants put in their annotations (hosts, paths,
// affinity), pod names or Secrets, the rendered config (1) is accepted by a real `nginx -t` and (2) has
// exactly the directives the template writes for the routes in the table, with tenant
// values only where the template puts them. (2) is checked against an independent
// description of the template below, on the config as nginx's tokenizer reads it.

/** Fragments that mean something to nginx, to shells or to our parsers. */
const HOSTILE = [
  ';',
  '{',
  '}',
  '"',
  "'",
  '\\',
  '$',
  '#',
  '\n',
  '\r',
  '\t',
  '\0',
  '(',
  ')',
  '%',
  '%00',
  '%2e',
  '..',
  '//',
  '/./',
  ':',
  ';}',
  '}server{',
  ' return 200 "pwned";',
  '$host',
  '${host}',
  '\\"',
  'include /etc/passwd;',
  '# comment',
  'location / {',
  'proxy_pass http://evil;',
  '\u00e9',
  '\u2028',
  '\u00a0',
  '\ufeff',
  '\x7f',
  '*',
  '~',
  '=',
  '^~',
  '@',
];

const validHost = fc.constantFrom('a.example.com', 'B.EXAMPLE.com', 'c.test', '10.1.2.3', 'x-y.z');
const validPath = fc.constantFrom('80:/', '80:/api', '3000:/api/', '3000:/nodejs', '80:/a(b)', '80:/~user', '80:/a=b');

/** Annotation values: valid entries, hostile fragments and arbitrary text, glued together. */
export const annotationText = fc
  .array(
    fc.oneof(
      { weight: 8, arbitrary: fc.oneof(validHost, validPath) },
      {
        weight: 3,
        arbitrary: fc
          .array(fc.oneof(fc.constantFrom(...HOSTILE), validHost, validPath), { minLength: 1, maxLength: 4 })
          .map((p) => p.join('')),
      },
      { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
      { weight: 1, arbitrary: fc.string({ maxLength: 20 }).map((s) => `80:/${s}`) },
    ),
    { maxLength: 6 },
  )
  .chain((parts) => fc.constantFrom(' ', '\n', '\t', '  ').map((sep) => parts.join(sep)));

const nameText = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('web-1', 'web-2', 'api') },
  { weight: 1, arbitrary: fc.constantFrom(...HOSTILE).map((h) => `web${h}x`) },
);

export interface Case {
  pods: Pod[];
  secrets: Secret[];
}

export const caseArbitrary: fc.Arbitrary<Case> = fc
  .record({
    pods: fc.array(
      fc.record({
        name: nameText,
        namespace: fc.constantFrom('ns-a', 'ns-a', 'ns-b', 'ns-b', 'bad ns'),
        hosts: annotationText,
        paths: annotationText,
        affinity: fc.oneof(fc.constantFrom('ip', 'ip', ' ip ', ''), annotationText),
        ip: fc.constantFrom('10.0.0.1', '10.0.0.2', '10.0.0.3', 'fd00::3', '10.0.0.1;'),
      }),
      { minLength: 1, maxLength: 4 },
    ),
    secrets: fc.array(
      fc.record({
        namespace: fc.constantFrom('ns-a', 'ns-b'),
        value: fc.oneof(
          fc.base64String({ minLength: 4, maxLength: 24 }),
          fc.constantFrom(...HOSTILE),
          fc.string({ unit: 'binary', maxLength: 12 }),
        ),
      }),
      { maxLength: 2 },
    ),
  })
  .map(({ pods, secrets }) => ({
    pods: pods.map((p) =>
      pod(p.name, {
        namespace: p.namespace,
        hosts: p.hosts,
        paths: p.paths,
        ip: p.ip,
        annotations: { routingAffinity: p.affinity },
      }),
    ),
    secrets: secrets.map((s): Secret => ({
      kind: 'Secret',
      metadata: { name: 'routing', namespace: s.namespace },
      data: { 'api-key': s.value },
    })),
  }));

/** One line per directive: its block path, its name and its arguments as nginx reads them. */
function flatten(directives: Directive[], parent = ''): string[] {
  return directives.flatMap((d) => {
    const line = `${parent}${JSON.stringify([d.name, ...d.args])}`;
    return d.block ? [`${line} {`, ...flatten(d.block, `${parent}  `)] : [line];
  });
}

/** The directives the template writes for a table, independently of nginx/render.ts. */
export function expectedDirectives(table: RouteTable, config: RouterConfig): Directive[] {
  const listen =
    config.listenAddress === '*'
      ? String(config.port)
      : config.listenAddress.includes(':')
        ? `[${config.listenAddress}]:${config.port}`
        : `${config.listenAddress}:${config.port}`;
  const d = (name: string, args: string[] = [], block?: Directive[]): Directive =>
    block ? { name, args, block } : { name, args };
  const defaultServer = d('server', [], [d('listen', [listen, 'default_server']), d('return', ['444'])]);
  if (table.routes.length === 0) return [d('events', [], []), d('http', [], [defaultServer]), d('daemon', ['on'])];
  const hosts = [...new Set(table.routes.map((r) => r.host))];
  const hash = serverNamesHashSizes(hosts);
  const upstreams = upstreamNames(table.routes);
  const headerVar = `$http_${config.apiKeyHeader.toLowerCase().replace(/-/g, '_')}`;
  return [
    d('events', [], [d('worker_connections', ['1024'])]),
    d(
      'http',
      [],
      [
        d('types_hash_max_size', ['2048']),
        d('server_names_hash_max_size', [String(hash.maxSize)]),
        d('server_names_hash_bucket_size', [String(hash.bucketSize)]),
        d('proxy_http_version', ['1.1']),
        d('map', ['$http_connection', '$p_connection'], [d('default', ['$http_connection']), d('', ['close'])]),
        d('proxy_set_header', ['Connection', '$p_connection']),
        d('proxy_set_header', ['Host', '$host']),
        d('proxy_set_header', ['Upgrade', '$http_upgrade']),
        ...[...upstreams].map(([route, name]) =>
          d(
            'upstream',
            [name],
            [
              ...(route.affinity === 'ip' ? [d('hash', ['$remote_addr', 'consistent'])] : []),
              ...route.backends.map((b) => d('server', [target(b.ip, b.port)])),
            ],
          ),
        ),
        ...hosts.map((host) => {
          const routes = table.routes.filter((r) => r.host === host);
          return d(
            'server',
            [],
            [
              d('listen', [listen]),
              d('server_name', [host]),
              ...(routes.some((r) => r.path === '/') ? [] : [d('location', ['/'], [d('return', ['404'])])]),
              ...routes.map((r) =>
                d(
                  'location',
                  [r.path],
                  [
                    ...(r.apiKey === null
                      ? []
                      : [d('if', [`(${headerVar}`, '!=', r.apiKey, ')'], [d('return', ['403'])])]),
                    d('proxy_pass', [`http://${upstreams.get(r) ?? target(r.backends[0]!.ip, r.backends[0]!.port)}`]),
                  ],
                ),
              ),
            ],
          );
        }),
        defaultServer,
      ],
    ),
  ];
}

export interface Verdict {
  ok: boolean;
  problem?: string;
}

/** Renders the case and checks both halves of the property. */
export async function checkCase({ pods, secrets }: Case, config = defaultConfig()): Promise<Verdict> {
  const table = buildRouteTable(config, pods, secrets);
  const conf = renderNginxConf(table, config);
  let actual: string[];
  try {
    actual = flatten(parseNginxConf(conf));
  } catch (err) {
    return { ok: false, problem: `config does not parse: ${(err as Error).message}\n${conf}` };
  }
  const expected = flatten(expectedDirectives(table, config));
  if (actual.join('\n') !== expected.join('\n')) {
    return {
      ok: false,
      problem: `structure differs\nexpected:\n${expected.join('\n')}\nactual:\n${actual.join('\n')}\n---\n${conf}`,
    };
  }
  const verdict = await nginxTest(conf);
  if (!verdict.ok || /\[warn\]/.test(verdict.output))
    return { ok: false, problem: `nginx -t refused it or warned: ${verdict.output}\n---\n${conf}` };
  return { ok: true };
}

export function injectionProperty(): fc.IAsyncPropertyWithHooks<[Case]> {
  return fc.asyncProperty(caseArbitrary, async (c) => {
    const verdict = await checkCase(c);
    if (!verdict.ok) throw new Error(verdict.problem);
  });
}
