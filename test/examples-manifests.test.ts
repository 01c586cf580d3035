import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { parseAllDocuments } from 'yaml';
import { loadConfig, SETTINGS, type RouterConfig, type Setting } from '../src/core/config.js';
import type { Pod } from '../src/core/kube-objects.js';
import { matchesLabels } from '../src/core/label-selector.js';
import { buildRouteTable } from '../src/core/route-table.js';

// The Kubernetes manifests in examples/ must agree with the code: current API versions,
// router containers configured only with real settings whose values parse, probes on
// the admin server's port and paths, ports that match, no capability or privilege, a
// NetworkPolicy that keeps the admin ports in, least-privilege RBAC naming the Secret
// the routers read, and a demo app the default router would route. (The image test runs
// the edge DaemonSet's container as written: test/image/.)

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const examples = new URL('../examples/', import.meta.url);
const files = readdirSync(examples)
  .filter((f) => f.endsWith('.yaml'))
  .sort();
const objectsOf = (file: string): Obj[] =>
  parseAllDocuments(readFileSync(new URL(file, examples), 'utf8')).map((doc) => {
    assert.deepEqual(doc.errors, [], `${file} parses`);
    return doc.toJS() as Obj;
  });
const all = files.flatMap((file) => objectsOf(file).map((obj) => ({ file, obj })));
const ofKind = (kind: string): Array<{ file: string; obj: Obj }> => all.filter(({ obj }) => obj.kind === kind);

const CURRENT_API: Record<string, string> = {
  Namespace: 'v1',
  ServiceAccount: 'v1',
  Secret: 'v1',
  List: 'v1',
  ClusterRole: 'rbac.authorization.k8s.io/v1',
  ClusterRoleBinding: 'rbac.authorization.k8s.io/v1',
  DaemonSet: 'apps/v1',
  Deployment: 'apps/v1',
  NetworkPolicy: 'networking.k8s.io/v1',
};

const setting = (env: string): Setting => {
  const found = SETTINGS.find((s) => s.env === env);
  assert.ok(found, `${env} is a setting in SETTINGS (src/core/config.ts)`);
  return found;
};
const defaultOf = (env: string): string => setting(env).default;

interface RouterContainer {
  where: string;
  file: string;
  pod: Obj;
  /** The labels of the pods its DaemonSet makes. */
  labels: Record<string, string>;
  container: Obj;
  /** The settings its env gives, the rest defaults. */
  config: RouterConfig;
  /** ADMIN_PORT from its env, or the default (read when asked: the setting comes with the admin server). */
  adminPort: () => number;
}

/** Every container that runs the k8s-router image, with the configuration it gets. */
const routers: RouterContainer[] = [...ofKind('DaemonSet'), ...ofKind('Deployment')].flatMap(({ file, obj }) =>
  (obj.spec.template.spec.containers as Obj[])
    .filter((c) => String(c.image).startsWith('k8s-router'))
    .map((container) => {
      const env: Record<string, string> = {};
      for (const e of (container.env ?? []) as Obj[])
        env[e.name] = e.value ?? `from-${e.valueFrom?.fieldRef?.fieldPath}`;
      return {
        where: `${file} ${obj.metadata.name}/${container.name}`,
        file,
        pod: obj.spec.template.spec as Obj,
        labels: obj.spec.template.metadata.labels as Record<string, string>,
        container,
        // Only the settings this branch knows of are loaded here; each env name is checked below.
        config: loadConfig({
          ...env,
          POD_NAME: env.POD_NAME === 'from-metadata.name' ? 'k8s-router-x7k2p' : (env.POD_NAME ?? ''),
        }),
        adminPort: () => Number(env.ADMIN_PORT ?? defaultOf('ADMIN_PORT')),
      };
    }),
);

describe('examples/ manifests: the routers', () => {
  it('parse, and use current API versions only', () => {
    assert.ok(files.includes('k8s-router-daemonset.yaml') && files.includes('k8s-router-rbac.yaml'));
    for (const { file, obj } of all) {
      assert.equal(obj.apiVersion, CURRENT_API[obj.kind], `${file}: ${obj.kind} ${obj.metadata?.name ?? ''}`);
    }
  });

  it('run the router in the edge DaemonSet and in the public/private pair', () => {
    assert.deepEqual(
      routers.map((r) => r.where),
      [
        'k8s-router-daemonset.yaml k8s-router/k8s-router',
        'k8s-router-multipurpose.yaml k8s-router-multipurpose/public',
        'k8s-router-multipurpose.yaml k8s-router-multipurpose/private',
      ],
    );
  });
});

