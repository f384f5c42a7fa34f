// The CRC32 Drover stores beside the objects it uploads in one request, as user metadata
// (`x-amz-meta-drover-crc32`, 8 hex digits), so that downloading them can be checked with CRC32
// (~0.23 ms per MiB here) instead of MD5 against the ETag (~1.4–1.75 ms per MiB): on a CPU-bound
// small-file download MD5 was half of all the client's work. CRC32 catches what a download check
// is for (bytes damaged or cut short between the disk and the file); it is the checksum the AWS
// SDK itself now sends by default. The metadata travels with the object's bytes in every GET, so it
// always describes them; objects without it (written by other tools) are checked by MD5 as before.
// A multipart upload carries the CRC32 of the whole file too (computed before the upload starts,
// checked against its parts' CRC32s before it completes), and a download in parallel ranges checks
// the ranges' CRC32s, combined (crc32Combine), against it. Only Node built-ins here: the worker
// threads import this file.
import * as zlib from 'node:zlib';

/** The user-metadata name (after `x-amz-meta-`). */
export const CRC32_METADATA = 'drover-crc32';

/** zlib's CRC32 (Node 20.15 and later); undefined on older Node, where only MD5 is used. */
export const crc32: typeof zlib.crc32 | undefined = typeof zlib.crc32 === 'function' ? zlib.crc32 : undefined;

/** A CRC32 as the metadata spells it: 8 lower-case hex digits. */
export function hex8(value: number): string {
  return (value >>> 0).toString(16).padStart(8, '0');
}

/** 32×32 GF(2) matrix times a 32-bit vector (zlib's gf2_matrix_times). */
function gf2Times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  for (let i = 0; vec !== 0; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i]!;
  return sum >>> 0;
}

/** `out` = `mat` squared (zlib's gf2_matrix_square). */
function gf2Square(out: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) out[n] = gf2Times(mat, mat[n]!);
}

/**
 * The CRC32 of A followed by B, from crc(A), crc(B) and B's length (zlib's crc32_combine, which
 * Node does not expose): how ranges downloaded in parallel, or parts hashed one by one, add up to
 * the CRC32 of the whole object. O(log len) matrix squarings, no pass over the data.
 */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  if (lengthB <= 0) return crcA >>> 0; // crc(empty B) is 0
  const even = new Uint32Array(32); // operator for 2^k zero bits, k even
  const odd = new Uint32Array(32); // and for k odd
  odd[0] = 0xedb88320; // the CRC-32 polynomial: one zero bit
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) odd[n] = row >>> 0;
  gf2Square(even, odd); // two zero bits
  gf2Square(odd, even); // four zero bits
  let crc = crcA >>> 0;
  // Apply length B's worth of zero bytes to crc(A), one bit of the length at a time (the first
  // square below gives the operator for one zero byte). Arithmetic, not bit operators, on the
  // length: objects pass 2^32 bytes.
  let len = lengthB;
  for (;;) {
    gf2Square(even, odd);
    if (len % 2 === 1) crc = gf2Times(even, crc);
    len = Math.floor(len / 2);
    if (len === 0) break;
    gf2Square(odd, even);
    if (len % 2 === 1) crc = gf2Times(odd, crc);
    len = Math.floor(len / 2);
    if (len === 0) break;
  }
  return (crc ^ crcB) >>> 0;
}

/** The CRC32 of consecutive pieces (parts of a file, ranges of an object) from theirs and their lengths. */
export function crc32OfPieces(pieces: readonly { crc32: number; length: number }[]): number {
  let crc = 0;
  for (const p of pieces) crc = crc32Combine(crc, p.crc32, p.length);
  return crc;
}
