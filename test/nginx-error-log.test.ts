import assert from 'node:assert/strict';
import { appendFile, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { followErrorLog, parseErrorLogLine, type NginxFault } from '../nginx/error-log.js';

// nginx's error log as the router follows it: every line at crit, alert or emerg is
// reported once, from where the log ended when the router started.

const line = (level: string, message: string): string => `2026/12/06 07:11:12 [${level}] 13524#13524: ${message}\n`;

describe('parseErrorLogLine', () => {
  it('reads the level, the pid and the message of a line nginx wrote', () => {
    assert.deepEqual(
      parseErrorLogLine(
        line('crit', '*5 open() "/p/temp/proxy/1/00/0000000001" failed (13: Permission denied)').trim(),
      ),
      {
        level: 'crit',
        pid: 13524,
        message: '*5 open() "/p/temp/proxy/1/00/0000000001" failed (13: Permission denied)',
      },
    );
  });

  it("is null for what is not one of nginx's lines", () => {
    assert.equal(parseErrorLogLine('nginx: [emerg] unknown directive "x"'), null);
    assert.equal(parseErrorLogLine('2026/12/06 07:11:12 [loud] 1#1: x'), null);
  });
});

describe('followErrorLog', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'k8s-router-error-log-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reports each fault once, from the end of what was there, and counts them by level', async () => {
    const path = join(dir, 'error.log');
    await writeFile(path, line('crit', 'from an earlier run'));
    const seen: NginxFault[] = [];
    const follower = await followErrorLog(path, { onFault: (f) => seen.push(f), intervalMs: 60_000 });
    try {
      await appendFile(path, line('error', 'connect() failed (111: Connection refused) while connecting to upstream'));
      await appendFile(
        path,
        line('crit', 'write() failed (28: No space left on device)') +
          line('alert', 'worker process 7 exited on signal 9'),
      );
      await appendFile(path, line('emerg', 'bind() to 127.0.0.1:80 failed').slice(0, 20));
      await follower.poll();
      await follower.poll();
      assert.deepEqual(
        seen.map((f) => [f.level, f.message]),
        [
          ['crit', 'write() failed (28: No space left on device)'],
          ['alert', 'worker process 7 exited on signal 9'],
        ],
      );
      // The rest of a line written in two parts is read with its start.
      await appendFile(path, line('emerg', 'bind() to 127.0.0.1:80 failed').slice(20));
      await follower.poll();
      assert.deepEqual(seen.at(-1)?.message, 'bind() to 127.0.0.1:80 failed');
      assert.deepEqual(follower.report().counts, { crit: 1, alert: 1, emerg: 1 });
      assert.equal(follower.report().recent.length, 3);
    } finally {
      follower.stop();
    }
  });

  it(
    'reads a log that was replaced (rotated) or truncated (now ' + 'shorter than what was read) from its start',
    async () => {
      const path = join(dir, 'rotated.log');
      await writeFile(path, line('crit', 'old'));
      const seen: string[] = [];
      const follower = await followErrorLog(path, { onFault: (f) => seen.push(f.message), intervalMs: 60_000 });
      try {
        await rename(path, `${path}.1`);
        await writeFile(path, line('crit', 'after rotation'));
        await follower.poll();
        await writeFile(path, line('alert', 'cut'));
        await follower.poll();
        assert.deepEqual(seen, ['after rotation', 'cut']);
      } finally {
        follower.stop();
      }
    },
  );

  it('follows a log that does not exist yet from its first line', async () => {
    const path = join(dir, 'later.log');
    const seen: string[] = [];
    const follower = await followErrorLog(path, { onFault: (f) => seen.push(f.message), intervalMs: 60_000 });
    try {
      await follower.poll();
      await writeFile(path, line('emerg', 'first words'));
      await follower.poll();
      assert.deepEqual(seen, ['first words']);
    } finally {
      follower.stop();
    }
  });
});
