// The client timeouts and limits the settings may change (CLIENT_HEADER_TIMEOUT_MS, ...),
// as http-level directives. Each is written only when it differs from nginx's default,
// so at the defaults the config is the documented one, byte for byte.

/** Times in milliseconds, sizes in bytes (client_max_body_size 0: no limit, as in nginx). */
export interface ClientLimits {
  clientHeaderTimeoutMs?: number;
  clientBodyTimeoutMs?: number;
  keepaliveTimeoutMs?: number;
  keepaliveRequests?: number;
  clientMaxBodySize?: number;
}

const nginxTime = (ms: number): string => (ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);
const plain = (n: number): string => String(n);

/** Each limit: its directive, nginx's own default, and how nginx writes the value. */
const CLIENT_DIRECTIVES: readonly {
  key: keyof ClientLimits;
  directive: string;
  nginxDefault: number;
  write: (n: number) => string;
}[] = [
  { key: 'clientHeaderTimeoutMs', directive: 'client_header_timeout', nginxDefault: 60_000, write: nginxTime },
  { key: 'clientBodyTimeoutMs', directive: 'client_body_timeout', nginxDefault: 60_000, write: nginxTime },
  { key: 'keepaliveTimeoutMs', directive: 'keepalive_timeout', nginxDefault: 75_000, write: nginxTime },
  { key: 'keepaliveRequests', directive: 'keepalive_requests', nginxDefault: 1000, write: plain },
  { key: 'clientMaxBodySize', directive: 'client_max_body_size', nginxDefault: 1024 * 1024, write: plain },
];

/** The directives of the limits that differ from nginx's defaults, with a comment; none at the defaults. */
export function clientDirectives(limits: ClientLimits): string[] {
  const lines: string[] = [];
  for (const { key, directive, nginxDefault: byDefault, write } of CLIENT_DIRECTIVES) {
    const value = limits[key];
    if (value === undefined || value === byDefault) continue;
    if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`${key} ${value} is not a whole number`);
    lines.push(`${directive} ${write(value)};`);
  }
  return lines.length === 0 ? [] : ['# Client timeouts and limits set to other values than nginx defaults', ...lines];
}
