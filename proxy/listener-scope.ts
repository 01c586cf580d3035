import type { EventEmitter } from 'node:events';

// http-proxy-3 adds listeners to the client's objects on every call (an abort listener
// on the response, an error listener on the request or socket). A request that tries
// several pods would pile them up; these helpers let a failed attempt take its own back.

type Listener = (...args: unknown[]) => void;

/** Runs `run` and returns a function that removes the listeners it added for `events` on `emitter`. */
export function listenersAddedBy(emitter: EventEmitter, events: readonly string[], run: () => void): () => void {
  const before = new Map(events.map((event) => [event, new Set(emitter.rawListeners(event))]));
  run();
  const added: [string, Listener][] = [];
  for (const event of events) {
    const existing = before.get(event) as Set<unknown>;
    for (const listener of emitter.rawListeners(event)) {
      if (!existing.has(listener)) added.push([event, listener as Listener]);
    }
  }
  return () => {
    for (const [event, listener] of added) emitter.removeListener(event, listener);
  };
}
