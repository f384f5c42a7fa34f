// The CRC32 Drover stores beside the objects it uploads in one request, as user metadata
// (`x-amz-meta-drover-crc32`, 8 hex digits), so that downloading them can be checked with CRC32
// (~0.23 ms per MiB here) instead of MD5 against the ETag (~1.4–1.75 ms per MiB): on a CPU-bound
// small-file download MD5 was half of all the client's work. CRC32 catches what a download check
// is for (bytes damaged or cut short between the disk and the file); it is the checksum the AWS
// SDK itself now sends by default. The metadata travels with the object's bytes in every GET, so it
// always describes them; objects without it (written by other tools, multipart uploads) are checked
// by MD5 as before. Only Node built-ins here: the worker threads import this file.
import * as zlib from 'node:zlib';

/** The user-metadata name (after `x-amz-meta-`). */
export const CRC32_METADATA = 'drover-crc32';

/** zlib's CRC32 (Node 20.15 and later); undefined on older Node, where only MD5 is used. */
export const crc32: typeof zlib.crc32 | undefined = typeof zlib.crc32 === 'function' ? zlib.crc32 : undefined;

/** A CRC32 as the metadata spells it: 8 lower-case hex digits. */
export function hex8(value: number): string {
  return (value >>> 0).toString(16).padStart(8, '0');
}
