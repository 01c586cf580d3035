import { hostname } from 'node:os';
import type { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import type { RouterConfig } from '../core/config.js';
import { createEventSink, disabledEventSink, type EventSink } from './event-sink.js';
import { createEventWriter } from './event-writer.js';

// Which events sink a router gets: a live one with a cluster source, an idle one (that
// says why, once, in the log and in its stats) otherwise.

/**
 * POD_NAME (the downward API's metadata.name) when given. The host name otherwise: in a
 * pod without hostNetwork it is the pod name, but with hostNetwork (the edge DaemonSet)
 * it is the node's name, which is why the manifests set POD_NAME.
 */
export function reportingInstance(config: RouterConfig): string {
  return config.podName === 'auto' ? hostname() : config.podName;
}

/** The sink for a router; `kubeConfig` is null when the source is not a cluster. */
export function eventSinkFor(config: RouterConfig, kubeConfig: KubeConfig | null, logger: Logger): EventSink {
  const off = (reason: string): EventSink => {
    logger.info({ reason }, 'Kubernetes Events for rejected pods are off');
    return disabledEventSink(reason);
  };
  if (!config.events) return off('EVENTS=false');
  if (kubeConfig === null) return off('the source is a manifest file: there is no API server to write Events to');
  const instance = reportingInstance(config);
  logger.info(
    {
      reportingInstance: instance,
      qps: config.eventsQps,
      burst: config.eventsBurst,
      stateDelayMs: config.eventsStateDelayMs,
    },
    'rejected pods get a Kubernetes Event (Warning, RouteRejected)',
  );
  return createEventSink({
    write: createEventWriter(kubeConfig),
    reportingInstance: instance,
    qps: config.eventsQps,
    burst: config.eventsBurst,
    stateDelayMs: config.eventsStateDelayMs,
    logger: logger.child({ component: 'events' }),
  });
}
