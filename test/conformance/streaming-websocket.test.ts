import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { startPod, STREAM_FIRST_CHUNK, STREAM_REST, type TestPod } from '../support/pods.js';
import { API_KEY_HEADER, assertThreeWay, Differential, MODES, tableOf } from './harness.js';

// WebSocket echo and response streaming through the three data planes (documented nginx,
// dynamic nginx, the proxy), in both modes (documented config, upstream keep-alive): the
// same pods answer the same messages, and the first chunk of a streamed response reaches
// the client while the pod is still holding the rest back.

const KEY = 'd3Mta2V5';
const diffs: Differential[] = [];
let pods: TestPod[] = [];
let streamer: TestPod;
let table: ReturnType<typeof tableOf>;

before(async () => {
  pods = [await startPod('ws-0', '127.0.0.71'), await startPod('ws-1', '127.0.0.72')];
  streamer = await startPod('stream-0', '127.0.0.73', { behaviour: 'stream' });
  table = tableOf([
    { host: 'ws.test', path: '/', pods },
    { host: 'ws.test', path: '/locked', pods, apiKey: KEY },
    { host: 'ws.test', path: '/stream', pods: [streamer] },
  ]);
  for (const mode of MODES) diffs.push(await Differential.start(table, { upstreamKeepalive: mode.upstreamKeepalive }));
});

after(async () => {
  await Promise.all(diffs.map((d) => d.close()));
  await Promise.all([...pods, streamer].map((p) => p.close()));
});

/** One WebSocket conversation: the echo of each message, or the refusal status. */
function converse(
  port: number,
  path: string,
  messages: string[],
  headers: Record<string, string> = {},
): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers: { Host: 'ws.test', ...headers } });
    const replies: string[] = [];
    const timer = setTimeout(() => {
      ws.terminate();
      reject(new Error(`no echo within 5 s; got ${JSON.stringify(replies)}`));
    }, 5_000);
    ws.on('unexpected-response', (_req, res) => {
      clearTimeout(timer);
      res.resume();
      ws.terminate();
      resolve([`refused ${res.statusCode}`]);
    });
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    ws.on('open', () => {
      for (const m of messages) ws.send(m);
    });
    ws.on('message', (data) => {
      replies.push((data as Buffer).toString());
      if (replies.length === messages.length) {
        clearTimeout(timer);
        ws.close();
        resolve(replies);
      }
    });
  });
}

MODES.forEach((mode, m) => {
  test(`WebSocket: echo through all three, round robin per connection, key checked${mode.label}`, async () => {
    const diff = diffs[m] as Differential;
    const conversations = async (port: number): Promise<string[][]> => [
      await converse(port, '/chat', ['hello', 'again']),
      await converse(port, '/chat?room=1', ['second']),
      await converse(port, '/locked', ['no key']),
      await converse(port, '/locked', ['with key'], { [API_KEY_HEADER]: KEY }),
    ];
    await diff.nginx.applyFresh(table);
    const nginx = await conversations(diff.nginx.port);
    await diff.dynamic.applyFresh(table);
    const dynamic = await conversations(diff.dynamic.port);
    const proxy = await diff.freshProxy(table);
    try {
      assertThreeWay('websocket', { nginx, dynamic, proxy: await conversations(proxy.port) });
      assert.deepStrictEqual(nginx, [
        ['ws-0:hello', 'ws-0:again'],
        ['ws-1:second'],
        ['refused 403'],
        ['ws-0:with key'],
      ]);
    } finally {
      await proxy.close();
    }
  });
});

/** Reads a streamed response; records whether the first chunk came while the pod held the rest. */
function readStream(port: number): Promise<{ firstChunk: string; podWasHolding: boolean; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: '/stream', headers: { Host: 'ws.test' }, agent: false },
      (res) => {
        let body = '';
        let firstChunk: string | null = null;
        let podWasHolding = false;
        res.setEncoding('latin1');
        res.on('data', (chunk: string) => {
          body += chunk;
          if (firstChunk === null) {
            firstChunk = chunk;
            podWasHolding = streamer.streamsWaiting === 1;
            streamer.releaseStreams();
          }
        });
        res.on('end', () => resolve({ firstChunk: firstChunk ?? '', podWasHolding, body }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
  });
}

MODES.forEach((mode, m) => {
  test(`streaming: the first chunk reaches the client before the pod finishes, all three${mode.label}`, async () => {
    const diff = diffs[m] as Differential;
    await diff.nginx.applyFresh(table);
    const nginx = await readStream(diff.nginx.port);
    await diff.dynamic.applyFresh(table);
    const dynamic = await readStream(diff.dynamic.port);
    const proxy = await diff.freshProxy(table);
    try {
      assertThreeWay('streaming', { nginx, dynamic, proxy: await readStream(proxy.port) });
      const expected = { firstChunk: STREAM_FIRST_CHUNK, podWasHolding: true, body: STREAM_FIRST_CHUNK + STREAM_REST };
      assert.deepStrictEqual(nginx, expected);
    } finally {
      await proxy.close();
    }
  });
});
