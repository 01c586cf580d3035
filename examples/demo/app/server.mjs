#!/usr/bin/env node
// The demo app: a "pod" for k8s-router's demo, not part of the router. Every HTTP request
// gets a one-line JSON description of itself and of the pod that answered; every
// WebSocket connection gets a greeting naming the pod, then each message echoed back.
//
// Configured as Kubernetes' downward API would configure it:
//   POD_NAME, POD_NAMESPACE   who it is (shown in every answer)
//   PORTS                     comma-separated ports to listen on (default 8080)
//   LISTEN_ADDRESS            address to listen on (default 0.0.0.0; the local demo gives 127.0.0.x)
//
// Started by `k8s-router demo` over an IPC channel, it reports when it listens (or why it
// cannot) and exits as soon as that channel closes, so it never outlives the demo.

import http from 'node:http';
import { WebSocketServer } from 'ws';

const pod = process.env.POD_NAME ?? 'demo-app';
const namespace = process.env.POD_NAMESPACE ?? 'default';
const address = process.env.LISTEN_ADDRESS ?? '0.0.0.0';
const ports = (process.env.PORTS ?? '8080').split(',').filter(Boolean).map(Number);

/** Tells the demo (over IPC), which then stops us if we failed, or the terminal. */
function report(message) {
  if (process.send) return process.send(message);
  if (message.type === 'error') {
    console.error(`${pod}: cannot listen on ${message.address}:${message.port}: ${message.code}`);
    process.exit(1);
  }
  console.error(`${pod} (${namespace}) listens on ${address}:${ports.join(',')}`);
}

function describe(req, port) {
  return { pod, namespace, port, method: req.method, uri: req.url, headers: req.headers };
}

function serve(port) {
  const server = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'Content-Type': 'application/json', 'X-Pod': pod });
      res.end(`${JSON.stringify(describe(req, port))}\n`);
    });
  });
  const sockets = new WebSocketServer({ server });
  // It repeats the server's errors; a failure to listen is reported below.
  sockets.on('error', () => {});
  sockets.on('connection', (socket, req) => {
    socket.send(JSON.stringify({ pod, namespace, port, uri: req.url, websocket: 'connected, echoing' }));
    socket.on('message', (data, isBinary) => socket.send(data, { binary: isBinary }));
  });
  return new Promise((resolve, reject) => {
    server.once('error', (err) => reject(Object.assign(err, { port })));
    server.listen(port, address, () => resolve(server));
  });
}

process.on('SIGTERM', () => process.exit(0));
if (process.send) {
  process.on('disconnect', () => process.exit(0));
  // Ctrl-C in the demo's terminal reaches us too; the demo stops us in its own time.
  process.on('SIGINT', () => {});
} else {
  process.on('SIGINT', () => process.exit(0));
}

Promise.all(ports.map(serve)).then(
  () => report({ type: 'listening', pid: process.pid }),
  (err) => report({ type: 'error', code: err.code ?? 'ERROR', message: err.message, address, port: err.port }),
);
