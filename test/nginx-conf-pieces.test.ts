import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, open, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { PieceHashes, piecesOf, textOf, withVersion, writePieces } from '../nginx/conf-pieces.js';
import { writeSynced } from '../nginx/files.js';

// A config handed to the nginx manager as pieces (the incremental renderer's chunks) is
// versioned and written without being joined into one string.

const dir = await mkdtemp(join(tmpdir(), 'k8s-router-pieces-'));
after(() => rm(dir, { recursive: true, force: true }));

const sha = (data: Uint8Array | Buffer): Buffer => createHash('sha256').update(data).digest();

describe('config pieces', () => {
  it('are versioned by the hash of their hashes, in order', () => {
    const pieces = piecesOf('head\n').concat([Buffer.from('block a\n'), Buffer.from('block b\n')]);
    const expected = createHash('sha256')
      .update(Buffer.concat(pieces.map(sha)))
      .digest('hex')
      .slice(0, 16);
    const hashes = new PieceHashes();
    assert.equal(hashes.version(pieces), expected);
    assert.equal(hashes.version(pieces), expected, 'again, from the hashes kept');
    assert.notEqual(
      hashes.version([pieces[0] as Uint8Array, pieces[2] as Uint8Array, pieces[1] as Uint8Array]),
      expected,
      'the order counts',
    );
    assert.notEqual(
      hashes.version([...pieces.slice(0, 2), Buffer.from('block c\n')]),
      expected,
      'a changed piece changes the version',
    );
  });

  it('get the version where the placeholder is; the other pieces stay the same objects', () => {
    const draft = [
      Buffer.from('events {}\n'),
      Buffer.from('return 200 "vPLACEHOLDER $pid";\n'),
      Buffer.from('server { }\n'),
    ];
    const versioned = withVersion(draft, 'vPLACEHOLDER', new PieceHashes());
    assert.ok(versioned !== null);
    assert.match(versioned.version, /^[0-9a-f]{16}$/);
    assert.equal(textOf(versioned.text), `events {}\nreturn 200 "${versioned.version} $pid";\nserver { }\n`);
    assert.equal(versioned.text[0], draft[0]);
    assert.equal(versioned.text[2], draft[2]);
    assert.equal(draft[1]?.toString(), 'return 200 "vPLACEHOLDER $pid";\n', 'the draft is left as it was');
    assert.equal(withVersion([Buffer.from('no status server')], 'vPLACEHOLDER', new PieceHashes()), null);
  });

  it('are written whole, more of them than one writev takes, empty and multi-byte ones included', async () => {
    const pieces = Array.from({ length: 3_000 }, (_, i) => Buffer.from(i % 7 === 0 ? '' : `block ${i} é ✓\n`));
    const file = join(dir, 'many.conf');
    const handle = await open(file, 'w');
    try {
      await writePieces(handle, pieces);
    } finally {
      await handle.close();
    }
    assert.deepEqual(await readFile(file), Buffer.concat(pieces));
  });

  it('go to disk through writeSynced, readable by the owner only', async () => {
    const file = join(dir, 'nginx.conf');
    await writeSynced(file, [Buffer.from('a\n'), Buffer.from('b\n')]);
    assert.equal(await readFile(file, 'utf8'), 'a\nb\n');
    assert.equal((await stat(file)).mode & 0o777, 0o600);
  });
});
