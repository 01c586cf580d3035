import type { ManagerTimer } from './manager-state.js';

// The nginx manager's two timers, each set at most once at a time: a new delay replaces
// the one pending.

export interface ManagerTimers {
  set(timer: ManagerTimer, delayMs: number): void;
  cancel(timer: ManagerTimer): void;
}

/** `onDue` is called when a timer runs out (not when it is cancelled or replaced). */
export function createManagerTimers(onDue: (timer: ManagerTimer) => void): ManagerTimers {
  const pending: Record<ManagerTimer, NodeJS.Timeout | null> = { retry: null, restart: null };
  function cancel(timer: ManagerTimer): void {
    const t = pending[timer];
    if (t !== null) clearTimeout(t);
    pending[timer] = null;
  }
  return {
    set(timer, delayMs) {
      cancel(timer);
      pending[timer] = setTimeout(() => {
        pending[timer] = null;
        onDue(timer);
      }, delayMs);
    },
    cancel,
  };
}
