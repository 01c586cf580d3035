// Long computations written as generators that yield now and then (every few hundred
// items) so that a caller on a busy event loop can pause them: the in-process proxy
// serves requests from the same loop the controller rebuilds tables on, and a 50,000-pod
// relist must not hold it for a second. A worker thread was measured and rejected: the
// structured clone of 10,000 pods or of their table costs the loop more (0.1 to 0.5 s,
// see bench/README.md) than the whole incremental build.

/** Work that yields at points where it may pause, and returns its result. */
export type Steps<T> = Generator<void, T, void>;

/** Runs `steps` to the end at once. */
export function runNow<T>(steps: Steps<T>): T {
  for (;;) {
    const next = steps.next();
    if (next.done) return next.value;
  }
}

export interface SlicedRun<T> {
  value: T;
  /** Time spent running the steps, pauses left out. */
  busyMs: number;
  /** How many times the event loop was let run in between. */
  pauses: number;
}

/**
 * Runs `steps` to the end, letting the event loop run (setImmediate: timers, I/O, requests)
 * whenever it has run for `sliceMs` since the last pause.
 */
export async function runInSlices<T>(steps: Steps<T>, sliceMs: number): Promise<SlicedRun<T>> {
  let busyMs = 0;
  let pauses = 0;
  let sliceStart = performance.now();
  for (;;) {
    const next = steps.next();
    const now = performance.now();
    if (next.done) return { value: next.value, busyMs: busyMs + now - sliceStart, pauses };
    if (now - sliceStart >= sliceMs) {
      busyMs += now - sliceStart;
      pauses++;
      await new Promise<void>((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
  }
}