describe("examples/ manifests: the routers' settings and ports", () => {
  it('set only real settings, with values that parse, and POD_NAME from the downward API', () => {
    for (const { where, container } of routers) {
      assert.equal(container.args[0], 'run', where);
      for (const e of container.env as Obj[]) {
        const s = setting(e.name);
        if (e.name === 'POD_NAME') {
          assert.deepEqual(e.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, `${where}: POD_NAME`);
          continue;
        }
        assert.equal(typeof e.value, 'string', `${where}: ${e.name} is a string`);
        assert.doesNotThrow(() => s.parse(e.value), `${where}: ${e.name}=${e.value}`);
      }
      assert.ok(
        (container.env as Obj[]).some((e) => e.name === 'POD_NAME'),
        `${where} names itself in its Events`,
      );
    }
  });

  it("listen on an unprivileged port the node's port maps to, and probe the admin server at the pod's IP", () => {
    for (const { where, pod, container, config, adminPort } of routers) {
      // The pod network, not the node's: the node's port comes through a hostPort.
      assert.equal(pod.hostNetwork, undefined, `${where}: no hostNetwork`);
      assert.equal(pod.dnsPolicy, undefined, `${where}: the default cluster DNS`);
      assert.ok(config.port >= 1024, `${where}: PORT ${config.port} needs no privilege`);
      const [http, adminPortEntry, ...more] = container.ports as Obj[];
      assert.deepEqual(more, [], where);
      assert.equal(http?.containerPort, config.port, `${where}: the data plane's port is declared`);
      assert.ok(http?.hostPort > 0 && http.hostPort < 1024, `${where}: a privileged port of the node maps to it`);
      // The admin port is never on the node's addresses.
      const admin = [adminPortEntry?.containerPort, adminPortEntry?.hostPort];
      assert.deepEqual(admin, [adminPort(), undefined], `${where}: admin port`);
      // No httpGet.host: the kubelet probes the pod's IP; the admin server listens on every
      // address of the pod (its loopback too, for kubectl port-forward).
      assert.equal(config.adminAddress, '0.0.0.0', `${where}: ADMIN_ADDRESS`);
      for (const [probe, path] of [
        ['livenessProbe', '/healthz'],
        ['readinessProbe', '/readyz'],
      ] as const) {
        assert.deepEqual(container[probe].httpGet, { port: adminPort(), path }, `${where}: ${probe}`);
      }
      assert.ok(
        container.resources.requests.cpu && container.resources.requests.memory && container.resources.limits.memory,
        `${where}: resources`,
      );
    }
    const edge = routers.find((r) => r.where.includes('daemonset'));
    assert.equal(
      edge?.adminPort(),
      Number(defaultOf('ADMIN_PORT')),
      'the edge router relies on the default admin port',
    );
    assert.equal(edge?.container.ports[0].hostPort, 80, "the edge router serves the node's port 80");
  });
});

describe('examples/ manifests: isolation', () => {
  it("let anyone reach the routers' ports and keep the admin ports to the node (NetworkPolicy)", () => {
    for (const file of new Set(routers.map((r) => r.file))) {
      const inFile = routers.filter((r) => r.file === file);
      const policies = ofKind('NetworkPolicy')
        .filter((p) => p.file === file)
        .map((p) => p.obj);
      assert.equal(policies.length, 1, `${file}: one NetworkPolicy`);
      const spec = policies[0]?.spec as Obj;
      assert.deepEqual(spec.podSelector, { matchLabels: inFile[0]?.labels }, `${file}: it selects the routers`);
      assert.deepEqual(spec.policyTypes, ['Ingress'], file);
      // One rule, with ports and no "from": those ports from anywhere; every other port (the
      // admin ports) only from the pod's own node, which NetworkPolicy always lets in.
      const ports = inFile.map((r) => ({ protocol: 'TCP', port: r.config.port }));
      assert.deepEqual(spec.ingress, [{ ports }], file);
    }
  });

  it('keep the routers of one pod apart: selectors, annotations, Secret fields, ports and admin ports', () => {
    const pair = routers.filter((r) => r.where.includes('multipurpose'));
    assert.equal(pair.length, 2);
    const distinct = (pick: (r: RouterContainer) => unknown): number =>
      new Set(pair.map((r) => JSON.stringify(pick(r)))).size;
    for (const [what, pick] of [
      ['selector', (r: RouterContainer) => r.config.labelSelector.text],
      ['hosts annotation', (r: RouterContainer) => r.config.hostsAnnotation],
      ['paths annotation', (r: RouterContainer) => r.config.pathsAnnotation],
      ['secret location', (r: RouterContainer) => r.config.apiKeySecret],
      ['port', (r: RouterContainer) => r.config.port],
      ["node's port", (r: RouterContainer) => r.container.ports[0].hostPort],
      ['admin port', (r: RouterContainer) => r.adminPort()],
    ] as const) {
      assert.equal(distinct(pick), 2, `the two routers differ in ${what}`);
    }
  });
});

