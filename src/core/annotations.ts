// Parsing of the hosts and paths annotations. Anyone who can create a pod writes these
// values, and they end up in nginx.conf, so the grammar is deliberately narrow: whatever
// is accepted here is plain text to nginx (see nginx/syntax.ts for the second line of
// defence).

export interface RejectedEntry {
  value: string;
  code: string;
  reason: string;
}

export interface PathEntry {
  port: number;
  path: string;
}

export const MAX_PATH_LENGTH = 1024;

const HOST_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/;
const IPV4_OCTET = /^(0|[1-9][0-9]{0,2})$/;

const WHITESPACE = /\s/;

/** Whether a char code is whitespace as /\s/ has it (ASCII ones without a regex). */
function isSpace(code: number): boolean {
  if (code === 32 || (code >= 9 && code <= 13)) return true;
  return code >= 0xa0 && WHITESPACE.test(String.fromCharCode(code));
}

/** Entries of an annotation value: split on any whitespace (as /\s+/), empty ones ignored. */
export function splitEntries(value: string): string[] {
  // A loop rather than split(/\s+/) and a filter: this runs for every pod of a cluster.
  if (typeof value !== 'string') throw new TypeError(`an annotation value is not text: ${JSON.stringify(value)}`);
  const entries: string[] = [];
  let start = -1;
  for (let i = 0; i < value.length; i++) {
    if (isSpace(value.charCodeAt(i))) {
      if (start >= 0) entries.push(value.slice(start, i));
      start = -1;
    } else if (start < 0) {
      start = i;
    }
  }
  if (start >= 0) entries.push(start === 0 ? value : value.slice(start));
  return entries;
}

function ipv4Problem(host: string): string | null {
  const parts = host.split('.');
  if (parts.length !== 4) return 'is neither a DNS hostname nor an IPv4 address (numeric last label)';
  for (const p of parts) {
    if (!IPV4_OCTET.test(p) || Number(p) > 255)
      return 'is not a valid IPv4 address (octets are 0 to 255, no leading zeros)';
  }
  return null;
}

/**
 * Hostnames that need no closer look: RFC 1123 labels, the last of which is not all
 * digits. One regex rather than a split and a test per label, for the common case; any
 * other host gets the label by label check, which says what is wrong.
 */
