import type { Controller } from '../control/controller.js';
import type { EventSink } from '../events/event-sink.js';
import type { ResolvedBackend, RouterConfig } from '../core/config.js';
import type { KubeSourceStatus } from '../sources/kube-source.js';
import type { ObjectSource } from '../sources/source.js';
import type { TrackedPlane } from './apply-tracker.js';

// What the admin server reads: the router's parts, as `run` wired them. The admin server
// only reads; it never changes what the router does.

export interface AdminView {
  config: RouterConfig;
  backend: ResolvedBackend;
  /** The port the data plane listens on. */
  port: number;
  controller: Pick<Controller, 'stats' | 'latest' | 'currentTable' | 'subscribe'>;
  source: ObjectSource;
  /** The manifest file followed, or null when the source is the cluster. */
  manifest: string | null;
  planes: readonly TrackedPlane[];
  /** The Kubernetes Events sink (its stats say when and why it is off). */
  events?: Pick<EventSink, 'stats'>;
}

export type SourceState =
  { kind: 'manifest'; file: string; ok: boolean; lastError: string | null } | ({ kind: 'cluster' } & KubeSourceStatus);

/** The source's own report: the manifest's last read problem, or the watches' status. */
export function sourceState(view: Pick<AdminView, 'source' | 'manifest'>): SourceState {
  const source = view.source as ObjectSource & { status?: () => KubeSourceStatus; lastError?: () => string | null };
  if (view.manifest === null && typeof source.status === 'function') return { kind: 'cluster', ...source.status() };
  const lastError = typeof source.lastError === 'function' ? source.lastError() : null;
  return { kind: 'manifest', file: view.manifest ?? '', ok: lastError === null, lastError };
}
