// nginx's consistent hash (`hash KEY consistent;`, ngx_http_upstream_hash_module.c in
// nginx 1.22.1), step by step and under the names nginx gives the steps, so that the
// in-process proxy picks the pod nginx picks for any client address, failed pods and
// retries included:
//
// - init_chash: each server gets 160 points (weight 1) on a ring of 32-bit values. The
//   points of a server come from the text of its `server` directive, split at the last
//   ":" followed only by digits into HOST and PORT (no port when there is none, as for
//   port 80): crc32(HOST "\0" PORT PREV_HASH), PREV_HASH being the previous point's value
//   as 4 little-endian bytes (0 for the first). The points are sorted by value, stably
//   (glibc's qsort is a merge sort), and of equal values only the first is kept.
// - init_chash_peer: a request starts at the first point whose value is at least
//   crc32(KEY) (past the last point, it wraps to the first).
// - get_chash_peer: at each point, the peers whose server text is the point's, and that
//   this request has not tried and that are not failed (fails >= max_fails within
//   fail_timeout), compete by smooth weighted round robin (current_weight, which they
//   share with round robin); the winner is taken and the walk stays on that point. When no
//   peer of a point can be taken, the walk moves to the next point, counting a try; after
//   20 such tries, in this call or the ones before it for the same request, nginx hands
//   the request to plain round robin (which skips tried and failed peers too). A retry
//   after a failure starts from the point it stayed on, whose peer is now tried.
//
// The per-request steps allocate nothing: the points are typed arrays, the key's crc32 is
// taken from its characters.

/** Points per unit of weight; every pod has weight 1. */
export const POINTS_PER_WEIGHT = 160;
/** Points the walk may pass without a usable peer before nginx falls back to round robin. */
export const MAX_CHASH_TRIES = 20;

const CRC32_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** ngx_crc32_init. */
const CRC32_INIT = 0xffffffff;

/** ngx_crc32_update with one byte. */
function crc32Update(crc: number, byte: number): number {
  return ((CRC32_TABLE[(crc ^ byte) & 0xff] as number) ^ (crc >>> 8)) >>> 0;
}

/** ngx_crc32_final. */
function crc32Final(crc: number): number {
  return (crc ^ 0xffffffff) >>> 0;
}

/** ngx_crc32_update with the bytes of `text` from `start` to `end` (UTF-8; addresses are ASCII). */
function crc32UpdateText(crc: number, text: string, start = 0, end = text.length): number {
  for (let i = start; i < end; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) {
      for (const byte of Buffer.from(text.slice(i, end), 'utf8')) crc = crc32Update(crc, byte);
      return crc;
    }
    crc = crc32Update(crc, code);
  }
  return crc;
}

/** ngx_crc32_long: the CRC-32 (IEEE 802.3) of a text's bytes. */
export function crc32Long(text: string): number {
  return crc32Final(crc32UpdateText(CRC32_INIT, text));
}

/** The ring of one upstream: `number` points, by value, each naming its server. */
export interface ChashPoints {
  /** Point values, ascending, without repeats. */
  readonly hash: Uint32Array;
  /** For each point, its server: an index into `servers`. */
  readonly server: Uint32Array;
  readonly number: number;
  /** The distinct server texts, in the order of the first peer of each. */
  readonly servers: readonly string[];
  /** For each server, the peers (indices, ascending) whose server text it is. */
  readonly peersOf: readonly (readonly number[])[];
}

/**
 * Where the port starts in a `server` text: after the last ":" that only digits follow,
 * or -1 when there is none (no port written, or an IPv6 address in brackets without one).
 */
function portStart(server: string): number {
  for (let j = server.length - 1; j >= 0; j--) {
    const c = server.charCodeAt(j);
    if (c === 0x3a) return j + 1;
    if (c < 0x30 || c > 0x39) return -1;
  }
  return -1;
}

