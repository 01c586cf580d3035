import { fork, type ChildProcess } from 'node:child_process';
import { isIPv4 } from 'node:net';
import type { Logger } from 'pino';
import type { Pod } from '../core/kube-objects.js';

// The demo's "pods": the demo app (examples/demo/app/) run once per Pod of the demo
// manifest, on the Pod's loopback IP and container ports, as a child process of its own,
// the way a kubelet would run it (the same program runs as a Deployment in a cluster).
// Each child exits by itself when its IPC channel to us closes, so none outlives the demo
// even if the demo is killed outright.

export interface DemoPodSpec {
  /** namespace/name */
  key: string;
  namespace: string;
  name: string;
  ip: string;
  ports: number[];
}

export interface DemoPodFailure {
  spec: DemoPodSpec;
  /** EADDRINUSE, EADDRNOTAVAIL, ..., or EXITED / TIMEOUT. */
  code: string;
  port: number | null;
  message: string;
}

export interface DemoPods {
  /**
   * Starts, restarts and stops processes so that exactly `specs` run, and resolves once
   * they listen, with the pods that could not start (the others keep running).
   */
  sync(specs: readonly DemoPodSpec[]): Promise<DemoPodFailure[]>;
  /** Pids of the processes running now. */
  pids(): number[];
  /** Stops every process and waits for each to exit. */
  stop(): Promise<void>;
}

const START_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;

function portsOf(pod: Pod, pathsAnnotation: string): number[] {
  const valid = (ports: Array<number | undefined>): number[] =>
    ports.filter((p): p is number => Number.isInteger(p) && (p as number) >= 1 && (p as number) <= 65535);
  const declared = valid((pod.spec?.containers ?? []).flatMap((c) => (c.ports ?? []).map((p) => p.containerPort)));
  // A pod that declares no ports listens where its paths say, as such pods do in a cluster.
  const named =
    declared.length > 0
      ? declared
      : valid(
          (pod.metadata?.annotations?.[pathsAnnotation] ?? '')
            .split(/\s+/)
            .map((entry) => Number(/^(\d+):/.exec(entry)?.[1])),
        );
  return [...new Set(named)].sort((a, b) => a - b);
}

