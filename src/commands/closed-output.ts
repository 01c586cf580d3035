// A reader that stops early (`k8s-router render ... | head -1`) closes the pipe, and the
// next write to it fails with EPIPE. Node ignores SIGPIPE, so the failure arrives as an
// 'error' event on the stream, which would end the process with a stack trace. Unix tools
// stop writing instead; so does the CLI: what it would still print is dropped, and the
// command ends as it would have (status 0 when nothing else went wrong).

/** Drops what is written to `stream` once its reader has gone; any other error is thrown as before. */
export function dropOutputOnceClosed(stream: NodeJS.WritableStream): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') return;
    throw err;
  });
}
