import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  canSearch,
  directoryChain,
  planWorkerAccess,
  workerIdentityFrom,
  type DirectoryFacts,
} from '../nginx/worker-user.js';

// As root, nginx's workers run as nobody: the router names that user and its group for
// nginx, and makes sure the workers can reach their temporary directory.

const PASSWD = 'root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n';
const GROUP = 'root:x:0:\nnogroup:x:65534:\n';
const nobody = { uid: 65534, gid: 65534 };

describe("the workers' identity", () => {
  it("is nobody with its primary group, by name, as nginx's user directive takes them", () => {
    assert.deepEqual(workerIdentityFrom(PASSWD, GROUP), { user: 'nobody', group: 'nogroup', uid: 65534, gid: 65534 });
  });

  it('says what is missing when the accounts do not have it', () => {
    assert.match(workerIdentityFrom('root:x:0:0::/:/bin/sh\n', GROUP) as string, /no user nobody/);
    assert.match(workerIdentityFrom(PASSWD, 'root:x:0:\n') as string, /primary group 65534/);
  });
});

describe('the way to the temporary directory', () => {
  const dir = (path: string, mode: number, uid = 0, gid = 0): DirectoryFacts => ({ path, mode, uid, gid });

  it('follows owner, group and other bits in that order', () => {
    assert.equal(canSearch(dir('/a', 0o700, 65534), nobody), true);
    assert.equal(canSearch(dir('/a', 0o070, 65534), nobody), false);
    assert.equal(canSearch(dir('/a', 0o710, 0, 65534), nobody), true);
    assert.equal(canSearch(dir('/a', 0o701, 0, 65534), nobody), false);
    assert.equal(canSearch(dir('/a', 0o701), nobody), true);
  });

  it('lists every directory from the root', () => {
    assert.deepEqual(directoryChain('/tmp/p/temp'), ['/', '/tmp', '/tmp/p', '/tmp/p/temp']);
  });

  it('opens the prefix the router owns (search only) and names what above it shuts the workers out', () => {
    const chain = [dir('/', 0o755), dir('/root', 0o700), dir('/root/p', 0o700), dir('/root/p/temp', 0o755)];
    const plan = planWorkerAccess(chain, '/root/p', nobody);
    assert.deepEqual(
      plan.open.map((d) => d.path),
      ['/root/p'],
    );
    assert.deepEqual(
      plan.blocked.map((d) => d.path),
      ['/root'],
    );
  });

  it('needs nothing where the workers can pass already', () => {
    const chain = [dir('/', 0o755), dir('/tmp', 0o1777), dir('/tmp/p', 0o711), dir('/tmp/p/temp', 0o755)];
    assert.deepEqual(planWorkerAccess(chain, '/tmp/p', nobody), { open: [], blocked: [] });
  });
});
