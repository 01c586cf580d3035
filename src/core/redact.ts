import type { RouteTable } from './route-table.js';

// API keys leave the router only in the nginx.conf that nginx reads: never in logs,
// command output, Events or admin answers. What is shown is built from redacted data
// (redactTable, redactNginxConf); text from elsewhere that may quote a key (nginx's
// error output, say) has the keys it could hold replaced (redactKeys), and the admin
// server passes every answer through a scrubber that knows every key the router has held
// since it started, rotated ones too.

export const REDACTED = '<redacted>';

/** The keys of a table's locked routes. */
function* keysOf(table: RouteTable): Iterable<string> {
  for (const route of table.routes) if (route.apiKey !== null && route.apiKey !== '') yield route.apiKey;
}

/** `text` with every one of `keys` replaced. */
function withoutKeys(text: string, keys: Iterable<string>): string {
  let out = text;
  for (const key of keys) if (out.includes(key)) out = out.split(key).join(REDACTED);
  return out;
}

/** The table with its API keys replaced, for logs, the CLI and admin output. */
export function redactTable(table: RouteTable): RouteTable {
  return {
    routes: table.routes.map((r) => ({ ...r, apiKey: r.apiKey === null ? null : REDACTED })),
    rejections: table.rejections,
  };
}

/** Text that may quote `table`'s config (a data plane's refusal) with the table's keys replaced. */
export function redactKeys(text: string, table: RouteTable): string {
  return withoutKeys(text, keysOf(table));
}

/** The API-key checks of a rendered nginx.conf with their values replaced, whatever the keys were. */
export function redactNginxConf(conf: string): string {
  return conf.replace(/^(if \(\$http_[a-z0-9_]+ != )"(?:[^"\\]|\\.)*"(\) \{)$/gm, `$1"${REDACTED}"$2`);
}

/** Replaces, in any text, every key of every table it was shown. */
export class SecretScrubber {
  private readonly keys = new Set<string>();

  /** Remembers the keys of a table the router holds. */
  learn(table: RouteTable): void {
    for (const key of keysOf(table)) this.keys.add(key);
  }

  scrub(text: string): string {
    return withoutKeys(text, this.keys);
  }
}
