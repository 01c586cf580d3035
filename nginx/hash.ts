// Names and sizes that follow from nginx internals.

/** 32-bit FNV-1a of the UTF-8 bytes of `text`, as the seed named its upstreams. */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

const POINTER = 8; // sizeof(void *) on the 64-bit builds we support
const CACHE_LINE = 64;
const MASK64 = (1n << 64n) - 1n;

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** NGX_HASH_ELT_SIZE: the bytes one name takes in a bucket. */
function elementSize(name: string): number {
  return POINTER + align(name.length + 2, POINTER);
}

/** ngx_hash_key over the lower-cased name, in nginx's unsigned 64-bit arithmetic. */
function nginxHashKey(name: string): bigint {
  let key = 0n;
  for (const byte of Buffer.from(name.toLowerCase(), 'latin1')) key = (key * 31n + BigInt(byte)) & MASK64;
  return key;
}

export interface ServerNamesHashSizes {
  maxSize: number;
  bucketSize: number;
}

export const DEFAULT_SERVER_NAMES_HASH: ServerNamesHashSizes = { maxSize: 512, bucketSize: 64 };

/**
 * server_names_hash_max_size and _bucket_size that let nginx build its hash of these
 * names. The seed used fixed 512/64, which breaks nginx for a long name or for many
 * names; we keep those values whenever they work, so small configs match the seed.
 *
 * The bucket holds at least two of the longest names. The max size is found by running
 * the same search nginx runs in ngx_hash_init (first table size where no bucket
 * overflows), so nginx is sure to find that size too.
 */
export function serverNamesHashSizes(names: readonly string[]): ServerNamesHashSizes {
  if (names.length === 0) return DEFAULT_SERVER_NAMES_HASH;
  const longest = Math.max(...names.map(elementSize));
  let bucketSize = DEFAULT_SERVER_NAMES_HASH.bucketSize;
  while (bucketSize < 2 * longest + POINTER) bucketSize *= 2;
  bucketSize = align(bucketSize, CACHE_LINE);

  const keys = names.map(nginxHashKey);
  const sizes = names.map(elementSize);
  const capacity = bucketSize - POINTER;
  let size = Math.max(1, Math.floor(names.length / Math.floor(capacity / (2 * POINTER))));
  for (;; size++) {
    const used = new Map<number, number>();
    const big = BigInt(size);
    const fits = keys.every((key, i) => {
      const bucket = Number(key % big);
      const total = (used.get(bucket) ?? 0) + (sizes[i] as number);
      used.set(bucket, total);
      return total <= capacity;
    });
    if (fits) break;
  }
  return { maxSize: Math.max(DEFAULT_SERVER_NAMES_HASH.maxSize, size), bucketSize };
}
