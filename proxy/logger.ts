// The little the proxy logs; a pino logger fits this shape.

type LogFn = (fields: object, message: string) => void;

export interface ProxyLogger {
  debug: LogFn;
  warn: LogFn;
  error: LogFn;
}

const ignore: LogFn = () => {};

export const silentLogger: ProxyLogger = { debug: ignore, warn: ignore, error: ignore };
