import { spawn } from 'node:child_process';

// The image test drives podman, mmdebstrap and npm as commands: each runs bounded in time,
// and what it printed is kept so that a failure can say what happened.

export interface CommandResult {
  /** The exit status, or the signal that ended the command (after its time ran out, say). */
  exit: number | NodeJS.Signals;
  stdout: string;
  stderr: string;
  ms: number;
}

export interface CommandOptions {
  timeoutMs: number;
  cwd?: string;
  env?: NodeJS.ProcessEnv;
  /** Called with every chunk of output as it comes (a build log written as it goes). */
  onOutput?: (chunk: string) => void;
}

/** Runs `command args`; after `timeoutMs` it gets SIGTERM, and SIGKILL 10 s later. */
export function runCommand(command: string, args: readonly string[], options: CommandOptions): Promise<CommandResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString('utf8');
      options.onOutput?.(chunk.toString('utf8'));
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8');
      options.onOutput?.(chunk.toString('utf8'));
    });
    let killer: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      child.kill('SIGTERM');
      killer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    }, options.timeoutMs);
    const finish = (exit: number | NodeJS.Signals): void => {
      clearTimeout(timer);
      clearTimeout(killer);
      resolve({ exit, stdout, stderr, ms: Date.now() - started });
    };
    child.once('error', (err) => {
      stderr += String(err);
      finish(-1);
    });
    child.once('close', (code, signal) => finish(code ?? signal ?? -1));
  });
}

/** The last `count` lines of `text`, to quote in an error. */
export function lastLines(text: string, count = 30): string {
  return text.trimEnd().split('\n').slice(-count).join('\n');
}

/** Runs the command and returns its standard output; throws, quoting its output, unless it exits 0. */
export async function commandOutput(
  command: string,
  args: readonly string[],
  options: CommandOptions,
): Promise<string> {
  const result = await runCommand(command, args, options);
  if (result.exit !== 0) {
    throw new Error(
      `\`${command} ${args.join(' ')}\` ended with ${result.exit} after ${result.ms} ms:\n` +
        lastLines(`${result.stdout}\n${result.stderr}`),
    );
  }
  return result.stdout;
}
