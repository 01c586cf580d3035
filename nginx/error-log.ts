import { open, stat } from 'node:fs/promises';

// nginx reports its own faults only in its error log: a worker that cannot write a
// temporary file answers 500 (or cuts a download short) and writes a [crit] line, and
// nothing else tells anyone. The router follows the log and brings every line at crit,
// alert or emerg to its own log, a counter and the status page, so no nginx fault is
// silent. Lines below crit (an upstream that refused a connection, a client that went
// away) are the ordinary life of a proxy and stay in nginx's log.

/** nginx's levels from the worst; its error log names them in brackets. */
export const NGINX_LOG_LEVELS = ['emerg', 'alert', 'crit', 'error', 'warn', 'notice', 'info', 'debug'] as const;
export type NginxLogLevel = (typeof NGINX_LOG_LEVELS)[number];

/** The levels that mean nginx failed at something it should do: each one is reported. */
export const FAULT_LEVELS = ['crit', 'alert', 'emerg'] as const;
export type FaultLevel = (typeof FAULT_LEVELS)[number];

export interface NginxLogLine {
  level: NginxLogLevel;
  /** The pid of the nginx process that wrote it. */
  pid: number;
  /** The text after "PID#TID: ". */
  message: string;
}

const LINE = /^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d \[([a-z]+)\] (\d+)#\d+: (.*)$/;

/** One line of nginx's error log, or null when it is not one (a continuation, a partial line). */
export function parseErrorLogLine(line: string): NginxLogLine | null {
  const m = LINE.exec(line);
  if (m === null) return null;
  const level = NGINX_LOG_LEVELS.find((l) => l === m[1]);
  if (level === undefined) return null;
  return { level, pid: Number(m[2]), message: m[3] as string };
}

export function isFault(level: NginxLogLevel): level is FaultLevel {
  return (FAULT_LEVELS as readonly string[]).includes(level);
}

/** A fault as the status page shows it. */
export interface NginxFault {
  level: FaultLevel;
  message: string;
  /** When the router read it (ms since the epoch). */
  at: number;
}

export interface FaultCounts {
  crit: number;
  alert: number;
  emerg: number;
}

export interface ErrorLogReport {
  counts: FaultCounts;
  /** The latest faults, newest last. */
  recent: NginxFault[];
}

export interface FollowOptions {
  /** Called for every fault line, in order. */
  onFault: (fault: NginxFault, line: NginxLogLine) => void;
  /** How often the file is read for new lines. */
  intervalMs?: number;
  /** Faults kept for the report. */
  keepRecent?: number;
}

export interface ErrorLogFollower {
  /** Reads what nginx appended since the last read (also done on the timer). */
  poll(): Promise<void>;
  report(): ErrorLogReport;
  stop(): void;
}

/** The most read in one poll: a log flooded by a failing nginx is read over several polls. */
const MAX_READ_BYTES = 1024 * 1024;
/** Longer lines than this are cut: nginx's own limit is 2 KiB (NGX_MAX_ERROR_STR). */
const MAX_LINE_CHARS = 4096;

/**
 * Follows nginx's error log from its current end: lines already there (an earlier run's)
 * are not reported. A log that is truncated or replaced (rotated) is read from its start.
 */
export async function followErrorLog(path: string, options: FollowOptions): Promise<ErrorLogFollower> {
  const { onFault, intervalMs = 500, keepRecent = 10 } = options;
  const counts: FaultCounts = { crit: 0, alert: 0, emerg: 0 };
  const recent: NginxFault[] = [];
  let position = await fileIdentity(path);
  let partial = '';
  let reading: Promise<void> | null = null;
  let stopped = false;

  function take(line: string): void {
    const parsed = parseErrorLogLine(line.length > MAX_LINE_CHARS ? line.slice(0, MAX_LINE_CHARS) : line);
    if (parsed === null || !isFault(parsed.level)) return;
    const fault: NginxFault = { level: parsed.level, message: parsed.message, at: Date.now() };
    counts[parsed.level]++;
    recent.push(fault);
    if (recent.length > keepRecent) recent.shift();
    onFault(fault, parsed);
  }

  async function readNew(): Promise<void> {
    const now = await fileIdentity(path);
    if (now.ino !== position.ino || now.size < position.offset) {
      position = { ino: now.ino, size: now.size, offset: 0 };
      partial = '';
    }
    if (now.size <= position.offset) return;
    const length = Math.min(MAX_READ_BYTES, now.size - position.offset);
    const text = await readRange(path, position.offset, length);
    position = { ino: now.ino, size: now.size, offset: position.offset + length };
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    if (partial.length > MAX_LINE_CHARS) partial = partial.slice(0, MAX_LINE_CHARS);
    for (const line of lines) take(line);
  }

  function poll(): Promise<void> {
    reading ??= readNew()
      .catch(() => undefined)
      .finally(() => {
        reading = null;
      });
    return reading;
  }

  const timer = setInterval(() => {
    if (!stopped) void poll();
  }, intervalMs);
  timer.unref();

  return {
    poll,
    report: () => ({ counts: { ...counts }, recent: recent.map((f) => ({ ...f })) }),
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}

interface Position {
  ino: number;
  size: number;
  /** How far the file was read. */
  offset: number;
}

/** Where the file ends now (an absent file is empty: nginx creates it when it starts). */
async function fileIdentity(path: string): Promise<Position> {
  try {
    const info = await stat(path);
    return { ino: info.ino, size: info.size, offset: info.size };
  } catch {
    return { ino: 0, size: 0, offset: 0 };
  }
}

async function readRange(path: string, offset: number, length: number): Promise<string> {
  const file = await open(path, 'r');
  try {
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await file.read(buffer, 0, length, offset);
    return buffer.subarray(0, bytesRead).toString('utf8');
  } finally {
    await file.close();
  }
}
