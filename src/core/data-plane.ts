import type { RouteTable } from './route-table.js';

/**
 * What the core asks of a backend (nginx or the in-process proxy). The core hands it
 * every new table; the backend serves the new table entirely or keeps the old one
 * entirely, and never reads Kubernetes objects itself.
 */
export interface DataPlane {
  /** Resolves once requests are served by `table`; rejects (and keeps the old table) when it cannot. */
  apply(table: RouteTable): Promise<void>;
  /** Stops listening and lets requests in flight finish or end. */
  close(): Promise<void>;
}

/** Which data plane: nginx, the in-process proxy, or nginx.conf printed without nginx (--print-nginx-config). */
export type DataPlaneKind = 'nginx' | 'proxy' | 'nginx-preview';
