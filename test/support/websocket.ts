import WebSocket from 'ws';

// A WebSocket client for tests that talk through the router to the echo of support/pods.ts.

export function openWebSocket(port: number, host: string, path = '/chat'): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, { headers: { Host: host } });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** Sends `text` and resolves with the next message (the pod's echo, prefixed with its name). */
export function echo(ws: WebSocket, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const onClose = (): void => reject(new Error('the WebSocket closed before its answer'));
    ws.once('message', (data) => {
      ws.off('close', onClose);
      resolve((data as Buffer).toString());
    });
    ws.once('close', onClose);
    ws.send(text);
  });
}
