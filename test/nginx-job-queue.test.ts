import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createJobQueue, type RunnableJob } from '../nginx/job-queue.js';

// The nginx manager's jobs run one at a time, in the order they were queued, whatever
// became of the one before.

describe('nginx job queue', () => {
  it('starts a job only once the one before ended, failed or not, and says when each starts', async () => {
    const seen: string[] = [];
    const queue = createJobQueue((job: RunnableJob) => seen.push(`start ${job}`));
    const first = queue.run('apply', async () => {
      await sleep(30);
      seen.push('apply ends failing');
      throw new Error('refused');
    });
    const second = queue.run('restart', async () => {
      seen.push('restart runs');
    });
    const third = queue.run('stop', async () => {
      seen.push('stop runs');
    });
    await assert.rejects(first, /refused/);
    await second;
    await third;
    assert.deepEqual(seen, [
      'start apply',
      'apply ends failing',
      'start restart',
      'restart runs',
      'start stop',
      'stop runs',
    ]);
  });
});
