import type { Duplex } from 'node:stream';
import { viewOf } from './object-view.js';

// The client's socket as http-proxy-3 sees it during one upgrade attempt.
//
// http-proxy-3's WebSocket pass assumes one pod: after an upstream error it ends the
// client socket (destroySoon), and it writes its own rendering of the pod's answer (a
// fixed "101 Switching Protocols" line with lower-cased headers, or a re-chunked copy of
// a refusal). nginx may try the next pod on that same connection, and passes the pod's
// status line and header lines as they came. So the router writes the answer's head
// itself and ends the client connection itself; through this view, http-proxy-3 still
// pipes the tunnel's bytes both ways.

export interface ClientSocketView {
  readonly socket: Duplex;
  /** The router wrote the 101 head: the head http-proxy-3 writes next is dropped. */
  headWritten(): void;
  /** The router answers the client itself: http-proxy-3 sees a closed socket and writes nothing. */
  handOver(): void;
}

export function clientSocketView(client: Duplex): ClientSocketView {
  let dropNextWrite = false;
  let handedOver = false;
  const dropWrite = (_chunk: unknown, encodingOrDone?: unknown, done?: unknown): boolean => {
    dropNextWrite = false;
    const callback = typeof encodingOrDone === 'function' ? encodingOrDone : done;
    if (typeof callback === 'function') process.nextTick(callback as () => void);
    return true;
  };
  const socket = viewOf(client, (key) => {
    if (key === 'destroySoon') return { value: () => {} };
    if (key === 'destroyed' && handedOver) return { value: true };
    if (key === 'write' && dropNextWrite) return { value: dropWrite };
    return undefined;
  });
  return {
    socket,
    headWritten: () => (dropNextWrite = true),
    handOver: () => (handedOver = true),
  };
}
