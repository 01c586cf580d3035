import { createHash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';

// An nginx.conf as pieces of UTF-8 text, read one after the other: what the incremental
// renderer hands out (the chunks of blocks it keeps), so that the megabytes of a big
// config are never copied into one string to be hashed and written. The manager hashes
// each piece once, however many configs it appears in, and writes them all with writev.

/** The text of a config, in order. A piece handed out is never changed afterwards. */
export type ConfPieces = readonly Uint8Array[];

export function piecesOf(text: string | ConfPieces): ConfPieces {
  return typeof text === 'string' ? [Buffer.from(text, 'utf8')] : text;
}

export function byteLengthOf(pieces: ConfPieces): number {
  let total = 0;
  for (const piece of pieces) total += piece.byteLength;
  return total;
}

/** The whole text, as one string (for a log line or a test; never on the path of an apply). */
export function textOf(pieces: ConfPieces): string {
  return Buffer.concat(pieces).toString('utf8');
}

/**
 * A version for configs: SHA-256 over the SHA-256 of each piece, each piece hashed once
 * (remembered by object, as the renderer hands unchanged pieces out again). The same
 * pieces give the same version; the same text cut into other pieces may give another,
 * which costs one needless reload, never a missed one.
 */
export class PieceHashes {
  private readonly digests = new WeakMap<Uint8Array, Buffer>();

  private digestOf(piece: Uint8Array): Buffer {
    let digest = this.digests.get(piece);
    if (digest === undefined) {
      digest = createHash('sha256').update(piece).digest();
      this.digests.set(piece, digest);
    }
    return digest;
  }

  /** 16 hex digits. */
  version(pieces: ConfPieces): string {
    const all = createHash('sha256');
    for (const piece of pieces) all.update(this.digestOf(piece));
    return all.digest('hex').slice(0, 16);
  }
}

/**
 * The config with its version written where `placeholder` (a plain ASCII word) is, and
 * that version, a hash of the config around it; null when the placeholder is missing.
 * Only the piece that holds the placeholder is copied.
 */
export function withVersion(
  draft: ConfPieces,
  placeholder: string,
  hashes: PieceHashes,
): { text: ConfPieces; version: string } | null {
  for (let i = 0; i < draft.length; i++) {
    const piece = draft[i] as Uint8Array;
    const at = Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength).indexOf(placeholder, 0, 'latin1');
    if (at < 0) continue;
    const version = hashes.version(draft);
    const versioned = Buffer.concat([
      piece.subarray(0, at),
      Buffer.from(version, 'latin1'),
      piece.subarray(at + placeholder.length),
    ]);
    return { text: draft.map((p, j) => (j === i ? versioned : p)), version };
  }
  return null;
}

/** Writes every piece at the file's position, with as few system calls as writev takes. */
export async function writePieces(file: FileHandle, pieces: ConfPieces): Promise<void> {
  let pending = pieces.filter((p) => p.byteLength > 0);
  while (pending.length > 0) {
    const { bytesWritten } = await file.writev(pending);
    if (bytesWritten === 0) throw new Error('writing the config made no progress');
    // A short write (rare, for regular files) continues where it stopped.
    let left = bytesWritten;
    let i = 0;
    while (i < pending.length && left >= (pending[i] as Uint8Array).byteLength)
      left -= (pending[i++] as Uint8Array).byteLength;
    pending = pending.slice(i);
    if (left > 0) pending[0] = (pending[0] as Uint8Array).subarray(left);
  }
}
