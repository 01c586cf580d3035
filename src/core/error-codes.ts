// Every error code the router gives, in one place: each failure that ends the CLI (one line
// on standard error ending with the code, and an exit status) and each fault that is only
// logged and shown in /status (nginx kept its previous config, a request that could not be
// sent to a pod, ...). Codes are stable and all start with KR_, so that a log search or an
// alert can rely on them. The README lists them all (test/readme.test.ts checks it).

export interface ErrorCodeInfo {
  /** The code, or for a family of codes its pattern (KR_INVALID_<VARIABLE>). */
  readonly code: string;
  /** The CLI's exit status when this code ends it; null for a code that is only logged and shown. */
  readonly exit: 0 | 1 | 2 | null;
  /** What happened, in one line. */
  readonly meaning: string;
}

/** A setting's code is this pattern with <VARIABLE> replaced by its environment variable. */
const INVALID_SETTING = 'KR_INVALID_<VARIABLE>';

export const ERROR_CODES = [
  { code: INVALID_SETTING, exit: 2, meaning: 'a setting has a bad value; <VARIABLE> names it' },
  { code: 'KR_BAD_MANIFEST', exit: 1, meaning: 'the manifest cannot be read or parsed' },
  {
    code: 'KR_NO_CLUSTER',
    exit: 1,
    meaning: '`run` without `--manifest` finds no service-account token, no `KUBECONFIG` and no `~/.kube/config`',
  },
  {
    code: 'KR_LISTEN_FAILED',
    exit: 1,
    meaning: "the data plane's, the admin server's or a demo pod's address cannot be bound",
  },
  { code: 'KR_NO_DEMO', exit: 1, meaning: "`demo` runs from somewhere without the checkout's `examples/demo/`" },
  {
    code: 'KR_STOPPED',
    exit: 0,
    meaning: 'SIGTERM or SIGINT came while the router was starting: it stopped before serving',
  },
  {
    code: 'KR_DEPENDENCY_CHANGED',
    exit: 1,
    meaning: 'a dependency (or Node) is not what the router was written against: an internal it uses changed',
  },
  { code: 'KR_NGINX_RENDER_FAILED', exit: null, meaning: 'the table could not be rendered into an nginx.conf' },
  { code: 'KR_NGINX_CONFIG_REFUSED', exit: null, meaning: '`nginx -t` refused the new config' },
  { code: 'KR_NGINX_START_FAILED', exit: null, meaning: 'nginx did not start on the config' },
  { code: 'KR_NGINX_RELOAD_FAILED', exit: null, meaning: 'nginx did not load the new config' },
  {
    code: 'KR_NGINX_IO_FAILED',
    exit: null,
    meaning:
      'the config files could not be written or read; ' +
      "in dynamic mode, also: nginx's control socket could not be reached",
  },
  { code: 'KR_NGINX_CLOSED', exit: null, meaning: 'a table came after the nginx data plane was closed' },
  {
    code: 'KR_NGINX_TABLE_REFUSED',
    exit: null,
    meaning: "dynamic mode: the table could not be sent as data, or nginx's Lua refused it (nginx's reason follows)",
  },
  {
    code: 'KR_NGINX_TABLE_NOT_SERVED',
    exit: null,
    meaning: 'dynamic mode: nginx took the table, but not every worker served it within `NGINX_RELOAD_TIMEOUT_MS`',
  },
  {
    code: 'KR_UNSENDABLE_HEAD',
    exit: null,
    meaning: "Node refuses to send the request's head to a pod (the request, not the pod, is at fault): 502",
  },
  {
    code: 'KR_UPSTREAM_TIMEOUT',
    exit: null,
    meaning: 'a pod sent nothing for the upstream timeout (60 s): the next pod, or 504',
  },
] as const satisfies readonly ErrorCodeInfo[];

type Listed = (typeof ERROR_CODES)[number]['code'];
export type ErrorCode = Exclude<Listed, typeof INVALID_SETTING> | `KR_INVALID_${string}`;

/** The code of a bad value of the setting read from environment variable `env`. */
export function invalidSettingCode(env: string): ErrorCode {
  return `KR_INVALID_${env}`;
}

/** An error the CLI reports as one line ending with its code, and ends with the code's exit status. */
export class CodedError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'CodedError';
  }
}

/** The entry of `code` (a setting's code finds the KR_INVALID_<VARIABLE> entry). */
export function errorCodeInfo(code: ErrorCode): ErrorCodeInfo {
  const listed = code.startsWith('KR_INVALID_') ? INVALID_SETTING : code;
  const info = ERROR_CODES.find((entry) => entry.code === listed);
  if (info === undefined) throw new Error(`${code} is not in the error-code catalogue`);
  return info;
}
