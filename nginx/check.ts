import { execFile } from 'node:child_process';

// `nginx -t` on a candidate config before it may replace the live one. Errors go to
// stderr (`-e stderr`) so that they reach the caller and nothing touches /var/log.

export interface CheckResult {
  ok: boolean;
  /** What nginx printed: the reason when it refused the config. */
  output: string;
}

export interface CheckOptions {
  nginxBinary: string;
  prefix: string;
  confPath: string;
  timeoutMs?: number;
}

export function checkNginxConfig(options: CheckOptions): Promise<CheckResult> {
  const { nginxBinary, prefix, confPath, timeoutMs = 20_000 } = options;
  return new Promise((resolve, reject) => {
    execFile(
      nginxBinary,
      ['-t', '-q', '-p', prefix, '-c', confPath, '-e', 'stderr'],
      { timeout: timeoutMs, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const output = `${stdout}${stderr}`.trim();
        if (err === null) {
          resolve({ ok: true, output });
        } else if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(new Error(`nginx not found at ${nginxBinary}`));
        } else {
          // A timeout has no output of its own; say so rather than reporting an empty refusal.
          resolve({ ok: false, output: output || `nginx -t failed: ${err.message}` });
        }
      },
    );
  });
}

/** The first lines of nginx's complaint: enough to say why, short enough for a log line. */
export function firstLines(text: string, count = 5): string {
  return text.split('\n').slice(0, count).join('\n');
}
