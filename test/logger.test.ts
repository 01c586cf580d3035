import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger, resolveLogFormat } from '../src/commands/logger.js';

// Logs are JSON for collectors and readable lines for a person at a terminal.

function capture(format: 'auto' | 'json' | 'pretty', isTTY: boolean): string {
  const out = new PassThrough();
  const chunks: Buffer[] = [];
  out.on('data', (chunk: Buffer) => chunks.push(chunk));
  const logger = createLogger('info', { format, isTTY, destination: out });
  logger.info({ routes: 3 }, 'route table served');
  logger.debug('not at info level');
  return Buffer.concat(chunks).toString('utf8');
}

describe('logger', () => {
  it('auto means pretty on a terminal and JSON elsewhere; json and pretty are what they say', () => {
    assert.equal(resolveLogFormat('auto', true), 'pretty');
    assert.equal(resolveLogFormat('auto', false), 'json');
    assert.equal(resolveLogFormat('json', true), 'json');
    assert.equal(resolveLogFormat('pretty', false), 'pretty');
  });

  it('writes one JSON object a line by default', () => {
    const text = capture('auto', false);
    const lines = text.trim().split('\n');
    assert.equal(lines.length, 1);
    const line = JSON.parse(lines[0] as string) as Record<string, unknown>;
    assert.equal(line.msg, 'route table served');
    assert.equal(line.routes, 3);
    assert.equal(line.level, 30);
    assert.equal(line.name, 'k8s-router');
  });

  it('writes readable lines, synchronously, when pretty', () => {
    const text = capture('pretty', false);
    assert.match(text, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO: route table served \{"routes":3\}\n$/);
  });

  it('colours pretty lines only on a terminal', () => {
    /* eslint-disable no-control-regex -- the ANSI escape character is what this looks for */
    assert.match(capture('auto', true), /\u001b\[/);
    assert.doesNotMatch(capture('pretty', false), /\u001b\[/);
    /* eslint-enable no-control-regex */
  });
});
