// How a pod's address is written as an nginx upstream server or proxy_pass target. nginx's
// consistent hash places each server by the text of its `server` directive, so the
// in-process proxy hashes this same text to choose the pods nginx chooses.

/** IP:PORT as nginx wants it: IPv6 in brackets, port 80 left out. */
export function podTarget(ip: string, port: number): string {
  const host = ip.includes(':') ? `[${ip}]` : ip;
  return port === 80 ? host : `${host}:${port}`;
}
