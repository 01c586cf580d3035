import { STATUS_CODES } from 'node:http';

// The answers the router writes itself. nginx's are short HTML pages; these have the
// same shape and status lines, and name this router instead of nginx.

export function errorPage(status: number): string {
  const title = `${status} ${STATUS_CODES[status] ?? ''}`.trim();
  return `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n<center><h1>${title}</h1></center>\r\n<hr><center>k8s-router</center>\r\n</body>\r\n</html>\r\n`;
}

/** A complete response, for a socket that is no longer managed by the HTTP server (upgrades). */
export function rawErrorResponse(status: number, extraHeaders: readonly [string, string][] = []): string {
  const body = errorPage(status);
  const lines = [
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}`,
    'Content-Type: text/html',
    `Content-Length: ${Buffer.byteLength(body)}`,
    ...extraHeaders.map(([k, v]) => `${k}: ${v}`),
    'Connection: close',
  ];
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}

/**
 * The Location of nginx's auto-redirect: absolute, on the host the client asked for and
 * the port the connection came in on (left out when 80).
 */
export function redirectLocation(host: string, localPort: number | undefined, pathAndQuery: string): string {
  const port = localPort === undefined || localPort === 80 ? '' : `:${localPort}`;
  return `http://${host}${port}${pathAndQuery}`;
}
