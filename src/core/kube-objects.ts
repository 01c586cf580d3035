// The parts of Pods and Secrets the router reads, as plain JSON (the shape the API server
// and `kubectl get -o yaml` print). Sources hand the core these, never client classes.

export interface ObjectMeta {
  name?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface ContainerPort {
  containerPort?: number;
  name?: string;
  protocol?: string;
}

export interface Pod {
  apiVersion?: string;
  kind?: 'Pod';
  metadata?: ObjectMeta;
  spec?: { containers?: Array<{ name?: string; ports?: ContainerPort[] }> };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: Array<{ type?: string; status?: string }>;
  };
}

export interface Secret {
  apiVersion?: string;
  kind?: 'Secret';
  metadata?: ObjectMeta;
  data?: Record<string, string>;
  type?: string;
}

/** The identity of a namespaced object; pods in two namespaces may share a name. */
export function objectKey(obj: { metadata?: ObjectMeta }): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}
