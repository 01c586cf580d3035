import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { CodedError } from './error-codes.js';

// Where the router uses a dependency or Node itself through an internal (a private field,
// a replaced method, a step of a library's pipeline), the module that does it lists a
// check of each such internal, tried the way the code uses it. They run at start: a
// dependency that changed stops the router with one line naming it and its version,
// rather than letting it answer otherwise than nginx, or leak, without a word.

/** One internal and what the code expects of it. */
export interface InternalCheck {
  /** The internal as the code uses it, e.g. `http.Agent.prototype.addRequest(req, options)`. */
  internal: string;
  /** Throws (or rejects), saying what it found, when the internal is not what the code expects. */
  check: () => void | Promise<void>;
}

/** A dependency (or Node) whose internals are not what the router was written against. */
export class DependencyChanged extends CodedError {
  constructor(dependency: string, internal: string, problem: string) {
    super('KR_DEPENDENCY_CHANGED', `${dependency} is not what the router expects: ${internal}: ${problem}`);
    this.name = 'DependencyChanged';
  }
}

/** Runs every check of `dependency` (its name and version); the first that fails throws DependencyChanged. */
export async function runSelfChecks(dependency: string, checks: readonly InternalCheck[]): Promise<void> {
  for (const { internal, check } of checks) {
    try {
      await check();
    } catch (err) {
      const problem = (err instanceof Error ? err.message : String(err)).split('\n')[0] as string;
      throw new DependencyChanged(dependency, internal, problem);
    }
  }
}

/** Throws `problem` unless `condition` holds: the body of most checks. */
export function expect(condition: boolean, problem: string): asserts condition {
  if (!condition) throw new Error(problem);
}

const require = createRequire(import.meta.url);

/** The version of an installed package, read from its package.json; "?" if it cannot be found. */
export function packageVersion(name: string): string {
  try {
    let dir = dirname(require.resolve(name));
    for (let up = 0; up < 6; up++, dir = dirname(dir)) {
      try {
        const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name && typeof pkg.version === 'string') return pkg.version;
      } catch {
        // no package.json here: one directory up
      }
    }
  } catch {
    // not installed where this module can resolve it
  }
  return '?';
}
