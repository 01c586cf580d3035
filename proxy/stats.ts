// What the proxy has answered, as plain counters: one increment per request, read by the
// admin server's metrics at scrape time (nothing here allocates on the request path).

export interface ProxyStats {
  /** Requests by the class of the status the client got, and those closed without any answer (nginx's 444). */
  requests: { '1xx': number; '2xx': number; '3xx': number; '4xx': number; '5xx': number; dropped: number };
  /** Tries that failed on a pod (refused, reset, timed out), each counted, retried or not. */
  upstreamFailures: number;
}

export class ProxyCounters {
  private c1xx = 0;
  private c2xx = 0;
  private c3xx = 0;
  private c4xx = 0;
  private c5xx = 0;
  private cDropped = 0;
  private cUpstreamFailures = 0;

  /** The client gets `status` (its head is being written). */
  answered(status: number): void {
    if (status < 200) this.c1xx++;
    else if (status < 300) this.c2xx++;
    else if (status < 400) this.c3xx++;
    else if (status < 500) this.c4xx++;
    else this.c5xx++;
  }

  dropped(): void {
    this.cDropped++;
  }

  upstreamFailed(): void {
    this.cUpstreamFailures++;
  }

  snapshot(): ProxyStats {
    return {
      requests: {
        '1xx': this.c1xx,
        '2xx': this.c2xx,
        '3xx': this.c3xx,
        '4xx': this.c4xx,
        '5xx': this.c5xx,
        dropped: this.cDropped,
      },
      upstreamFailures: this.cUpstreamFailures,
    };
  }
}