/** ngx_http_upstream_init_chash: the points of peers whose `server` texts are `servers`, in upstream order. */
export function initChashPoints(servers: readonly string[]): ChashPoints {
  const distinct: string[] = [];
  const peersOf: number[][] = [];
  const serverOfPeer = servers.map((text, peer) => {
    let s = distinct.indexOf(text);
    if (s < 0) {
      s = distinct.push(text) - 1;
      peersOf.push([]);
    }
    (peersOf[s] as number[]).push(peer);
    return s;
  });

  const total = servers.length * POINTS_PER_WEIGHT;
  const values = new Uint32Array(total);
  const owners = new Uint32Array(total);
  let count = 0;
  servers.forEach((text, peer) => {
    const port = portStart(text);
    // "unix:" servers have no port either; pods are never unix sockets.
    let baseHash = crc32UpdateText(CRC32_INIT, text, 0, port < 0 ? text.length : port - 1);
    baseHash = crc32Update(baseHash, 0);
    if (port >= 0) baseHash = crc32UpdateText(baseHash, text, port);
    let prevHash = 0;
    for (let j = 0; j < POINTS_PER_WEIGHT; j++) {
      let hash = baseHash;
      for (let b = 0; b < 4; b++) hash = crc32Update(hash, (prevHash >>> (8 * b)) & 0xff);
      hash = crc32Final(hash);
      values[count] = hash;
      owners[count] = serverOfPeer[peer] as number;
      count++;
      prevHash = hash;
    }
  });

  // ngx_qsort by value; Array.prototype.sort is stable, as glibc's merge sort is.
  const order = Array.from({ length: count }, (_, i) => i).sort(
    (a, b) => (values[a] as number) - (values[b] as number),
  );
  const hash = new Uint32Array(count);
  const server = new Uint32Array(count);
  let number = 0;
  for (const i of order) {
    const value = values[i] as number;
    if (number > 0 && hash[number - 1] === value) continue;
    hash[number] = value;
    server[number] = owners[i] as number;
    number++;
  }
  return { hash: hash.subarray(0, number), server: server.subarray(0, number), number, servers: distinct, peersOf };
}

/** ngx_http_upstream_find_chash_point: the first point whose value is at least `hash` (`number` when none is). */
export function findChashPoint(points: ChashPoints, hash: number): number {
  const values = points.hash;
  let i = 0;
  let j = points.number;
  while (i < j) {
    const k = (i + j) >>> 1;
    const value = values[k] as number;
    if (hash > value) i = k + 1;
    else if (hash < value) j = k;
    else return k;
  }
  return i;
}

/** What the walk reads and changes of a peer: nginx's round-robin peer state, shared with round robin. */
export interface ChashPeer {
  currentWeight: number;
  effectiveWeight: number;
  fails: number;
  /** When the peer was last checked (failed, or taken after its fail_timeout), in ms. */
  checked: number;
}

/** One request's place on the ring (hp->hash, hp->tries), kept across its retries. */
export interface ChashWalk {
  /** The point the walk is on; grows past `number` and is read modulo it. */
  hash: number;
  /** Points passed without a usable peer. */
  tries: number;
}

export interface PeerRules {
  weight: number;
  maxFails: number;
  failTimeoutMs: number;
}

/** The walk's answer when nginx would hand the request to round robin. */
export const FALL_BACK_TO_ROUND_ROBIN = -1;

/**
 * ngx_http_upstream_get_chash_peer: the peer for the next try of the request whose walk is
 * `walk`, or FALL_BACK_TO_ROUND_ROBIN. `tried`: the peers this request tried.
 * Changes the peers' weights and the walk, as nginx does.
 */
export function getChashPeer(
  points: ChashPoints,
  peers: readonly ChashPeer[],
  tried: readonly number[],
  walk: ChashWalk,
  now: number,
  rules: PeerRules,
): number {
  if (walk.tries > MAX_CHASH_TRIES) return FALL_BACK_TO_ROUND_ROBIN;
  for (;;) {
    const candidates = points.peersOf[points.server[walk.hash % points.number] as number] as readonly number[];
    let best = -1;
    let total = 0;
    for (let c = 0; c < candidates.length; c++) {
      const i = candidates[c] as number;
      if (tried.includes(i)) continue;
      const peer = peers[i] as ChashPeer;
      if (peer.fails >= rules.maxFails && now - peer.checked <= rules.failTimeoutMs) continue;
      peer.currentWeight += peer.effectiveWeight;
      total += peer.effectiveWeight;
      if (peer.effectiveWeight < rules.weight) peer.effectiveWeight++;
      if (best < 0 || peer.currentWeight > (peers[best] as ChashPeer).currentWeight) best = i;
    }
    if (best >= 0) {
      const chosen = peers[best] as ChashPeer;
      chosen.currentWeight -= total;
      if (now - chosen.checked > rules.failTimeoutMs) chosen.checked = now;
      return best;
    }
    walk.hash++;
    walk.tries++;
    if (walk.tries > MAX_CHASH_TRIES) return FALL_BACK_TO_ROUND_ROBIN;
  }
}
