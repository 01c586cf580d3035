// nginx's limits on the size of a request head, with its defaults
// (client_header_buffer_size 1k, large_client_header_buffers 4 8k): nginx reads the head
// into a 1 KiB buffer; a line that does not fit moves, whole, into one of four 8 KiB
// buffers, and the lines after it follow it there until that one is full too. So a line
// (with its CRLF) must fit in 8 KiB, else 414 for the request line and 400 ("Request
// Header Or Cookie Too Large") for a header; and the whole head must fit in the 1 KiB
// buffer and four 8 KiB ones, less what each buffer leaves unused at its end when the
// next line does not fit, else 400.
//
// Node gives the request line's parts and each header's name and value, not the bytes:
// a line is counted as it is usually written, "Name: value\r\n" and
// "METHOD target HTTP/1.1\r\n". Whitespace beyond that (Node trims it from values) is
// not counted.

export const FIRST_BUFFER = 1024;
export const LARGE_BUFFER = 8192;
export const LARGE_BUFFERS = 4;
/** The longest head nginx could hold at all: the first buffer and every large one, full. */
export const MAX_HEAD = FIRST_BUFFER + LARGE_BUFFERS * LARGE_BUFFER;

/** The request line's bytes, CRLF included. */
export function requestLineLength(method: string, target: string): number {
  return method.length + target.length + 12; // two spaces, "HTTP/1.1", CRLF
}

/**
 * What nginx answers because of the head's size: 414, 400, or null when it fits.
 * `headerBytes` is the sum of the names' and values' lengths (a quick first look: most
 * heads fit the first buffer, and are not walked line by line).
 */
export function headSizeStatus(
  requestLine: number,
  rawHeaders: readonly string[],
  headerBytes: number,
): 414 | 400 | null {
  const total = requestLine + headerBytes + 2 * rawHeaders.length + 2;
  if (total <= FIRST_BUFFER) return null;
  if (requestLine > LARGE_BUFFER) return 414;
  let end = FIRST_BUFFER; // where the buffer being filled ends, as an offset in the head
  let busy = 0; // large buffers taken
  let at = 0; // where the line being read starts
  const place = (length: number): boolean => {
    const lineEnd = at + length;
    while (lineEnd > end) {
      // The buffer fills up before the line ends. A line that had not begun starts the next
      // buffer; one that had is moved there, unless it could not fit in any.
      if (at < end && end - at >= LARGE_BUFFER) return false;
      if (busy === LARGE_BUFFERS) return false;
      busy++;
      end = (at < end ? at : end) + LARGE_BUFFER;
    }
    at = lineEnd;
    return true;
  };
  if (!place(requestLine)) return 414;
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (!place((rawHeaders[i] as string).length + (rawHeaders[i + 1] as string).length + 4)) return 400;
  }
  // The empty line that ends the head is read like any line.
  return place(2) ? null : 400;
}