describe('examples/ manifests: privileges', () => {
  it('run as the image user, with no capability and no privilege escalation, on a read-only root', () => {
    const dockerUser = /^USER (\d+):(\d+)$/m.exec(readFileSync(new URL('../Dockerfile', import.meta.url), 'utf8'));
    for (const { where, pod, container } of routers) {
      assert.deepEqual(
        [pod.securityContext.runAsNonRoot, pod.securityContext.runAsUser, pod.securityContext.runAsGroup],
        [true, Number(dockerUser?.[1]), Number(dockerUser?.[2])],
        where,
      );
      assert.deepEqual(pod.securityContext.seccompProfile, { type: 'RuntimeDefault' }, where);
      const none = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } };
      assert.deepEqual(container.securityContext, none, where);
      assert.ok(
        (container.volumeMounts as Obj[]).some((m) => m.mountPath === '/tmp') && defaultOf('NGINX_PREFIX') === 'auto',
        `${where}: a writable /tmp for the nginx prefix (NGINX_PREFIX=auto)`,
      );
    }
  });

  it('grant least privilege: pods, the routing Secrets by name, and Events', () => {
    const [role, ...moreRoles] = ofKind('ClusterRole').map(({ obj }) => obj);
    assert.equal(moreRoles.length, 0);
    const secretNames = [
      ...new Set([
        defaultOf('API_KEY_SECRET_LOCATION').split(':')[0],
        ...routers.map((r) => r.config.apiKeySecret.name),
      ]),
    ];
    assert.deepEqual(role?.rules, [
      { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
      { apiGroups: [''], resources: ['secrets'], resourceNames: secretNames, verbs: ['list', 'watch'] },
      { apiGroups: ['events.k8s.io'], resources: ['events'], verbs: ['create', 'patch'] },
    ]);
    const [account] = ofKind('ServiceAccount').map(({ obj }) => obj);
    const [binding] = ofKind('ClusterRoleBinding').map(({ obj }) => obj);
    assert.deepEqual(binding?.roleRef, {
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: role?.metadata.name,
    });
    assert.deepEqual(binding?.subjects, [
      { kind: 'ServiceAccount', name: account?.metadata.name, namespace: account?.metadata.namespace },
    ]);
    for (const { where, pod } of routers) assert.equal(pod.serviceAccountName, account?.metadata.name, where);
    for (const { obj } of ofKind('DaemonSet'))
      assert.equal(obj.metadata.namespace, account?.metadata.namespace, 'the service account lives with the routers');
  });
});

describe('examples/ manifests: the demo app', () => {
  it('deploy the demo app where the default router routes it, API key included', () => {
    const config = loadConfig({});
    const deployments = ofKind('Deployment').map(({ obj }) => obj);
    assert.ok(deployments.length >= 2);
    const pods: Pod[] = deployments.map((d, i) => {
      const template = d.spec.template;
      for (const [k, v] of Object.entries(d.spec.selector.matchLabels))
        assert.equal(template.metadata.labels[k], v, `${d.metadata.name} selects its pods`);
      assert.ok(
        matchesLabels(config.labelSelector, template.metadata.labels),
        `${d.metadata.name} has the routable label`,
      );
      const command = (template.spec.containers as Obj[])[0]?.command as string[];
      const source = (template.spec.volumes as Obj[]).find((v) => v.configMap)?.configMap.name;
      assert.deepEqual(
        [command, source],
        [['node', '/app/server.mjs'], 'demo-app'],
        'the demo app runs from the demo-app ConfigMap',
      );
      return {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: {
          name: `${d.metadata.name}-0`,
          namespace: d.metadata.namespace,
          labels: template.metadata.labels,
          annotations: template.metadata.annotations,
          creationTimestamp: '2025-01-01T00:00:00Z',
        },
        spec: template.spec,
        status: { phase: 'Running', podIP: `10.244.0.${i + 10}`, conditions: [{ type: 'Ready', status: 'True' }] },
      };
    });
    const secrets = ofKind('Secret').map(({ obj }) => ({
      ...obj,
      data: Object.fromEntries(
        Object.entries(obj.stringData as Record<string, string>).map(([k, v]) => [
          k,
          Buffer.from(v).toString('base64'),
        ]),
      ),
    }));
    const table = buildRouteTable(config, pods, secrets);
    assert.deepEqual(table.rejections, []);
    assert.deepEqual(
      table.routes.map((r) => `${r.host}${r.path} ${r.namespace} ${r.apiKey === null ? 'open' : `key ${r.apiKey}`}`),
      [
        'demo.k8s.local/ shop open',
        'demo.k8s.local/billing billing key ZGVtby1zZWNyZXQ=',
        'demo.k8s.local/ws shop open',
      ],
    );
  });
});
