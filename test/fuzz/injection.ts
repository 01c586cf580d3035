import { fork } from 'node:child_process';
import { availableParallelism } from 'node:os';
import fc from 'fast-check';
import { injectionProperty } from '../support/injection-property.js';

// `npm run fuzz`: the injection property (no text a tenant writes changes the structure
// of nginx.conf; test/support/injection-property.ts) for FUZZ_RUNS cases (default
// 100,000), each one rendered and handed to a real `nginx -t`. The work is split over
// one process per core; each prints its seed so a failure can be replayed with
// FUZZ_SEED=<seed> FUZZ_RUNS=<n> npm run fuzz.

const total = Number(process.env.FUZZ_RUNS ?? 100_000);
const [, , role, seedArg, runsArg] = process.argv;

async function runWorker(seed: number, runs: number): Promise<void> {
  await fc.assert(injectionProperty(), { numRuns: runs, seed, endOnFailure: false });
  process.stdout.write(`worker seed=${seed}: ${runs} cases passed\n`);
}

async function runAll(): Promise<void> {
  const workers = Math.max(1, Math.min(availableParallelism(), 4));
  const baseSeed = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
  const started = Date.now();
  const results = await Promise.all(
    Array.from({ length: workers }, (_, i) => {
      const runs = Math.floor(total / workers) + (i < total % workers ? 1 : 0);
      const seed = baseSeed + i;
      process.stdout.write(`worker ${i + 1}/${workers}: seed=${seed} runs=${runs}\n`);
      const child = fork(new URL(import.meta.url), ['worker', String(seed), String(runs)], {
        execArgv: ['--import', 'tsx'],
      });
      return new Promise<boolean>((resolve) => child.on('exit', (code) => resolve(code === 0)));
    }),
  );
  const seconds = ((Date.now() - started) / 1000).toFixed(0);
  const passed = results.every(Boolean);
  const why = passed ? '' : ' (a worker failed: see its ' + 'counterexample above)';
  process.stdout.write(`${passed ? total : 0} cases passed in ${seconds} s${why}\n`);
  process.exitCode = passed ? 0 : 1;
}

if (role === 'worker') {
  runWorker(Number(seedArg), Number(runsArg)).catch((err: unknown) => {
    process.stderr.write(`${(err as Error).message}\n`);
    process.exitCode = 1;
  });
} else {
  void runAll();
}
