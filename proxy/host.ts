// The host a request is for, normalized the way nginx derives $host from the Host header
// (or from an absolute request-target): lower case, port and one trailing dot removed.
// nginx answers 400 to a host it cannot accept, so those rules are reproduced exactly:
// a difference here would send a request to a different server block than nginx does.

/** The normalized host, or null when nginx would answer 400 ("invalid host"). */
export function normalizeHost(raw: string): string | null {
  let hostEnd = raw.length;
  let lastDot = -2;
  let state: 'name' | 'ipLiteral' | 'rest' = 'name';

  for (let i = 0; i < raw.length; i++) {
    const ch = raw.charCodeAt(i);
    switch (ch) {
      case 0x2e /* . */:
        // Two dots in a row are refused anywhere, even after the port.
        if (lastDot === i - 1) return null;
        lastDot = i;
        break;
      case 0x3a /* : */:
        if (state === 'name') {
          hostEnd = i;
          state = 'rest';
        }
        break;
      case 0x5b /* [ */:
        if (i === 0) state = 'ipLiteral';
        break;
      case 0x5d /* ] */:
        if (state === 'ipLiteral') {
          hostEnd = i + 1;
          state = 'rest';
        }
        break;
      default:
        // "/" could escape into a path, controls and spaces never belong in a host.
        if (ch === 0x2f || ch === 0 || ch <= 0x20 || ch === 0x7f) return null;
    }
  }
  if (lastDot === hostEnd - 1) hostEnd--;
  if (hostEnd <= 0) return null;
  return raw.slice(0, hostEnd).toLowerCase();
}
