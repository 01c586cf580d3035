import pino, { type Logger } from 'pino';
import type { LogLevel } from '../core/config.js';

/**
 * JSON lines on standard error: standard output is kept for what a command prints
 * (`render`, `routes`, and nginx.conf with PRINT_NGINX_CONFIG).
 */
export function createLogger(level: LogLevel): Logger {
  return pino({ level, base: { name: 'k8s-router' } }, pino.destination({ fd: 2, sync: true }));
}
