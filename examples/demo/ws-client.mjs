#!/usr/bin/env node
// A tiny WebSocket client for the demo (Node 20 has no global WebSocket, and curl cannot
// hold a WebSocket conversation): connects, sends one message, prints what comes back
// until its message is echoed, then closes.
//
//   node examples/demo/ws-client.mjs ws://127.0.0.1:8080/ws --host shop.k8s.local [--header 'Name: value'] [message]

import { parseArgs } from 'node:util';
import WebSocket from 'ws';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { host: { type: 'string' }, header: { type: 'string', multiple: true } },
});
const [url, message = 'hello from ws-client'] = positionals;
if (url === undefined) {
  console.error('usage: node ws-client.mjs ws://ADDRESS:PORT/PATH [--host HOST] [--header "Name: value"]... [message]');
  process.exit(2);
}

const headers = {};
if (values.host) headers.Host = values.host;
for (const line of values.header ?? []) {
  const colon = line.indexOf(':');
  if (colon > 0) headers[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
}

const socket = new WebSocket(url, { headers });
const timer = setTimeout(() => fail('no echo within 5 s'), 5_000);

function fail(why) {
  console.error(`ws-client: ${why}`);
  process.exit(1);
}

socket.on('unexpected-response', (_req, res) =>
  fail(`the server answered HTTP ${res.statusCode} instead of switching to WebSocket`),
);
socket.on('error', (err) => fail(err.message));
socket.on('close', () => fail('the connection closed before the echo'));
socket.on('open', () => {
  console.log(`> ${message}`);
  socket.send(message);
});
socket.on('message', (data) => {
  const text = data.toString();
  console.log(`< ${text}`);
  if (text === message) {
    clearTimeout(timer);
    socket.removeAllListeners('close');
    socket.close();
  }
});
