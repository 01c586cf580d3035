import type { IncomingMessage } from 'node:http';

// The client's body streams to the pod as it arrives. nginx may still send a request to
// another pod after the first one failed, so until the pod starts answering a copy is
// kept, up to REPLAY_LIMIT: nginx reads the whole body (to disk if need be) before it
// contacts a pod, and can always send it again; a body streamed through is kept only
// while it is small, so that a body of any size passes in bounded memory.

/** The most of a body kept for another try: the size nginx's default client_max_body_size allows. */
export const REPLAY_LIMIT = 1024 * 1024;

/** Where one try's copy of the body goes: the request to one pod. */
export interface BodySink {
  write(chunk: Buffer): boolean;
  end(): void;
  once(event: 'drain', listener: () => void): unknown;
  readonly destroyed: boolean;
}

export interface BodyLimits {
  /** client_max_body_size: more is refused (onTooLarge); 0, no limit. */
  maxBytes: number;
  /** client_body_timeout: the longest pause between two reads of the body. */
  timeoutMs: number;
}

export class ReplayableBody {
  private readonly chunks: Buffer[] = [];
  private kept = 0;
  private received = 0;
  private ended = false;
  private keeping = true;
  private reading = false;
  private sink: BodySink | null = null;
  private tooLarge = false;
  /** Everything received so far is in `chunks`: another try can send the body whole. */
  private whole = true;

  constructor(
    private readonly req: IncomingMessage,
    private readonly limits: BodyLimits,
    private readonly onTooLarge: () => void,
  ) {}

  /** Whether another pod can be sent the body: all of it is kept, or none was read yet. */
  get replayable(): boolean {
    return this.whole;
  }

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
    const { req } = this;
    // nginx's client_body_timeout: the socket's idle timer, which Node restarts on every
    // read, ends the connection (and so the request) when the client pauses too long.
    req.socket.setTimeout(this.limits.timeoutMs);
    req.on('data', (chunk: Buffer) => {
      if (this.tooLarge) return;
      this.received += chunk.length;
      if (this.limits.maxBytes > 0 && this.received > this.limits.maxBytes) {
        this.tooLarge = true;
        this.onTooLarge();
        return;
      }
      if (this.keeping) this.keep(chunk);
      const sink = this.sink;
      if (sink !== null && !sink.destroyed && !sink.write(chunk)) {
        req.pause();
        sink.once('drain', () => {
          if (this.sink === sink) req.resume();
        });
      }
    });
    req.on('end', () => {
      this.ended = true;
      // Unless Node has since set its keep-alive timer (the answer came first).
      if (req.socket?.timeout === this.limits.timeoutMs) req.socket.setTimeout(0);
      if (!this.tooLarge && this.sink !== null && !this.sink.destroyed) this.sink.end();
    });
  }

  private keep(chunk: Buffer): void {
    if (this.kept + chunk.length <= REPLAY_LIMIT) {
      this.chunks.push(chunk);
      this.kept += chunk.length;
      return;
    }
    this.keeping = false;
    this.whole = false;
    this.chunks.length = 0;
  }
}
