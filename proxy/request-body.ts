import type { IncomingMessage } from 'node:http';

// The client's body streams to the pod as it arrives. nginx may still send a request to
// another pod after the first one failed, so until the pod starts answering a copy is
// kept; the body size limit (client_max_body_size, as nginx) bounds that copy.

/** Where one try's copy of the body goes: the request to one pod. */
export interface BodySink {
  write(chunk: Buffer): boolean;
  end(): void;
  once(event: 'drain', listener: () => void): unknown;
  readonly destroyed: boolean;
}

export class ReplayableBody {
  private readonly chunks: Buffer[] = [];
  private received = 0;
  private ended = false;
  private keeping = true;
  private reading = false;
  private sink: BodySink | null = null;
  private tooLarge = false;

  constructor(
    private readonly req: IncomingMessage,
    private readonly limit: number,
    private readonly onTooLarge: () => void,
  ) {}

  /** Sends the body (what arrived so far, then the rest) to `sink`, the request to one pod. */
  attach(sink: BodySink): void {
    this.sink = sink;
    for (const chunk of this.chunks) sink.write(chunk);
    if (this.ended) {
      sink.end();
      return;
    }
    if (!this.reading) this.startReading();
    this.req.resume();
  }

  /** The pod answered: no other pod will need the body. */
  release(): void {
    this.keeping = false;
    this.chunks.length = 0;
  }

  private startReading(): void {
    this.reading = true;
    this.req.on('data', (chunk: Buffer) => {
      if (this.tooLarge) return;
      this.received += chunk.length;
      if (this.received > this.limit) {
        this.tooLarge = true;
        this.onTooLarge();
        return;
      }
      if (this.keeping) this.chunks.push(chunk);
      const sink = this.sink;
      if (sink !== null && !sink.destroyed && !sink.write(chunk)) {
        this.req.pause();
        sink.once('drain', () => {
          if (this.sink === sink) this.req.resume();
        });
      }
    });
    this.req.on('end', () => {
      this.ended = true;
      if (!this.tooLarge && this.sink !== null && !this.sink.destroyed) this.sink.end();
    });
  }
}
