import type { RouteTable } from '../../src/core/route-table.js';
import type { ClientLimits } from '../../nginx/client-directives.js';
import type { ProxyDataPlane } from '../../proxy/server.js';
import type { ReceivedRequest } from '../support/pods.js';
import { startRawPod, type RawPod } from '../support/raw-pod.js';
import { converse, VANISH, type ConverseOptions, type Conversation, type Part } from './conversation.js';
import {
  startDynamic,
  startNginx,
  startProxyFor,
  tableOf,
  type Mode,
  type NginxPlaneUnderTest,
  type NginxUnderTest,
} from './harness.js';

// The edges of HTTP framing, documented nginx against dynamic nginx and the proxy: raw
// bytes on a connection of their own, compared by every answer's status line, whether the
// connection was closed, and what reached the pod. Cases run side by side, through
// documented nginx and the proxy at once, then through dynamic nginx (up to SLOTS cases,
// each on a host of its own for each data plane, so the pod's log tells which case and
// data plane a request came from); the pod reads bytes, not HTTP through Node, so
// it takes whatever nginx passes on. Most cases take milliseconds; one that leaves the
// connection open costs the conversation's wait (conversation.ts), once per batch.

export const SLOTS = 320;
/** A generated property's batch: SLOTS would make each run as slow as its slowest case of many. */
export const GENERATED_SLOTS = 12;
const RAW_POD_IP = '127.0.0.240';

export interface EdgeCase {
  name: string;
  /** The bytes to send (and pauses), for the case's own host. */
  bytes(host: string): Part[];
  /** How many requests the bytes hold (1 when absent). */
  requests?: number;
  /** Indexes of the answers that answer HEAD. */
  heads?: readonly number[];
  /** nginx's answer, pinned in the short form of `summary` (the proxy must give the same). */
  expect?: string;
  /**
   * An intended difference (each listed in the README with its reason): what each gives,
   * pinned in the short form of `summary`, so that a change on either side is noticed.
   */
  differs?: { nginx: string; proxy: string };
}

/** What reached the pod: the request as the pod read it, framing left out (each sender frames a body its own way). */
export type PodView = Omit<ReceivedRequest, 'pod' | 'remotePort'>;

export interface EdgeObservation {
  /** Status lines, e.g. "414 Request-URI Too Large". */
  answers: string[];
  closed: boolean;
  reached: PodView[];
  /** How many of the pod's answers the data plane cut off by closing the pod connection. */
  cut: number;
}

/**
 * The short form: statuses, open or closed, how many requests reached the pod (and answers cut); e.g. "200,505 closed
 * pod:1".
 */
export function summary(o: EdgeObservation): string {
  const statuses = o.answers.map((a) => a.split(' ')[0]).join(',') || '-';
  return `${statuses} ${o.closed ? 'closed' : 'open'} pod:${o.reached.length}${o.cut > 0 ? ` cut:${o.cut}` : ''}`;
}

/** After a client vanished, how long the data planes get to give up on the pod. */
const VANISH_SETTLE_MS = 1_000;

const FRAMING = new Set(['content-length', 'transfer-encoding']);

/** The pod's view of `r`, sent for `host`: written as HOST, the same for both data planes. */
function podView(r: ReceivedRequest, host: string): PodView {
  return {
    method: r.method,
    uri: r.uri,
    httpVersion: r.httpVersion,
    headers: r.headers
      .filter(([k]) => !FRAMING.has(k.toLowerCase()))
      .map(([k, v]): [string, string] => [k, k.toLowerCase() === 'host' && v === host ? 'HOST' : v])
      .sort(([a, va], [b, vb]) =>
        a.toLowerCase() < b.toLowerCase() ? -1 : a.toLowerCase() > b.toLowerCase() ? 1 : va < vb ? -1 : va > vb ? 1 : 0,
      ),
    body: r.body,
  };
}

type Side = 'n' | 'd' | 'p';

/** The host of a case's slot on one side: the same length on both, so that sizes compare. */
function hostOf(side: Side, slot: number): string {
  return `${side}${slot}.test`;
}

export interface EdgeResult {
  edge: EdgeCase;
  nginx: EdgeObservation;
  dynamic: EdgeObservation;
  proxy: EdgeObservation;
}

/**
 * Documented nginx (the product's data plane), dynamic nginx and the proxy, each on its
 * SLOTS hosts, each routed to one raw pod.
 */
export class EdgeBench {
  private constructor(
    private readonly pod: RawPod,
    private readonly nginx: NginxUnderTest,
    private readonly dynamic: NginxPlaneUnderTest,
    private readonly proxy: ProxyDataPlane,
  ) {}

