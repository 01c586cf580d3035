import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Logger } from 'pino';
import type { NginxFault } from '../nginx/error-log.js';
import { faultReporter } from '../nginx/fault-reporter.js';

// How nginx's faults reach the router's log: one line each, up to a number per interval;
// the rest of an interval is summed up in one line when the next interval starts.

interface Line {
  fields: Record<string, unknown>;
  message: string;
}

function recorder(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const logger = {
    error: (fields: Record<string, unknown>, message: string) => lines.push({ fields, message }),
  } as unknown as Logger;
  return { logger, lines };
}

const fault = (message: string): NginxFault => ({ level: 'crit', message, at: 0 });

describe('nginx fault reporter', () => {
  it('logs each fault with its level, nginx text scrubbed', () => {
    const { logger, lines } = recorder();
    const report = faultReporter({
      logger,
      intervalMs: 500,
      perInterval: 20,
      scrub: (text) => text.replace('sekret', '<redacted>'),
      now: () => 1_000,
    });
    report(fault('bad key sekret'));
    assert.deepEqual(lines, [
      {
        fields: { nginxLevel: 'crit', nginx: 'bad key <redacted>' },
        message: 'nginx reported a fault in its error log',
      },
    ]);
  });

  it('logs at most perInterval faults an interval, and the count of the others when the next one starts', () => {
    const { logger, lines } = recorder();
    let clock = 1_000;
    const report = faultReporter({ logger, intervalMs: 500, perInterval: 2, scrub: (t) => t, now: () => clock });
    for (const message of ['a', 'b', 'c', 'd', 'e']) report(fault(message));
    assert.deepEqual(
      lines.map((l) => l.fields.nginx),
      ['a', 'b'],
      `logged: ${JSON.stringify(lines)}`,
    );
    clock += 499;
    report(fault('f'));
    assert.equal(lines.length, 2, `still the same interval, logged: ${JSON.stringify(lines)}`);
    clock += 1;
    report(fault('g'));
    assert.deepEqual(
      lines.slice(2),
      [
        {
          fields: { count: 4 },
          message: 'nginx reported more faults than were logged (all counted in k8s_router_nginx_errors_total)',
        },
        { fields: { nginxLevel: 'crit', nginx: 'g' }, message: 'nginx reported a fault in its error log' },
      ],
      `logged: ${JSON.stringify(lines)}`,
    );
  });
});
