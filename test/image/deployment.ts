// The router container of an example DaemonSet, read as what it asks of its container
// runtime, in podman's words: so that the image test runs the image exactly as the
// example deploys it (user, capabilities, privileges, read-only root, writable
// directories, resources, settings), and an example that asks for more makes it fail.

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

export interface RunAsDeployed {
  /** `podman run` flags for the security context, the writable volumes and the resource limits. */
  flags: string[];
  /** The container's environment, downward-API fields filled in. */
  env: Record<string, string>;
  /** The container's arguments (after the image's entrypoint). */
  args: string[];
}

/** `1Gi` → `1g`: the binary units Kubernetes writes, in the form tmpfs and podman read. */
function podmanSize(quantity: string): string {
  const found = /^(\d+)([KMG])i$/.exec(quantity);
  if (found === null) throw new Error(`size ${quantity}: the image test reads Ki, Mi and Gi only`);
  return `${found[1]}${(found[2] as string).toLowerCase()}`;
}

/** `500m` → `0.5`, `1` → `1`. */
function podmanCpus(quantity: string): string {
  const found = /^(\d+)(m?)$/.exec(quantity);
  if (found === null) throw new Error(`cpu ${quantity}: the image test reads whole CPUs and millicores only`);
  return String(Number(found[1]) / (found[2] === 'm' ? 1000 : 1));
}

/**
 * The `podman run` flags, environment and arguments for the container of `daemonSet`
 * that runs `image`. `fields` gives the downward API's values (`metadata.name`, say).
 * The network is left to the caller: a test on one machine cannot reproduce the pod
 * network and its hostPort.
 */
export function runAsDeployed(daemonSet: Obj, image: string, fields: Record<string, string>): RunAsDeployed {
  const pod = daemonSet.spec.template.spec as Obj;
  const container = (pod.containers as Obj[]).find((c) => String(c.image).startsWith(image));
  if (container === undefined) throw new Error(`no container of ${daemonSet.metadata.name} runs the image ${image}`);
  const security = { ...pod.securityContext, ...container.securityContext } as Obj;
  if (security.runAsNonRoot !== true || !(security.runAsUser > 0) || !(security.runAsGroup > 0)) {
    throw new Error(
      `${daemonSet.metadata.name}: the image test expects runAsNonRoot and a numeric non-root user and group`,
    );
  }
  const flags = [`--user=${security.runAsUser}:${security.runAsGroup}`];
  for (const cap of (security.capabilities?.drop ?? []) as string[]) flags.push(`--cap-drop=${cap}`);
  for (const cap of (security.capabilities?.add ?? []) as string[]) flags.push(`--cap-add=${cap}`);
  if (security.allowPrivilegeEscalation === false) flags.push('--security-opt=no-new-privileges');
  // Kubernetes' RuntimeDefault is the runtime's own profile: podman's default.
  if (security.seccompProfile !== undefined && security.seccompProfile.type !== 'RuntimeDefault') {
    throw new Error(
      `seccompProfile ${JSON.stringify(security.seccompProfile)}: the image test knows RuntimeDefault only`,
    );
  }
  // podman's --read-only also mounts tmpfs on /run and /var/tmp unless told not to; a pod gets only its volumes.
  if (security.readOnlyRootFilesystem === true) flags.push('--read-only', '--read-only-tmpfs=false');
  const volumes = new Map(((pod.volumes ?? []) as Obj[]).map((v) => [v.name as string, v]));
  for (const mount of (container.volumeMounts ?? []) as Obj[]) {
    const emptyDir = volumes.get(mount.name)?.emptyDir as Obj | undefined;
    if (emptyDir === undefined) throw new Error(`volume ${mount.name}: the image test mounts emptyDir volumes only`);
    const size = emptyDir.sizeLimit === undefined ? '' : `,size=${podmanSize(emptyDir.sizeLimit)}`;
    // An emptyDir is a fresh directory writable by every user of the pod: a tmpfs of mode 1777 here.
    flags.push(`--tmpfs=${mount.mountPath}:rw,mode=1777${size}`);
  }
  const limits = (container.resources?.limits ?? {}) as Obj;
  if (limits.memory !== undefined) flags.push(`--memory=${podmanSize(limits.memory)}`);
  if (limits.cpu !== undefined) flags.push(`--cpus=${podmanCpus(String(limits.cpu))}`);

  const env: Record<string, string> = {};
  for (const e of (container.env ?? []) as Obj[]) {
    const field = e.valueFrom?.fieldRef?.fieldPath as string | undefined;
    const value = field === undefined ? e.value : fields[field];
    if (typeof value !== 'string') throw new Error(`env ${e.name}: no value for ${field ?? 'it'} in the image test`);
    env[e.name] = value;
  }
  return { flags, env, args: [...((container.args ?? []) as string[])] };
}
