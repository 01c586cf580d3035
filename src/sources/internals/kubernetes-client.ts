import http from 'node:http';
import { PassThrough, type Duplex } from 'node:stream';
import { KubeConfig, Watch } from '@kubernetes/client-node';
import { expect, packageVersion, runSelfChecks, type InternalCheck } from '../../core/self-check.js';

// What the router relies on inside @kubernetes/client-node beyond its documented API, with
// why, and a check of it that runs when the Kubernetes source starts.
//
// Its Watch resolves watch() only once the response headers arrive, and offers no way to
// cancel before that: a server that never answers would hold a watch (and the router's
// stop) forever. The Watch asks its KubeConfig for the request's options, agent included,
// through applyToFetchOptions; a KubeConfig that hands the Watch its own and keeps the agent
// lets the router destroy the agent, which cuts the request whatever state it is in.

/** An agent of the request's (what the router destroys to cut it). */
export interface RequestAgent {
  destroy?: () => void;
}

/** `kc`, as a Watch sees it, except that `onAgent` gets the agent of each request the Watch makes. */
export function configHandingOverAgents(
  kc: KubeConfig,
  onAgent: (agent: RequestAgent | undefined) => void,
): KubeConfig {
  const handing = Object.create(kc) as KubeConfig;
  handing.applyToFetchOptions = async (opts) => {
    const init = await kc.applyToFetchOptions(opts);
    onAgent(init.agent as RequestAgent | undefined);
    return init;
  };
  return handing;
}

/** An agent whose connections go nowhere, that says whether a request used it. */
class ProbeAgent extends http.Agent {
  used = false;
  override createConnection(): Duplex {
    this.used = true;
    const socket = new PassThrough();
    process.nextTick(() => socket.destroy(new Error('the self-check connects nowhere')));
    return socket;
  }
}

/** The checks of what the router uses inside the client (`WatchClass`: its Watch, or a stand-in in a test). */
export function kubernetesClientChecks(WatchClass: typeof Watch = Watch): InternalCheck[] {
  return [
    {
      internal: "Watch#watch() makes its request with the agent its KubeConfig's applyToFetchOptions returns",
      async check() {
        const kc = new KubeConfig();
        kc.loadFromOptions({
          clusters: [{ name: 'check', server: 'http://192.0.2.7:4321', skipTLSVerify: true }],
          users: [{ name: 'check' }],
          contexts: [{ name: 'check', cluster: 'check', user: 'check' }],
          currentContext: 'check',
        });
        // The cluster's own agent would connect: the request gets one that goes nowhere.
        const probe = new ProbeAgent();
        const probing = Object.create(kc) as KubeConfig;
        probing.applyToFetchOptions = async (opts) => ({ ...(await kc.applyToFetchOptions(opts)), agent: probe });
        let handedOver: RequestAgent | undefined;
        const handing = configHandingOverAgents(probing, (agent) => (handedOver = agent));
        try {
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => resolve(), 1_000);
            const done = (): void => {
              clearTimeout(timer);
              resolve();
            };
            new WatchClass(handing)
              .watch('/api/v1/pods', {}, () => {}, done)
              .then(done, done)
              .catch(reject);
          });
        } finally {
          probe.destroy();
        }
        expect(handedOver === probe, 'the Watch did not ask its KubeConfig for the request options');
        expect(probe.used, 'the Watch did not make its request with the agent it was given');
      },
    },
  ];
}

let checked: Promise<void> | null = null;

/** Checks, once per process, that the client is what the router expects; throws DependencyChanged if not. */
export function selfCheckKubernetesClient(): Promise<void> {
  checked ??= runSelfChecks(
    `@kubernetes/client-node ${packageVersion('@kubernetes/client-node')}`,
    kubernetesClientChecks(),
  );
  return checked;
}
