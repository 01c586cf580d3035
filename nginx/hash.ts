// Names and sizes that follow from nginx internals.

/** 32-bit FNV-1a of the UTF-8 bytes of `text`, as the seed named its upstreams. */
export function fnv1a32(text: string): number {
  let hash = 0x811c9dc5;
  // Hosts and paths are ASCII, where UTF-8 bytes are the char codes: no Buffer per name.
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code >= 0x80) return fnv1a32Utf8(text);
    hash ^= code;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

function fnv1a32Utf8(text: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(text, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

const POINTER = 8; // sizeof(void *) on the 64-bit builds we support
const CACHE_LINE = 64;
const TWO_32 = 2 ** 32;

function align(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** NGX_HASH_ELT_SIZE: the bytes one name takes in a bucket. */
function elementSize(name: string): number {
  return POINTER + align(name.length + 2, POINTER);
}

/**
 * ngx_hash_key over the lower-cased name, in nginx's unsigned 64-bit arithmetic, into its
 * high and low 32-bit halves (plain numbers: BigInt made sizing many names far too slow),
 * kept signed so that V8 holds them as small integers.
 */
function hashKeyInto(name: string, facts: ServerNameFacts): ServerNameFacts {
  let hi = 0;
  let lo = 0;
  const lower = name.toLowerCase();
  for (let i = 0; i < lower.length; i++) {
    // Latin-1 encoding keeps the low byte of each char code.
    const byte = lower.charCodeAt(i) & 0xff;
    // key = key * 31 + byte (mod 2^64), carried from the low half into the high half;
    // lo * 31 + byte stays below 2^37, exact in a double, and >>> 0 takes it mod 2^32.
    const low = lo * 31 + byte;
    const carry = (low - (low >>> 0)) / TWO_32;
    lo = low >>> 0;
    hi = (Math.imul(hi, 31) + carry) >>> 0;
  }
  facts.hi = hi | 0;
  facts.lo = lo | 0;
  return facts;
}

/** (hi * 2^32 + lo) mod size; exact while size * size stays below 2^53 (size < 2^26). */
function bucketOf({ hi, lo }: ServerNameFacts, size: number): number {
  return (((((hi >>> 0) % size) * (TWO_32 % size)) % size) + ((lo >>> 0) % size)) % size;
}

/** The bucket nginx puts `name` in, in a server names hash of `size` buckets. */
export function nginxHashBucket(name: string, size: number): number {
  return bucketOf(serverNameFacts(name), size);
}

export interface ServerNamesHashSizes {
  maxSize: number;
  bucketSize: number;
}

export const DEFAULT_SERVER_NAMES_HASH: ServerNamesHashSizes = { maxSize: 512, bucketSize: 64 };

/** Above this many names, buckets grow and the table is sized for nginx's shortcut. */
const MANY_NAMES = 512;

/**
 * server_names_hash_max_size and _bucket_size that let nginx build its hash of these
 * names. The seed used fixed 512/64, which breaks nginx for a long name or for many
 * names; we keep those values whenever they work, so small configs match the seed.
 *
 * A bucket holds at least two of the longest names. nginx looks for the smallest table
 * in which no bucket overflows by trying sizes one by one, on every reload; we run the
 * same test, so nginx is sure to find a size. For many names that search is quadratic,
 * so there buckets hold about eight average names and max_size is chosen above 10000
 * and below 100 per name, where nginx starts its search at max_size - 1000: the table
 * is then about twice the number of names, found at once by us and by nginx.
 */
export function serverNamesHashSizes(names: readonly string[]): ServerNamesHashSizes {
  return hashSizesOf(names.map(serverNameFacts));
}

/**
 * What sizing needs of one name: its size in a bucket and its ngx_hash_key, as signed
 * 32-bit halves (so that V8 keeps them in the object, unboxed); nginx/incremental-render.ts
 * keeps these per host.
 */
export interface ServerNameFacts {
  size: number;
  hi: number;
  lo: number;
}

export function serverNameFacts(name: string): ServerNameFacts {
  return hashKeyInto(name, { size: elementSize(name), hi: 0, lo: 0 });
}

/** serverNamesHashSizes of the names these facts are of. */
export function hashSizesOf(names: readonly ServerNameFacts[]): ServerNamesHashSizes {
  if (names.length === 0) return DEFAULT_SERVER_NAMES_HASH;
  const sizes = names.map((n) => n.size);
  const longest = Math.max(...sizes);
  const average = sizes.reduce((a, b) => a + b, 0) / sizes.length;
  const many = names.length > MANY_NAMES;
  const wanted = Math.max(2 * longest, many ? 8 * average : 0) + POINTER;
  let bucketSize = DEFAULT_SERVER_NAMES_HASH.bucketSize;
  while (bucketSize < wanted) bucketSize *= 2;
  bucketSize = align(bucketSize, CACHE_LINE);

  const capacity = bucketSize - POINTER;
  let used = new Float64Array(Math.max(64, names.length));
  /** ngx_hash_init's test: no bucket of a table of this size overflows. */
  const fits = (size: number): boolean => {
    if (size > used.length) used = new Float64Array(2 * size);
    used.fill(0, 0, size);
    for (let i = 0; i < names.length; i++) {
      const bucket = bucketOf(names[i] as ServerNameFacts, size);
      const total = (used[bucket] as number) + (sizes[i] as number);
      if (total > capacity) return false;
      used[bucket] = total;
    }
    return true;
  };

  let size = many
    ? Math.max(10_001, 2 * names.length)
    : Math.max(1, Math.floor(names.length / Math.floor(capacity / (2 * POINTER))));
  while (!fits(size)) size++;
  return { maxSize: Math.max(DEFAULT_SERVER_NAMES_HASH.maxSize, size), bucketSize };
}
