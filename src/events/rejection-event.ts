import { createHash } from 'node:crypto';
import type { Pod } from '../core/kube-objects.js';
import { objectKey } from '../core/kube-objects.js';
import type { Rejection, RejectionCode, RouteTable } from '../core/route-table.js';

// What a tenant sees of a rejection: an events.k8s.io/v1 Event on the pod, built here as
// plain JSON from the route table's rejections. Pure: the sink decides when to write.

export const REPORTING_CONTROLLER = 'k8s-router';
export const EVENT_REASON = 'RouteRejected';
export const EVENT_ACTION = 'Route';

// Limits the API server enforces on events.k8s.io/v1 Events (the Go validation measures
// bytes), and on object names (DNS subdomains).
const NOTE_MAX_BYTES = 1024;
const INSTANCE_MAX_BYTES = 128;
const NAME_MAX = 253;
const DIGEST_HEX = 16;

/**
 * Never reported: NOT_SELECTED (the pod is not this router's business; the API server
 * does not even send such pods) and TERMINATING (its owner is deleting it: nothing to fix).
 */
const NOT_REPORTED: ReadonlySet<RejectionCode> = new Set<RejectionCode>(['NOT_SELECTED', 'TERMINATING']);

/**
 * A pod's passing state: every pod goes through it when it starts, so these are reported
 * only once they have lasted (EVENTS_STATE_DELAY_MS), or every rollout would leave Warnings.
 */
export const POD_STATE_CODES: ReadonlySet<RejectionCode> = new Set<RejectionCode>([
  'NOT_RUNNING',
  'NOT_READY',
  'NO_IP',
]);

/** A rejection worth an Event, with the pod's uid. */
export interface RejectionReport {
  /** The Event's name, deterministic in (pod uid, code, field, value): also the report's identity. */
  name: string;
  /** (pod uid, code, field, value) as one string: what the name is derived from. */
  identity: string;
  uid: string;
  rejection: Rejection;
}

export interface RouteRejectedEvent {
  apiVersion: 'events.k8s.io/v1';
  kind: 'Event';
  metadata: { name: string; namespace: string };
  /** MicroTime: RFC 3339 with exactly six fractional digits, as the API server parses it. */
  eventTime: string;
  reportingController: string;
  reportingInstance: string;
  action: string;
  reason: string;
  type: 'Warning';
  regarding: { apiVersion: 'v1'; kind: 'Pod'; namespace: string; name: string; uid: string };
  note: string;
}

/**
 * The Event name for a rejection: the pod name made safe (a hand-written name may not be
 * a valid one) and a digest of (uid, code, field, value). Every router that sees the same
 * rejection of the same pod computes the same name, so the API server keeps one Event and
 * answers 409 AlreadyExists to the others (two routers in one pod, or on every node).
 */
export function eventName(podName: string, uid: string, rejection: Rejection): string {
  const digest = createHash('sha256').update(identityOf(uid, rejection)).digest('hex').slice(0, DIGEST_HEX);
  const prefix = podName
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-')
    .slice(0, NAME_MAX - DIGEST_HEX - 1)
    .replace(/^-+|-+$/g, '');
  return `${prefix === '' ? 'pod' : prefix}.${digest}`;
}

function identityOf(uid: string, rejection: Rejection): string {
  return [uid, rejection.code, rejection.field, rejection.value].join('\0');
}

/**
 * The rejections of a table that deserve an Event, each with its pod's uid. `known` maps
 * identities to the names computed for an earlier table: a digest per rejection on every
 * table would cost tens of milliseconds for 10,000 rejections.
 */
export function reportableRejections(
  table: RouteTable,
  pods: readonly Pod[],
  known: ReadonlyMap<string, string> = new Map(),
): RejectionReport[] {
  const uids = new Map<string, string>();
  for (const pod of pods) {
    const uid = pod.metadata?.uid;
    if (uid) uids.set(objectKey(pod), uid);
  }
  // A pod with neither of this router's annotations addresses another router that shares
  // the label (the seed's public/private pair): its missing annotations are not news.
  const missing = new Map<string, number>();
  for (const r of table.rejections) {
    if (r.code === 'MISSING_ANNOTATION')
      missing.set(`${r.namespace}/${r.pod}`, (missing.get(`${r.namespace}/${r.pod}`) ?? 0) + 1);
  }
  const reports: RejectionReport[] = [];
  for (const rejection of table.rejections) {
    if (NOT_REPORTED.has(rejection.code)) continue;
    const key = `${rejection.namespace}/${rejection.pod}`;
    if (rejection.code === 'MISSING_ANNOTATION' && (missing.get(key) ?? 0) > 1) continue;
    // Without a uid (a manifest object) there is no pod in an API server to attach it to.
    const uid = uids.get(key);
    if (uid === undefined) continue;
    const identity = identityOf(uid, rejection);
    reports.push({ name: known.get(identity) ?? eventName(rejection.pod, uid, rejection), identity, uid, rejection });
  }
  return reports;
}

/** A time in the API server's MicroTime format (JavaScript has milliseconds: three zeros follow). */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

/** Cuts text to at most `maxBytes` of UTF-8, on a character boundary, marking the cut. */
function truncateBytes(text: string, maxBytes: number): string {
  if (Buffer.byteLength(text, 'utf8') <= maxBytes) return text;
  let out = '';
  let bytes = 0;
  for (const ch of text) {
    const size = Buffer.byteLength(ch, 'utf8');
    if (bytes + size > maxBytes - 3) break;
    out += ch;
    bytes += size;
  }
  return `${out}...`;
}

/** `CODE: VALUE: REASON`, as a tenant reads it in `kubectl describe pod`. */
export function eventNote(rejection: Rejection): string {
  const text =
    rejection.value === ''
      ? `${rejection.code}: ${rejection.reason}`
      : `${rejection.code}: ${rejection.value}: ${rejection.reason}`;
  return truncateBytes(text, NOTE_MAX_BYTES);
}

/** The Event for a report, first observed at `observedAt` (ms since the epoch). */
export function rejectionEvent(
  report: Pick<RejectionReport, 'name' | 'uid' | 'rejection'>,
  reportingInstance: string,
  observedAt: number,
): RouteRejectedEvent {
  const { rejection } = report;
  return {
    apiVersion: 'events.k8s.io/v1',
    kind: 'Event',
    metadata: { name: report.name, namespace: rejection.namespace },
    eventTime: microTime(observedAt),
    reportingController: REPORTING_CONTROLLER,
    reportingInstance: truncateBytes(reportingInstance, INSTANCE_MAX_BYTES),
    action: EVENT_ACTION,
    reason: EVENT_REASON,
    type: 'Warning',
    regarding: { apiVersion: 'v1', kind: 'Pod', namespace: rejection.namespace, name: rejection.pod, uid: report.uid },
    note: eventNote(rejection),
  };
}
