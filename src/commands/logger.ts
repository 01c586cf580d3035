import pino, { type Logger } from 'pino';
import pretty from 'pino-pretty';
import { defaultConfig, withDefaults, type LogFormat, type LogLevel, type RouterConfig } from '../core/config.js';

/** LOG_LEVEL and LOG_FORMAT; each one not given takes the setting's default. */
export interface LoggerSettings {
  level: LogLevel;
  format: LogFormat;
}

export interface LoggerOptions {
  format?: LogFormat;
  /** Whether standard error is a terminal, which `auto` turns into readable lines. */
  isTTY?: boolean;
  /** Standard error by default. */
  destination?: NodeJS.WritableStream | number;
}

/** The logger's settings as `run` gives them. */
export function loggerOptionsFrom(config: RouterConfig): LoggerSettings {
  return { level: config.logLevel, format: config.logFormat };
}

/** The level and format of a logger created with these arguments: what is not given takes the setting's default. */
export function resolveLoggerOptions(level?: LogLevel, options: LoggerOptions = {}): LoggerSettings {
  return withDefaults(loggerOptionsFrom(defaultConfig()), { level, format: options.format });
}

/** Which format `auto` means here: readable lines for a person at a terminal, JSON for a collector. */
export function resolveLogFormat(format: LogFormat, isTTY: boolean): 'json' | 'pretty' {
  return format === 'auto' ? (isTTY ? 'pretty' : 'json') : format;
}

/**
 * Logs on standard error: standard output is kept for what a command prints (`render`,
 * `routes`, nginx.conf with PRINT_NGINX_CONFIG, the demo's commands). Both formats write
 * synchronously in this thread (no worker-thread transport), so a line is out before the
 * process exits and the order of lines is the order of events.
 */
export function createLogger(level?: LogLevel, options: LoggerOptions = {}): Logger {
  const resolved = resolveLoggerOptions(level, options);
  const isTTY = options.isTTY ?? process.stderr.isTTY === true;
  const destination = options.destination ?? 2;
  const settings = { level: resolved.level, base: { name: 'k8s-router' } };
  if (resolveLogFormat(resolved.format, isTTY) === 'json') {
    return pino(
      settings,
      typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination,
    );
  }
  const stream = pretty({
    destination,
    sync: true,
    colorize: isTTY,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'name',
    singleLine: true,
  });
  return pino(settings, stream);
}
