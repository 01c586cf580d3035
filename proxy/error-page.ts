import { STATUS_CODES } from 'node:http';

// The answers the router writes itself. nginx's are short HTML pages; these have the
// same shape and status lines, and name this router instead of nginx.

/** nginx's reason phrases where they are not Node's (ngx_http_status_lines). */
const NGINX_REASONS: Readonly<Record<number, string>> = {
  302: 'Moved Temporarily',
  405: 'Not Allowed',
  408: 'Request Time-out',
  413: 'Request Entity Too Large',
  414: 'Request-URI Too Large',
  416: 'Requested Range Not Satisfiable',
  503: 'Service Temporarily Unavailable',
  504: 'Gateway Time-out',
};

/** The reason phrase nginx gives a status it answers itself. */
export function reasonPhrase(status: number): string {
  return NGINX_REASONS[status] ?? STATUS_CODES[status] ?? '';
}

export function errorPage(status: number): string {
  const title = `${status} ${reasonPhrase(status)}`.trim();
  return (
    `<html>\r\n<head><title>${title}</title></head>\r\n<body>\r\n` +
    `<center><h1>${title}</h1></center>\r\n<hr><center>k8s-router</center>\r\n</body>\r\n</html>\r\n`
  );
}

/** A complete response, for a socket that is no longer managed by the HTTP server (upgrades). */
export function rawErrorResponse(status: number, extraHeaders: readonly [string, string][] = []): string {
  const body = errorPage(status);
  const lines = [
    `HTTP/1.1 ${status} ${reasonPhrase(status)}`,
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
