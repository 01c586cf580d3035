import { Pool, type Dispatcher } from 'undici';
import { failed, KEEPALIVE, serveRoutes, type Pod } from './routes.js';

// undici, Node's other HTTP client (the one behind fetch), with no proxy library: host +
// longest prefix, round robin, one pool of kept-alive connections per pod, the response
// streamed back. What a proxy gets by leaving node:http's client for undici's.

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding']);

const pools = new Map<string, Pool>();
const poolOf = (pod: Pod): Pool => {
  const key = `${pod.ip}:${pod.port}`;
  let pool = pools.get(key);
  if (pool === undefined) {
    pool = new Pool(`http://${key}`, { connections: KEEPALIVE });
    pools.set(key, pool);
  }
  return pool;
};

serveRoutes((req, res, pod) => {
  const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
  // The handler interface a Pool takes (undici 7's controller-based one needs an Agent in front).
  const handler: Dispatcher.DispatchHandler = {
    onConnect() {},
    onHeaders(status: number, rawHeaders: Buffer[], resume: () => void, statusText: string) {
      res.writeHead(
        status,
        statusText,
        rawHeaders.map((h) => h.toString('latin1')),
      );
      res.on('drain', resume);
      return true;
    },
    onData(chunk: Buffer) {
      return res.write(chunk);
    },
    onComplete() {
      res.end();
    },
    onError() {
      failed(res);
    },
  };
  // The client's headers, but for the hop-by-hop ones undici sets itself.
  const headers: string[] = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    const name = req.rawHeaders[i] as string;
    if (!HOP_BY_HOP.has(name.toLowerCase())) headers.push(name, req.rawHeaders[i + 1] as string);
  }
  poolOf(pod).dispatch(
    { method: req.method as Dispatcher.HttpMethod, path: req.url as string, headers, body: hasBody ? req : null },
    handler,
  );
});
