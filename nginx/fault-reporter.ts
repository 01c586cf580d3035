import type { Logger } from 'pino';
import type { NginxFault } from './error-log.js';

// nginx's faults (its error log at crit and worse) reach the router's log one line each,
// but a failing nginx can write thousands a second: past a number per interval they are
// only counted, and the count is logged in one line when the next interval starts. All
// are counted in the metrics whatever is logged.

export interface FaultReporterOptions {
  logger: Logger | undefined;
  intervalMs: number;
  /** Faults logged one by one in an interval. */
  perInterval: number;
  /** What nginx's text goes through before it is logged (it may quote an API key). */
  scrub: (text: string) => string;
  now?: () => number;
}

export function faultReporter(options: FaultReporterOptions): (fault: NginxFault) => void {
  const { logger, intervalMs, perInterval, scrub, now = Date.now } = options;
  let windowStart = 0;
  let logged = 0;
  let suppressed = 0;
  return (fault) => {
    const at = now();
    if (at - windowStart >= intervalMs) {
      if (suppressed > 0)
        logger?.error(
          { count: suppressed },
          'nginx reported more faults than were logged (all counted in k8s_router_nginx_errors_total)',
        );
      windowStart = at;
      logged = 0;
      suppressed = 0;
    }
    if (logged >= perInterval) {
      suppressed++;
      return;
    }
    logged++;
    logger?.error({ nginxLevel: fault.level, nginx: scrub(fault.message) }, 'nginx reported a fault in its error log');
  };
}
