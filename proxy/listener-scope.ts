import type { EventEmitter } from 'node:events';

// A proxy library adds listeners to the client's socket on every upgrade call (error
// listeners, in http-proxy and http-proxy-3 alike). An upgrade that tries several pods
// would pile them up; this lets a failed attempt take its own back.

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