/** Pure: the processes a manifest asks for: every Running pod on a loopback IPv4 address with a port. */
export function demoPodSpecs(pods: readonly Pod[], pathsAnnotation: string): DemoPodSpec[] {
  const specs: DemoPodSpec[] = [];
  for (const pod of pods) {
    const ip = pod.status?.podIP ?? '';
    const namespace = pod.metadata?.namespace ?? 'default';
    const name = pod.metadata?.name ?? '';
    const ports = portsOf(pod, pathsAnnotation);
    if (pod.status?.phase !== 'Running' || !isIPv4(ip) || !ip.startsWith('127.') || name === '' || ports.length === 0)
      continue;
    specs.push({ key: `${namespace}/${name}`, namespace, name, ip, ports });
  }
  return specs.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

const sameSpec = (a: DemoPodSpec, b: DemoPodSpec): boolean => a.ip === b.ip && a.ports.join(',') === b.ports.join(',');

interface RunningPod {
  spec: DemoPodSpec;
  child: ChildProcess;
  exited: Promise<void>;
}

function stopProcess(pod: RunningPod): Promise<void> {
  if (pod.child.exitCode === null && pod.child.signalCode === null) {
    pod.child.kill('SIGTERM');
    const force = setTimeout(() => pod.child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    void pod.exited.then(() => clearTimeout(force));
  }
  return pod.exited;
}

/**
 * Starts the demo app as `spec`'s pod and resolves once it listens, or with why it could not; `exitedLater` hears of
 * an exit after that.
 */
function startDemoPod(
  app: string,
  spec: DemoPodSpec,
  logger: Logger,
  exitedLater: (pod: RunningPod, code: number | null, signal: NodeJS.Signals | null) => void,
): Promise<RunningPod | DemoPodFailure> {
  const child = fork(app, [], {
    env: {
      PATH: process.env.PATH ?? '',
      POD_NAME: spec.name,
      POD_NAMESPACE: spec.namespace,
      LISTEN_ADDRESS: spec.ip,
      PORTS: spec.ports.join(','),
    },
    // Not the router's own flags (such as --import tsx): the app is plain JavaScript.
    execArgv: [],
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const pod: RunningPod = { spec, child, exited };
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => {
    for (const line of text.split('\n').filter(Boolean))
      logger.warn({ pod: spec.key, output: line }, 'demo pod output');
  });
  return new Promise((resolve) => {
    const fail = (code: string, port: number | null, message: string): void => {
      clearTimeout(timer);
      void stopProcess(pod);
      resolve({ spec, code, port, message });
    };
    const timer = setTimeout(
      () => fail('TIMEOUT', null, `did not listen within ${START_TIMEOUT_MS / 1000} s`),
      START_TIMEOUT_MS,
    );
    const earlyExit = (code: number | null, signal: NodeJS.Signals | null): void =>
      fail('EXITED', null, `exited (${signal ?? `status ${code}`}) before it listened`);
    child.once('exit', earlyExit);
    child.once('error', (err) => fail('EXITED', null, err.message));
    child.once('message', (message: { type?: string; code?: string; port?: number; message?: string }) => {
      if (message.type === 'listening') {
        clearTimeout(timer);
        child.off('exit', earlyExit);
        child.on('exit', (code, signal) => exitedLater(pod, code, signal));
        resolve(pod);
      } else {
        fail(message.code ?? 'ERROR', message.port ?? null, message.message ?? 'cannot listen');
      }
    });
  });
}

export function createDemoPods(options: { app: string; logger: Logger }): DemoPods {
  const { app, logger } = options;
  const running = new Map<string, RunningPod>();
  let queue: Promise<unknown> = Promise.resolve();
  let stopped = false;

  const exitedLater = (pod: RunningPod, code: number | null, signal: NodeJS.Signals | null): void => {
    if (running.get(pod.spec.key) === pod) {
      running.delete(pod.spec.key);
      if (!stopped) logger.error({ pod: pod.spec.key, code, signal }, 'demo pod exited');
    }
  };
  const start = (spec: DemoPodSpec): Promise<RunningPod | DemoPodFailure> =>
    startDemoPod(app, spec, logger, exitedLater);

  async function syncNow(specs: readonly DemoPodSpec[]): Promise<DemoPodFailure[]> {
    if (stopped) return [];
    const wanted = new Map(specs.map((s) => [s.key, s]));
    const obsolete = [...running.values()].filter((pod) => {
      const spec = wanted.get(pod.spec.key);
      return spec === undefined || !sameSpec(spec, pod.spec);
    });
    for (const pod of obsolete) running.delete(pod.spec.key);
    await Promise.all(
      obsolete.map(async (pod) => {
        await stopProcess(pod);
        logger.info({ pod: pod.spec.key, pid: pod.child.pid }, 'demo pod stopped');
      }),
    );
    const results = await Promise.all(specs.filter((s) => !running.has(s.key)).map(start));
    const failures: DemoPodFailure[] = [];
    for (const result of results) {
      if ('child' in result) {
        running.set(result.spec.key, result);
        logger.info(
          { pod: result.spec.key, ip: result.spec.ip, ports: result.spec.ports, pid: result.child.pid },
          'demo pod started',
        );
      } else {
        failures.push(result);
      }
    }
    // A stop() that came while pods were starting must not leave them behind.
    if (stopped) await Promise.all([...running.values()].map(stopProcess));
    return failures;
  }

  return {
    sync(specs) {
      const run = queue.then(() => syncNow(specs));
      queue = run.catch(() => undefined);
      return run;
    },
    pids: () => [...running.values()].flatMap((pod) => (pod.child.pid === undefined ? [] : [pod.child.pid])),
    async stop() {
      stopped = true;
      await queue;
      const pods = [...running.values()];
      running.clear();
      await Promise.all(pods.map(stopProcess));
    },
  };
}