const PLAIN_HOST = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*(?=[0-9]*[a-z-])[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/** Why a (lower-cased) host is unusable, or null when it is an RFC 1123 hostname or IPv4 address. */
export function hostProblem(host: string): string | null {
  if (host.length <= 253 && PLAIN_HOST.test(host)) return null;
  if (host.length > 253) return 'is longer than 253 characters';
  const labels = host.split('.');
  const last = labels[labels.length - 1] ?? '';
  if (/^[0-9]+$/.test(last)) return ipv4Problem(host);
  for (const label of labels) {
    if (label.length === 0) return 'has an empty label (leading, trailing or doubled ".")';
    if (label.length > 63) return `has a label longer than 63 characters`;
    if (!HOST_LABEL.test(label)) {
      return 'is not a DNS hostname: labels are letters, digits and "-", and do not start or end with "-"';
    }
  }
  return null;
}

/** Hosts from the hosts annotation: lower-cased, de-duplicated, in first-seen order. */
export function parseHosts(value: string): { hosts: string[]; rejected: RejectedEntry[] } {
  const hosts: string[] = [];
  // Only for long lists: a pod names a host or two, where a Set costs more than a look.
  let seen: Set<string> | null = null;
  const rejected: RejectedEntry[] = [];
  for (const entry of splitEntries(value)) {
    const host = entry.toLowerCase();
    const problem = hostProblem(host);
    if (problem !== null) {
      rejected.push({ value: entry, code: 'BAD_HOST', reason: `host ${JSON.stringify(entry)} ${problem}` });
    } else if (seen !== null) {
      if (!seen.has(host)) {
        seen.add(host);
        hosts.push(host);
      }
    } else if (!hosts.includes(host)) {
      hosts.push(host);
      if (hosts.length > 8) seen = new Set(hosts);
    }
  }
  return { hosts, rejected };
}

// RFC 3986 path characters without the ones that mean something to nginx or to us:
// "%" (requests are matched on their percent-decoded URI, so an encoded path could never
// match), ";" "$" "'" and the sub-delims nginx would read as syntax are refused; so are
// "{", "}", quotes, "\", controls and non-ASCII, which RFC 3986 does not allow anyway.
const PATH_CHARS = /^[A-Za-z0-9\-._~!&()*+,=:@/]+$/;
const PORT = /^[1-9][0-9]{0,4}$/;
/** A "." or ".." segment. */
const DOT_SEGMENT = /\/\.\.?(?:\/|$)/;

/** Why a path is unusable, or null. */
export function pathProblem(path: string): string | null {
  if (!path.startsWith('/')) return 'does not start with "/"';
  if (path.length > MAX_PATH_LENGTH) return `is longer than ${MAX_PATH_LENGTH} characters`;
  if (!PATH_CHARS.test(path)) {
    const bad = [...path].find((c) => !PATH_CHARS.test(c)) ?? '';
    const shown = /^[\x21-\x7e]$/.test(bad)
      ? `"${bad}"`
      : `U+${(bad.codePointAt(0) ?? 0).toString(16).toUpperCase().padStart(4, '0')}`;
    return `contains ${shown}: only letters, digits and - . _ ~ ! & ( ) * + , = : @ / are allowed`;
  }
  // nginx merges slashes and resolves dot segments before it matches a location, so a
  // location holding them could never match a request.
  if (path.includes('//')) return 'contains "//", which never matches (nginx merges slashes)';
  if (DOT_SEGMENT.test(path)) {
    return 'contains a "." or ".." segment, which never matches (nginx resolves them)';
  }
  return null;
}

function firstWithPath(paths: readonly PathEntry[], path: string): PathEntry | undefined {
  for (const entry of paths) if (entry.path === path) return entry;
  return undefined;
}

/**
 * PORT:PATH entries from the paths annotation. Where the pod declares container ports, a
 * port must be one of them (a typo guard); a pod that declares none may name any port,
 * since Kubernetes treats containerPort as informational and many real pods declare none.
 * The same path twice keeps the first entry; a later one for another port is rejected,
 * since one route goes to one port of a pod.
 */
export function parsePaths(
  value: string,
  declaredPorts: ReadonlySet<number>,
): { paths: PathEntry[]; rejected: RejectedEntry[] } {
  const paths: PathEntry[] = [];
  // Only for long lists, as in parseHosts.
  let byPath: Map<string, PathEntry> | null = null;
  const rejected: RejectedEntry[] = [];
  for (const entry of splitEntries(value)) {
    const colon = entry.indexOf(':');
    if (colon < 0) {
      rejected.push({ value: entry, code: 'BAD_PATH', reason: `entry ${JSON.stringify(entry)} is not PORT:PATH` });
      continue;
    }
    const portText = entry.slice(0, colon);
    const path = entry.slice(colon + 1);
    if (!PORT.test(portText) || Number(portText) > 65535) {
      rejected.push({
        value: entry,
        code: 'BAD_PORT',
        reason: `port ${JSON.stringify(portText)} is not a number from 1 to 65535`,
      });
      continue;
    }
    const port = Number(portText);
    if (declaredPorts.size > 0 && !declaredPorts.has(port)) {
      rejected.push({
        value: entry,
        code: 'PORT_NOT_DECLARED',
        reason: `port ${port} is not a containerPort of the pod`,
      });
      continue;
    }
    const problem = pathProblem(path);
    if (problem !== null) {
      rejected.push({ value: entry, code: 'BAD_PATH', reason: `path ${JSON.stringify(path)} ${problem}` });
      continue;
    }
    const earlier = byPath !== null ? byPath.get(path) : firstWithPath(paths, path);
    if (earlier === undefined) {
      const entry = { port, path };
      paths.push(entry);
      if (byPath !== null) byPath.set(path, entry);
      else if (paths.length > 8) byPath = new Map(paths.map((p) => [p.path, p]));
    } else if (earlier.port !== port) {
      rejected.push({
        value: entry,
        code: 'DUPLICATE_PATH',
        reason: `path ${JSON.stringify(path)} is already routed to port ${earlier.port} of this pod`,
      });
    }
  }
  return { paths, rejected };
}

/** How a route spreads its clients over its pods: round robin (null), or by client address. */
export type Affinity = 'ip';

/**
 * The affinity annotation: empty (or only whitespace) asks for nothing, "ip" keeps each
 * client address on one pod. Any other text is refused whole; it never reaches nginx.conf.
 */
export function parseAffinity(value: string): { affinity: Affinity | null; rejected: RejectedEntry | null } {
  const entries = splitEntries(value);
  if (entries.length === 0) return { affinity: null, rejected: null };
  if (entries.length === 1 && entries[0] === 'ip') return { affinity: 'ip', rejected: null };
  return {
    affinity: null,
    rejected: {
      value,
      code: 'BAD_AFFINITY',
      reason:
        `affinity ${JSON.stringify(value)} is not understood: "ip" keeps each client address on one pod, ` +
        'empty asks for none; the pod is routed as if it asked for none',
    },
  };
}
