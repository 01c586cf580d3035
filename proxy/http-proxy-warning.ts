// http-proxy 1.18.1 copies objects with util._extend, which Node 22 and later deprecate
// at run time (DEP0060): the first proxied request would print a DeprecationWarning to
// the router's users about code that is not theirs, nor ours, to change. This drops that
// one warning, and only when it is raised from http-proxy's own files: any other
// warning, a DEP0060 raised by other code included, is emitted as before. (Node prints
// each deprecation code once per process, so once http-proxy's has been dropped a later
// DEP0060 from other code is not printed either, as it would not have been after
// http-proxy's own.)

const CODE = 'DEP0060';
const HTTP_PROXY_FILES = /[\\/]node_modules[\\/]http-proxy[\\/]lib[\\/]/;

let installed = false;

type EmitWarningArgs = [warning: string | Error, typeOrOptions?: unknown, code?: unknown, ctor?: unknown];

/** The code and the constructor a process.emitWarning call names, in either of its call forms. */
function codeAndCtor(args: EmitWarningArgs): { code: unknown; ctor: unknown } {
  const [, typeOrOptions, code, ctor] = args;
  if (typeOrOptions !== null && typeof typeOrOptions === 'object') {
    const options = typeOrOptions as { code?: unknown; ctor?: unknown };
    return { code: options.code, ctor: options.ctor };
  }
  return { code, ctor };
}

/** The first stack frame outside Node's own modules, above `ctor` when it is given. */
function callerFrame(ctor: unknown): string | undefined {
  const site: { stack?: string } = {};
  Error.captureStackTrace(site, typeof ctor === 'function' ? (ctor as () => void) : callerFrame);
  return site.stack
    ?.split('\n')
    .slice(1)
    .find((line) => !line.includes('(node:') && !line.trimStart().startsWith('at node:') && !line.includes('http-proxy-warning'));
}

/** Whether this process.emitWarning call is http-proxy's DEP0060. */
export function isHttpProxyExtendWarning(...args: EmitWarningArgs): boolean {
  const { code, ctor } = codeAndCtor(args);
  if (code !== CODE) return false;
  const frame = callerFrame(ctor);
  return frame !== undefined && HTTP_PROXY_FILES.test(frame);
}

/** Installs the filter on process.emitWarning (once per process). */
export function silenceHttpProxyExtendWarning(): void {
  if (installed) return;
  installed = true;
  const emitWarning = process.emitWarning;
  process.emitWarning = function emitWarningExceptHttpProxyExtend(this: unknown, ...args: EmitWarningArgs): void {
    if (isHttpProxyExtendWarning(...args)) return;
    (emitWarning as (...a: EmitWarningArgs) => void).apply(process, args);
  } as typeof process.emitWarning;
}