  static async start(mode: Mode, clientLimits: ClientLimits = {}): Promise<EdgeBench> {
    const pod = await startRawPod('raw-0', RAW_POD_IP);
    const specs = (['n', 'd', 'p'] as const).flatMap((side) =>
      Array.from({ length: SLOTS }, (_, slot) => ({ host: hostOf(side, slot), path: '/', pods: [pod] })),
    );
    const table: RouteTable = tableOf(specs);
    const options = { upstreamKeepalive: mode.upstreamKeepalive, clientLimits };
    const nginx = await startNginx(table, options);
    const dynamic = await startDynamic(table, options).catch(async (err: unknown) => {
      await nginx.close();
      throw err;
    });
    const proxy = await startProxyFor(options);
    await proxy.apply(table);
    return new EdgeBench(pod, nginx, dynamic, proxy);
  }

  /**
   * Each case through nginx and through the proxy at once, `slots` cases at a time; with `inTurn`, one data plane
   * after another, for cases whose verdict depends on when a timer in this process fires (a keep-alive close 600 ms
   * after the answer) while the in-process proxy and pod move megabytes for the other plane.
   */
  async run(cases: readonly EdgeCase[], slots = SLOTS, inTurn = false): Promise<EdgeResult[]> {
    const results: EdgeResult[] = [];
    for (let i = 0; i < cases.length; i += slots) {
      const batch = cases.slice(i, i + slots);
      this.pod.received.length = 0;
      this.pod.cut.length = 0;
      // Documented nginx and the proxy at once, then dynamic nginx: three data planes at
      // once would be more connections than the raw pod and the proxy (in this process)
      // answer within a conversation's patience on a busy machine.
      const [nginx, proxy] = inTurn
        ? [await this.converse(this.nginx.port, 'n', batch), await this.converse(this.proxy.port, 'p', batch)]
        : await Promise.all([this.converse(this.nginx.port, 'n', batch), this.converse(this.proxy.port, 'p', batch)]);
      const dynamic = await this.converse(this.dynamic.port, 'd', batch);
      if (batch.some((edge) => edge.bytes('').includes(VANISH)))
        await new Promise((r) => setTimeout(r, VANISH_SETTLE_MS));
      const received = [...this.pod.received];
      const cut = [...this.pod.cut];
      const observe = (side: Side, conversations: Conversation[]): EdgeObservation[] =>
        conversations.map((c, slot) => {
          const host = hostOf(side, slot);
          return {
            answers: c.answers.map((a) => `${a.status} ${a.reason}`),
            closed: c.closed,
            reached: received
              .filter((r) => r.headers.some(([k, v]) => k.toLowerCase() === 'host' && v === host))
              .map((r) => podView(r, host)),
            cut: cut.filter((h) => h === host).length,
          };
        });
      const n = observe('n', nginx);
      const d = observe('d', dynamic);
      const p = observe('p', proxy);
      batch.forEach((edge, k) => {
        const at = (list: EdgeObservation[]): EdgeObservation => list[k] as EdgeObservation;
        results.push({ edge, nginx: at(n), dynamic: at(d), proxy: at(p) });
      });
    }
    return results;
  }

  private converse(port: number, side: Side, batch: readonly EdgeCase[]): Promise<Conversation[]> {
    return Promise.all(
      batch.map((edge, slot) => {
        const options: ConverseOptions = { requests: edge.requests ?? 1, ...(edge.heads ? { heads: edge.heads } : {}) };
        return converse(port, edge.bytes(hostOf(side, slot)), options);
      }),
    );
  }

  async close(): Promise<void> {
    await Promise.all([this.nginx.close(), this.dynamic.close(), this.proxy.close()]);
    await this.pod.close();
  }
}

/**
 * Every way `results` break their cases' rules (agreement, pinned answers), one message
 * each. Dynamic nginx must answer as documented nginx in every case, intended differences
 * of the proxy included: both are nginx, parsing alike.
 */
export function problems(results: readonly EdgeResult[]): string[] {
  const out: string[] = [];
  for (const { edge, nginx, dynamic, proxy } of results) {
    const both = `\n  nginx: ${JSON.stringify(nginx)}\n  proxy: ${JSON.stringify(proxy)}`;
    if (JSON.stringify(dynamic) !== JSON.stringify(nginx)) {
      const seen = `\n  nginx: ${JSON.stringify(nginx)}\n  dynamic: ${JSON.stringify(dynamic)}`;
      out.push(`${edge.name}: dynamic nginx differs from documented nginx${seen}`);
    }
    if (edge.differs !== undefined) {
      if (summary(nginx) !== edge.differs.nginx || summary(proxy) !== edge.differs.proxy) {
        out.push(
          `${edge.name}: intended difference changed: ` +
            `expected nginx "${edge.differs.nginx}" and proxy "${edge.differs.proxy}", ` +
            `got "${summary(nginx)}" and "${summary(proxy)}"${both}`,
        );
      }
      continue;
    }
    if (JSON.stringify(proxy) !== JSON.stringify(nginx)) out.push(`${edge.name}: the proxy differs from nginx${both}`);
    else if (edge.expect !== undefined && summary(nginx) !== edge.expect)
      out.push(`${edge.name}: nginx gave "${summary(nginx)}", expected "${edge.expect}"${both}`);
  }
  return out;
}
