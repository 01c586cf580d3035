import type { RouteTable } from '../core/route-table.js';

// API keys never leave the router through the admin server. Each endpoint builds its
// answer from redacted data; as a second line of defence every answer passes through a
// scrubber that knows every key the router has held since it started (rotated keys too),
// since text from elsewhere (nginx's error output, say) may quote one.

export const REDACTED = '<redacted>';

/** The API-key checks of a rendered nginx.conf with their values replaced, whatever the keys were. */
export function redactNginxConf(conf: string): string {
  return conf.replace(/^(if \(\$http_[a-z0-9_]+ != )"(?:[^"\\]|\\.)*"(\) \{)$/gm, `$1"${REDACTED}"$2`);
}

export class SecretScrubber {
  private readonly keys = new Set<string>();

  /** Remembers the keys of a table the router holds. */
  learn(table: RouteTable): void {
    for (const route of table.routes) if (route.apiKey !== null && route.apiKey !== '') this.keys.add(route.apiKey);
  }

  scrub(text: string): string {
    let out = text;
    for (const key of this.keys) if (out.includes(key)) out = out.split(key).join(REDACTED);
    return out;
  }
}
