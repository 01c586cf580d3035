// A stand-in for an object that the proxy library reads from or writes to: the same
// object except for the few properties the router needs to answer differently (the
// client socket of an upgrade, see client-socket-view.ts).

/** What a view answers for `key`, or undefined to let the target answer. */
export type Override = (key: PropertyKey) => { value: unknown } | undefined;

/**
 * `target` seen through `override`. The target's own methods run with the target as
 * `this`: a listener added through the view lands on the target, and the target's
 * internal state (an EventEmitter's listener count, a stream's buffers) stays whole.
 */
export function viewOf<T extends object>(target: T, override: Override): T {
  return new Proxy(target, {
    get(object, key) {
      const replaced = override(key);
      if (replaced !== undefined) return replaced.value;
      const value: unknown = Reflect.get(object, key, object);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(object) : value;
    },
  });
}
