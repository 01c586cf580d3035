import http from 'node:http';
import { failed, keepAliveAgent, serveRoutes } from './routes.js';

// Node's own HTTP client with no proxy library: host + longest prefix, round robin, the
// request and the response piped through, pod connections kept alive. Every proxy built
// on node:http (http-proxy, http-proxy-3, ours) does at least this much per request, so
// this is their floor.

const agent = keepAliveAgent();
serveRoutes((req, res, pod) => {
  const upstream = http.request(
    { host: pod.ip, port: pod.port, method: req.method, path: req.url, headers: req.headers, agent },
    (pres) => {
      res.writeHead(pres.statusCode ?? 502, pres.rawHeaders);
      pres.pipe(res);
    },
  );
  upstream.on('error', () => failed(res));
  req.pipe(upstream);
});
