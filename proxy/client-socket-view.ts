import type { Duplex } from 'node:stream';
import { viewOf } from './object-view.js';

// The client's socket as the proxy library sees it during one upgrade attempt.
//
// The libraries' WebSocket passes assume one pod: after an upstream error they end the
// client socket (end, destroySoon), and they write their own rendering of the pod's
// answer (a fixed "101 Switching Protocols" line with lower-cased headers, or a copy of
// a refusal). nginx may try the next pod on that same connection, and passes the pod's
// status line and header lines as they came. So the router writes the answer's head
// itself and ends the client connection itself; through this view, the library still
// pipes the tunnel's bytes both ways once it is open.

export interface ClientSocketView {
  readonly socket: Duplex;
  /** The router wrote the 101 head: the head the library writes next is dropped, and the tunnel is the library's. */
  headWritten(): void;
  /** The router answers the client itself: the library sees a closed socket, and what it writes is dropped. */
  handOver(): void;
}

export function clientSocketView(client: Duplex): ClientSocketView {
  let dropNextWrite = false;
  let tunnelOpen = false;
  let handedOver = false;
  const dropWrite = (_chunk: unknown, encodingOrDone?: unknown, done?: unknown): boolean => {
    dropNextWrite = false;
    const callback = typeof encodingOrDone === 'function' ? encodingOrDone : done;
    if (typeof callback === 'function') process.nextTick(callback as () => void);
    return true;
  };
  const ignore = (): void => {};
  const socket = viewOf(client, (key) => {
    if (key === 'destroySoon') return { value: ignore };
    if (key === 'end' && (!tunnelOpen || handedOver)) return { value: ignore };
    if (key === 'destroyed' && handedOver) return { value: true };
    if (key === 'write' && (dropNextWrite || handedOver)) return { value: dropWrite };
    return undefined;
  });
  return {
    socket,
    headWritten: () => {
      dropNextWrite = true;
      tunnelOpen = true;
    },
    handOver: () => (handedOver = true),
  };
}
