import WebSocket from 'ws';

// A minimal Chrome DevTools Protocol client for a Node process started with
// --inspect=127.0.0.1:0: enough to run a full garbage collection and read the heap, so
// memory is measured the same way every time, without a hook in the product.

export interface Inspector {
  collectGarbage(): Promise<void>;
  /** Bytes of the JS heap in use and allocated. */
  heapUsage(): Promise<{ usedSize: number; totalSize: number }>;
  close(): void;
}

/** The inspector URL a Node process prints on standard error ("Debugger listening on ws://..."). */
export function inspectorUrl(lines: ReadonlyArray<Record<string, unknown>>): string | null {
  for (const line of lines) {
    const match = /Debugger listening on (ws:\/\/\S+)/.exec(typeof line.text === 'string' ? line.text : '');
    if (match) return match[1] as string;
  }
  return null;
}

export async function connectInspector(url: string): Promise<Inspector> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let seq = 0;
  const waiting = new Map<number, (result: unknown) => void>();
  ws.on('message', (data) => {
    const message = JSON.parse((data as Buffer).toString()) as { id?: number; result?: unknown };
    if (message.id !== undefined) waiting.get(message.id)?.(message.result);
  });
  const call = (method: string): Promise<unknown> =>
    new Promise((resolve) => {
      const id = ++seq;
      waiting.set(id, resolve);
      ws.send(JSON.stringify({ id, method }));
    });
  return {
    async collectGarbage() {
      await call('HeapProfiler.collectGarbage');
    },
    heapUsage: async () => (await call('Runtime.getHeapUsage')) as { usedSize: number; totalSize: number },
    close: () => ws.close(),
  };
}
