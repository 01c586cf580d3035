import type { Pod, Secret } from '../core/kube-objects.js';

/**
 * Where Pods and Secrets come from: the Kubernetes watch or a manifest file. A source
 * keeps the complete current set; the core only ever reads whole snapshots, so sources
 * are interchangeable and a missed event cannot leave a stale route behind.
 */
export interface ObjectSource {
  /**
   * Loads the initial objects, then keeps them current. `onChange` is called after every
   * change (possibly many times in a burst: the controller coalesces). Resolves once the
   * initial objects are loaded; rejects only if they cannot be loaded at all.
   */
  start(onChange: () => void): Promise<void>;
  /** The objects as they are now. */
  snapshot(): { pods: Pod[]; secrets: Secret[] };
  /** Stops watching; no onChange call follows. */
  stop(): Promise<void>;
}
