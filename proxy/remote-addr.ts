// nginx's $remote_addr: the client's address as nginx writes it (ngx_sock_ntop without the
// port), the key of `hash $remote_addr consistent`. IPv4 is dotted decimal, as Node gives
// it. IPv6 is ngx_inet6_ntop's text, which can differ from Node's (libuv's inet_ntop): hex
// groups in lower case without leading zeros; the longest run of two or more zero groups
// (the first of equal runs) written "::"; and when that run starts the address, the last
// four bytes in dotted decimal for ::ffff:a.b.c.d (IPv4-mapped), for ::a.b.c.d (six zero
// groups) and for seven zero groups unless the last group's high byte is 0 or its low byte
// is 1 (so ::1 and ::2, but ::0.0.1.2).

/** The 16 bytes of an IPv6 address text (zone dropped), or null when it is not one. */
export function ipv6Bytes(text: string): Uint8Array | null {
  const zone = text.indexOf('%');
  const address = zone < 0 ? text : text.slice(0, zone);
  const halves = address.split('::');
  if (halves.length > 2) return null;
  const groups = (half: string): number[] | null => {
    if (half === '') return [];
    const out: number[] = [];
    const parts = half.split(':');
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i] as string;
      if (i === parts.length - 1 && part.includes('.')) {
        const octets = part.split('.');
        if (octets.length !== 4 || !octets.every((o) => /^[0-9]{1,3}$/.test(o) && Number(o) <= 255)) return null;
        const [a, b, c, d] = octets.map(Number) as [number, number, number, number];
        out.push(a * 256 + b, c * 256 + d);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(part)) return null;
        out.push(parseInt(part, 16));
      }
    }
    return out;
  };
  const head = groups(halves[0] as string);
  const tail = halves.length === 2 ? groups(halves[1] as string) : [];
  if (head === null || tail === null) return null;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return null;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const bytes = new Uint8Array(16);
  all.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return bytes;
}

/** ngx_inet6_ntop: the text nginx writes for 16 address bytes. */
export function ngxInet6Ntop(p: Uint8Array): string {
  let zero = -1;
  let last = -1;
  let max = 1;
  let n = 0;
  for (let i = 0; i < 16; i += 2) {
    if (p[i] || p[i + 1]) {
      if (max < n) {
        zero = last;
        max = n;
      }
      n = 0;
      continue;
    }
    if (n++ === 0) last = i;
  }
  if (max < n) {
    zero = last;
    max = n;
  }
  let text = '';
  let end = 16;
  if (zero === 0) {
    const mapped = max === 5 && p[10] === 0xff && p[11] === 0xff;
    if (mapped || max === 6 || (max === 7 && p[14] !== 0 && p[15] !== 1)) end = 12;
    text += ':';
  }
  for (let i = 0; i < end; i += 2) {
    if (i === zero) {
      text += ':';
      i += (max - 1) * 2;
      continue;
    }
    text += ((p[i] as number) * 256 + (p[i + 1] as number)).toString(16);
    if (i < 14) text += ':';
  }
  if (end === 12) text += `${p[12]}.${p[13]}.${p[14]}.${p[15]}`;
  return text;
}

/** Texts already rewritten, by Node's text: clients come back, on their connection or a new one. */
const rewritten = new Map<string, string>();
/** Past this many, the remembered texts are dropped and remembered anew (a bound on memory, not a cache policy). */
const REMEMBERED = 4096;

/**
 * nginx's $remote_addr for the address Node reports (socket.remoteAddress). IPv4 passes
 * as it is; IPv6 is rewritten as nginx writes it.
 */
export function remoteAddrText(address: string): string {
  if (!address.includes(':')) return address;
  const known = rewritten.get(address);
  if (known !== undefined) return known;
  const bytes = ipv6Bytes(address);
  const text = bytes === null ? address : ngxInet6Ntop(bytes);
  if (rewritten.size >= REMEMBERED) rewritten.clear();
  rewritten.set(address, text);
  return text;
}
