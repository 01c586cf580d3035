import type { Job } from './manager-state.js';

// The nginx manager's jobs (apply, restart, stop) run one at a time, each once the one
// before has ended, whatever became of it: nginx is never loaded while it is being
// restarted or stopped.

export type RunnableJob = Exclude<Job, null>;

export interface JobQueue {
  /** Runs `work` after every job queued before it; resolves or rejects as `work` does. */
  run(job: RunnableJob, work: () => Promise<void>): Promise<void>;
}

/** `onStart` is told when each job starts, just before its work. */
export function createJobQueue(onStart: (job: RunnableJob) => void): JobQueue {
  let tail: Promise<unknown> = Promise.resolve();
  return {
    run(job, work) {
      const start = (): Promise<void> => {
        onStart(job);
        return work();
      };
      const next = tail.then(start, start);
      tail = next.catch(() => undefined);
      return next;
    },
  };
}
