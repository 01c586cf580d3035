import { randomBytes } from 'node:crypto';
import type { RouteTable } from '../src/core/route-table.js';
import { piecesOf, withVersion, type ConfPieces, type PieceHashes } from './conf-pieces.js';
import type { TableDelivery } from './delivery.js';
import { NginxApplyError } from './load.js';
import type { NginxFiles } from './prefix-files.js';
import type { NginxRuntime } from './render.js';
import type { WorkerIdentity } from './worker-user.js';

// A config for nginx with a version that is a hash of the config itself, so that the same
// config gives the same version and an unchanged config is recognised without a reload.

export interface VersionedConfig {
  text: ConfPieces;
  version: string;
}

/** What a config is rendered with besides the table. */
export interface RenderInputs {
  delivery: TableDelivery;
  files: NginxFiles;
  workerIdentity: WorkerIdentity | null | undefined;
  statusPort: number;
  hashes: PieceHashes;
}

/** Marks where a render puts the version, replaced by the hash of the text around it. */
const VERSION_PLACEHOLDER = `v${randomBytes(12).toString('hex')}`;

/**
 * The delivery's config for `table`, versioned. The version goes where the render put a
 * placeholder (a random word nothing else in a config can contain); the pieces are hashed
 * as they are, only the one holding it is copied.
 */
export function renderVersioned(table: RouteTable, inputs: RenderInputs): VersionedConfig {
  const { delivery, files, workerIdentity, statusPort, hashes } = inputs;
  let draft: ConfPieces;
  try {
    const runtime: NginxRuntime = {
      pidFile: files.pid,
      errorLog: files.errorLog,
      accessLog: files.accessLog,
      tempDir: files.tempDir,
      ...(workerIdentity ? { workerUser: { user: workerIdentity.user, group: workerIdentity.group } } : {}),
      status: { port: statusPort, configVersion: VERSION_PLACEHOLDER },
    };
    draft = piecesOf(delivery.config(table, runtime));
  } catch (err) {
    throw new NginxApplyError('KR_NGINX_RENDER_FAILED', `cannot render nginx.conf: ${(err as Error).message}`);
  }
  const versioned = withVersion(draft, VERSION_PLACEHOLDER, hashes);
  if (versioned === null)
    throw new NginxApplyError('KR_NGINX_RENDER_FAILED', 'the rendered nginx.conf has no status server');
  return versioned;
}
