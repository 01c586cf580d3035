import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pickFreeLoopbackPort } from '../../nginx/status.js';
import { sendRaw } from '../conformance/raw-http.js';
import { NGINX_BINARY } from './nginx-check.js';

// Makes the golden values of test/consistent-hash.test.ts from a real nginx:
//
//   node --import tsx test/support/chash-golden.ts > golden.json
//
// nginx (Debian's is built --with-debug) runs an upstream per server list with
// `hash $remote_addr consistent;`, the realip module takes $remote_addr from the
// X-Client-Address header, and the debug log says, for each request, the key nginx hashed
// ("upstream hash key") and the point the walk starts on with that point's server
// ("consistent hash peer:N, server:TEXT"). One try per request (proxy_next_upstream off),
// so no failure mark changes the next request's walk; the servers need not exist.

export const GOLDEN_SERVER_LISTS: readonly (readonly string[])[] = [
  // The Go router's README, scaled to three pods, in pod-name order.
  ['10.244.69.6:3000', '10.244.69.9:3000', '10.244.69.8:3000'],
  // Port 80 (written without it) and IPv6 pods.
  ['10.0.0.1', '10.0.0.2:8080', '[fd00::1]:3000', '[fd00::2]'],
  // Ten pods.
  Array.from({ length: 10 }, (_, i) => `10.1.0.${i + 1}:3000`),
  // Two pods reporting one address share its points.
  ['10.0.0.7:3000', '10.0.0.7:3000', '10.0.0.8:3000'],
];

/** Client addresses as sent in X-Client-Address: IPv4, and IPv6 in the forms nginx rewrites. */
export const GOLDEN_ADDRESSES: readonly string[] = [
  '127.0.0.1',
  '10.0.0.1',
  '192.168.1.20',
  '203.0.113.9',
  '8.8.8.8',
  '1.2.3.4',
  '0.0.0.0',
  '172.16.5.77',
  '100.64.0.1',
  '198.51.100.23',
  '11.22.33.44',
  '::1',
  '2001:db8::1',
  '2001:DB8:0:0:0:0:0:1',
  'fe80::1',
  '::ffff:192.0.2.128',
  '::ffff:c000:280',
  '2001:db8:0:0:1:0:0:1',
  '2001:0db8:85a3:0000:0000:8a2e:0370:7334',
  '::',
  '::0.0.1.2',
  '::1.2.3.4',
  '1::',
  '2001:db8::ffff:0:1',
  'fd00::3:0:0:4',
];

export interface GoldenCase {
  /** What X-Client-Address carried. */
  sent: string;
  /** nginx's $remote_addr, the key it hashed. */
  key: string;
  /** The point the walk starts on (find_chash_point). */
  point: number;
  /** That point's server. */
  server: string;
}

function config(prefix: string, port: number, lists: readonly (readonly string[])[]): string {
  const upstreams = lists.map(
    (servers, i) =>
      `upstream u${i} {\nhash $remote_addr consistent;\n${servers.map((s) => `server ${s};`).join('\n')}\n}`,
  );
  const locations = lists.map((_, i) => `location /u${i} {\nproxy_pass http://u${i};\n}`);
  return `daemon off;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log debug;
events {}
http {
access_log off;
client_body_temp_path ${prefix}/tmp;
proxy_temp_path ${prefix}/tmp;
set_real_ip_from 127.0.0.0/8;
real_ip_header X-Client-Address;
proxy_next_upstream off;
proxy_connect_timeout 50ms;
${upstreams.join('\n')}
server {
listen 127.0.0.1:${port};
${locations.join('\n')}
}
}
`;
}

/** The first walk step of each request, from the debug log written since `offset`. */
function firstStep(log: string): { key: string; point: number; server: string } {
  const key = /upstream hash key:"([^"]*)"/.exec(log);
  const step = /consistent hash peer:(\d+), server:"([^"]*)"/.exec(log);
  if (key === null || step === null) throw new Error(`no hash lines in:\n${log}`);
  return { key: key[1] as string, point: Number(step[1]), server: step[2] as string };
}

/** The golden cases of every server list, from a real nginx. */
export async function goldenFromNginx(
  lists: readonly (readonly string[])[] = GOLDEN_SERVER_LISTS,
  addresses: readonly string[] = GOLDEN_ADDRESSES,
): Promise<GoldenCase[][]> {
  const prefix = await mkdtemp(join(tmpdir(), 'k8s-router-chash-golden-'));
  await chmod(prefix, 0o755);
  await mkdir(join(prefix, 'tmp'));
  const port = await pickFreeLoopbackPort();
  await writeFile(join(prefix, 'nginx.conf'), config(prefix, port, lists));
  const nginx = spawn(NGINX_BINARY, ['-p', prefix, '-c', join(prefix, 'nginx.conf'), '-e', join(prefix, 'error.log')], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  try {
    for (let i = 0; ; i++) {
      const probe = await sendRaw(port, { method: 'GET', target: '/none', headers: [['Host', 'x']] }, 1_000).catch(
        () => null,
      );
      if (probe?.kind === 'response') break;
      if (i > 100) throw new Error('nginx did not start');
      await new Promise((r) => setTimeout(r, 50));
    }
    const results: GoldenCase[][] = [];
    for (let u = 0; u < lists.length; u++) {
      const cases: GoldenCase[] = [];
      for (const sent of addresses) {
        const before = (await readFile(join(prefix, 'error.log'), 'utf8')).length;
        await sendRaw(
          port,
          {
            method: 'GET',
            target: `/u${u}`,
            headers: [
              ['Host', 'x'],
              ['X-Client-Address', sent],
            ],
          },
          5_000,
        );
        const log = (await readFile(join(prefix, 'error.log'), 'utf8')).slice(before);
        cases.push({ sent, ...firstStep(log) });
      }
      results.push(cases);
    }
    return results;
  } finally {
    nginx.kill('SIGTERM');
    await new Promise((r) => nginx.once('exit', r));
    await rm(prefix, { recursive: true, force: true });
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const golden = await goldenFromNginx();
  const lines = GOLDEN_SERVER_LISTS.map((servers, i) => {
    const cases = (golden[i] as GoldenCase[]).map(
      (c) => `      [${JSON.stringify(c.sent)}, ${JSON.stringify(c.key)}, ${c.point}, ${JSON.stringify(c.server)}],`,
    );
    return `  {\n    servers: ${JSON.stringify(servers)},\n    cases: [\n${cases.join('\n')}\n    ],\n  },`;
  });
  process.stdout.write(`${lines.join('\n')}\n`);
}
