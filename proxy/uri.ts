// The path nginx matches `location` prefixes against: the request path percent-decoded,
// with "." and ".." segments resolved and runs of "/" merged (merge_slashes on). The
// request still reaches the pod with the URI the client sent; this form only chooses
// the route. The result keeps one character per byte (latin1), as nginx compares bytes.

type State = 'usual' | 'slash' | 'dot' | 'dotDot';

const HEX = /^[0-9A-Fa-f]{2}$/;

/**
 * The path part of `target` when it is already normalized: no escape, no "//" and no
 * segment starting with "." (so no dot segment). Most requests are; null otherwise.
 */
function alreadyNormal(target: string): string | null {
  if (target.charCodeAt(0) !== 0x2f /* / */) return null;
  let previous = 0x2f;
  for (let i = 1; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c === 0x3f /* ? */ || c === 0x23 /* # */) return target.slice(0, i);
    // A percent sign, or a slash followed by a slash or a dot.
    if (c === 0x25 || (previous === 0x2f && (c === 0x2f || c === 0x2e))) return null;
    previous = c;
  }
  return target;
}

/** The normalized path of an origin-form request-target, or null when nginx answers 400. */
export function normalizePath(target: string): string | null {
  return alreadyNormal(target) ?? resolvePath(target);
}

/** normalizePath by nginx's rules, character by character (exported for the test that compares both). */
export function resolvePath(target: string): string | null {
  if (!target.startsWith('/')) return null;
  const out: string[] = [];
  let state: State = 'usual';

  /** Drops the segment before a ".." (out ends with "/.."); false when that climbs above the root. */
  const climb = (): boolean => {
    out.length -= 3;
    let i = out.length - 1;
    while (i >= 0 && out[i] !== '/') i--;
    if (i < 0) return false;
    out.length = i + 1;
    return true;
  };

  /** Finishes at the end of the path ("?", "#" or end of input). */
  const finish = (): string | null => {
    if (state === 'dot') out.length -= 1;
    else if (state === 'dotDot' && !climb()) return null;
    return out.join('');
  };

  /** One path character, raw or decoded, in the current state; false means 400. */
  const step = (c: string): boolean => {
    switch (state) {
      case 'usual':
        if (c === '/') state = 'slash';
        out.push(c);
        return true;
      case 'slash':
        if (c === '/') return true; // merged
        state = c === '.' ? 'dot' : 'usual';
        out.push(c);
        return true;
      case 'dot':
        if (c === '/') {
          out.length -= 1; // "/./" is "/"
          state = 'slash';
          return true;
        }
        state = c === '.' ? 'dotDot' : 'usual';
        out.push(c);
        return true;
      case 'dotDot':
        if (c === '/') {
          if (!climb()) return false;
          state = 'slash';
          return true;
        }
        state = 'usual';
        out.push(c);
        return true;
    }
  };

  for (let i = 0; i < target.length; i++) {
    const c = target[i] as string;
    if (c === '?' || c === '#') return finish();
    if (c !== '%') {
      if (!step(c)) return null;
      continue;
    }
    const hex = target.slice(i + 1, i + 3);
    if (!HEX.test(hex)) return null;
    i += 2;
    const byte = Number.parseInt(hex, 16);
    if (byte === 0) return null;
    const decoded = String.fromCharCode(byte);
    // nginx feeds a decoded character back through the path rules (so %2F is a "/" and
    // %2E a "."), except these three, which it keeps as plain characters: decoding must
    // not start another escape, a query or a fragment.
    if (decoded === '%' || decoded === '?' || decoded === '#') {
      out.push(decoded);
      state = 'usual';
    } else if (!step(decoded)) {
      return null;
    }
  }
  return finish();
}

/** A request-target split into the host it names (absolute-form only) and the origin-form part. */
export interface RequestTarget {
  host: string | null;
  /** What the pod receives: path and query, as the client wrote them. */
  uri: string;
}

const ABSOLUTE = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/?#]*)(.*)$/s;

/**
 * nginx accepts "GET http://host/path" and then uses that host instead of the Host
 * header, and sends the pod only the path. Returns null for a target it refuses.
 */
export function splitTarget(raw: string): RequestTarget | null {
  if (raw.startsWith('/')) return { host: null, uri: raw };
  const m = ABSOLUTE.exec(raw);
  if (m === null) return null;
  const authority = m[1] as string;
  const rest = m[2] as string;
  if (authority === '' || authority.includes('@')) return null;
  if (rest === '') return { host: authority, uri: '/' };
  return rest.startsWith('/') ? { host: authority, uri: rest } : null;
}
