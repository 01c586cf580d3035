import {
  EventsV1Api,
  Observable,
  type EventsV1Event,
  type KubeConfig,
  type ObservableMiddleware,
  type RequestContext,
} from '@kubernetes/client-node';
import { describeError, statusCodeOf } from '../sources/kube-client.js';
import type { RouteRejectedEvent } from './rejection-event.js';

// Creating one Event through @kubernetes/client-node's EventsV1Api, with the kubeconfig
// the source uses, a deadline, and the outcome sorted into the causes the sink acts on.

export type FailureCause =
  | 'forbidden' // 403: RBAC (or an admission webhook) refuses Events in this namespace
  | 'unauthorized' // 401: the credentials are not accepted
  | 'invalid' // 400/422: the API server refuses this Event; retrying would not help
  | 'namespace_gone' // 404: the namespace no longer exists
  | 'throttled' // 429
  | 'server_error' // 5xx
  | 'timeout' // no answer within the deadline
  | 'unreachable' // no connection
  | 'other';

export const FAILURE_CAUSES: readonly FailureCause[] = [
  'forbidden',
  'unauthorized',
  'invalid',
  'namespace_gone',
  'throttled',
  'server_error',
  'timeout',
  'unreachable',
  'other',
];

export type WriteOutcome =
  { ok: true; created: boolean } | { ok: false; cause: FailureCause; status?: number; message: string };

/** Writes an Event; resolves with the outcome, never rejects. */
export type EventWriter = (event: RouteRejectedEvent, signal: AbortSignal) => Promise<WriteOutcome>;

export function failureCause(status: number | undefined, timedOut: boolean): FailureCause {
  if (timedOut) return 'timeout';
  if (status === undefined) return 'unreachable';
  if (status === 403) return 'forbidden';
  if (status === 401) return 'unauthorized';
  if (status === 400 || status === 422) return 'invalid';
  if (status === 404) return 'namespace_gone';
  if (status === 429) return 'throttled';
  if (status >= 500) return 'server_error';
  return 'other';
}

/**
 * An EventWriter over the API server of `kubeConfig`. The body goes through the client's
 * serializer unchanged: `eventTime` is already MicroTime text, which the serializer
 * passes through (its own V1MicroTime class would do too, but a string keeps the Event
 * plain JSON from end to end).
 */
export function createEventWriter(kubeConfig: KubeConfig, timeoutMs = 10_000): EventWriter {
  const api = kubeConfig.makeApiClient(EventsV1Api);
  return async (event, signal) => {
    const deadline = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      deadline.abort();
    }, timeoutMs);
    const withSignal: ObservableMiddleware = {
      pre: (ctx: RequestContext) => {
        ctx.setSignal(AbortSignal.any([signal, deadline.signal]));
        return new Observable(Promise.resolve(ctx));
      },
      post: (rsp) => new Observable(Promise.resolve(rsp)),
    };
    try {
      await api.createNamespacedEvent(
        { namespace: event.metadata.namespace, body: event as unknown as EventsV1Event },
        { middleware: [withSignal], middlewareMergeStrategy: 'append' },
      );
      return { ok: true, created: true };
    } catch (err) {
      const status = statusCodeOf(err);
      if (status === 409) return { ok: true, created: false };
      const message = timedOut ? `no answer within ${timeoutMs} ms` : describeError(err);
      return { ok: false, cause: failureCause(status, timedOut), ...(status === undefined ? {} : { status }), message };
    } finally {
      clearTimeout(timer);
    }
  };
}
