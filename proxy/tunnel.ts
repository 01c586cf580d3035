import type { ClientRequest, IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import type { PodEndpoint } from '../src/core/route-table.js';
import { rawErrorResponse } from './error-page.js';
import type { PeerSelection } from './balancer.js';
import { failureStatus, type Failure, type ForwardTarget } from './forward.js';
import { clientResponseHeaders } from './headers.js';
import type { PodProxy } from './http-proxy.js';
import type { ProxyLogger } from './logger.js';
import type { ProxyCounters } from './stats.js';
import { UnsendableHead, type UpstreamRequest } from './upstream-head.js';

// Upgrade requests (WebSocket): the same peer choice and retries as any request, then,
// once the pod switches protocols, bytes copied both ways until either side closes or
// stays idle for the upstream timeout (nginx's proxy_read_timeout applies to tunnels too).
// The request goes through the proxy library, which also pipes the tunnel (http-proxy.ts).

export interface TunnelSettings {
  pods: PodProxy;
  timeoutMs: number;
  logger: ProxyLogger;
  stats: ProxyCounters;
  /** Lets the server close tunnels still open when it stops. */
  track(sockets: Duplex[]): void;
}

function statusLine(res: IncomingMessage): string {
  return `HTTP/1.1 ${res.statusCode ?? 502} ${res.statusMessage ?? ''}\r\n`;
}

function headerLines(flat: readonly string[]): string {
  let text = '';
  for (let i = 0; i + 1 < flat.length; i += 2) text += `${flat[i]}: ${flat[i + 1]}\r\n`;
  return text;
}

/** The 101's own headers (Upgrade, Connection, Sec-WebSocket-*) are the handshake; keep them. */
function switchingHeaders(raw: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name === 'date' || name === 'server' || name.startsWith('x-accel-')) continue;
    out.push(raw[i] as string, raw[i + 1] as string);
  }
  return out;
}

/** Hands the client the pod's switch of protocols and joins the two sockets into a tunnel. */
function openTunnel(client: Duplex, pres: IncomingMessage, upstream: Duplex, settings: TunnelSettings): void {
  settings.stats.answered(pres.statusCode ?? 101);
  settings.track([client, upstream]);
  upstream.on('error', () => client.destroy());
  upstream.on('close', () => client.destroy());
  client.on('close', () => upstream.destroy());
  client.write(`${statusLine(pres)}${headerLines(switchingHeaders(pres.rawHeaders))}\r\n`);
}

/**
 * The pod did not switch protocols: pass its answer on and close, as the client cannot reuse a connection it asked
 * to upgrade.
 */
function passOnAnswer(client: Duplex, pres: IncomingMessage, settings: TunnelSettings): void {
  settings.stats.answered(pres.statusCode ?? 502);
  const kept = clientResponseHeaders(pres.rawHeaders);
  client.write(`${statusLine(pres)}${headerLines(kept)}Connection: close\r\n\r\n`);
  pres.on('error', () => client.destroy());
  pres.on('close', () => {
    if (!pres.complete) client.destroy();
  });
  pres.pipe(client);
}

/** One upgrade request on its way to a pod: the pods of its group tried in turn until one answers. */
class UpgradeForwarding {
  private current: ClientRequest | null = null;
  private finished = false;
  // The bytes that came with the request go back into the client socket on the first
  // try and stay there, unread, until a pod switches protocols.
  private unsentHead: Buffer;

  constructor(
    private readonly client: Duplex,
    head: Buffer,
    private readonly request: UpstreamRequest,
    private readonly selection: PeerSelection,
    private readonly settings: TunnelSettings,
  ) {
    this.unsentHead = head;
    const clientGone = (): void => {
      this.finished = true;
      this.current?.destroy();
    };
    client.on('error', clientGone);
    client.on('close', clientGone);
  }

  private giveUp(failure: Failure): void {
    this.finished = true;
    if (this.client.destroyed) return;
    const status = failureStatus(failure);
    this.settings.stats.answered(status);
    this.client.end(rawErrorResponse(status));
  }

  tryNext(): void {
    if (this.finished) return;
    const peer = this.selection.next();
    if (peer === null) this.giveUp('error');
    else {
      this.attempt(peer.index, peer.backend, this.unsentHead);
      this.unsentHead = Buffer.alloc(0);
    }
  }

  private attempt(index: number, pod: PodEndpoint, firstBytes: Buffer): void {
    const { client, settings, selection } = this;
    let connected = false;
    let answered = false;
    let over = false;

    const release = settings.pods.ws(
      pod,
      {
        request: this.request,
        onRequest: (preq) => {
          this.current = preq;
          preq.on('socket', (socket: Socket) => {
            if (!socket.connecting) connected = true;
            else socket.once('connect', () => (connected = true));
          });
          preq.setTimeout(settings.timeoutMs, () =>
            preq.destroy(Object.assign(new Error('upstream timed out'), { timedOut: true })),
          );
        },

        onUpgrade: (pres, upstream) => {
          answered = true;
          selection.succeeded(index);
          if (this.finished || client.destroyed) upstream.destroy();
          else openTunnel(client, pres, upstream, settings);
        },

        onTunnelOpen(upstream) {
          if (upstream.destroyed) return;
          // nginx's proxy_read_timeout applies to an idle tunnel.
          upstream.setTimeout(settings.timeoutMs, () => {
            upstream.destroy();
            client.destroy();
          });
        },

        onResponse: (pres) => {
          answered = true;
          selection.succeeded(index);
          if (this.finished || client.destroyed) pres.destroy();
          else passOnAnswer(client, pres, settings);
        },

        onError: (err) => {
          if (answered || this.finished || over) return;
          over = true;
          release();
          if (err instanceof UnsendableHead) {
            // The client's request, not the pod, is at fault: no other pod would take it either.
            settings.logger.warn({ code: err.code, reason: err.message }, 'request cannot be sent upstream');
            this.giveUp('error');
            return;
          }
          settings.stats.upstreamFailed();
          const failure: Failure = (err as { timedOut?: boolean }).timedOut === true ? 'timeout' : 'error';
          settings.logger.warn(
            { pod: pod.pod, ip: pod.ip, port: pod.port, failure, code: err.code },
            'upstream failed (upgrade)',
          );
          if (selection.failed(index, this.request.method, connected) === 'stop') this.giveUp(failure);
          else this.tryNext();
        },
      },
      client,
      firstBytes,
    );
  }
}

/** `request` has no body: what follows an upgrade request is the tunnel's, not a body to frame. */
export function forwardUpgrade(
  req: IncomingMessage,
  client: Duplex,
  head: Buffer,
  target: ForwardTarget,
  request: UpstreamRequest,
  settings: TunnelSettings,
): void {
  const { group } = target;
  const selection = group.begin(group.hashesClients ? req.socket.remoteAddress : undefined);
  new UpgradeForwarding(client, head, request, selection, settings).tryNext();
}
