import * as zlib from 'node:zlib';

let table: Int32Array | undefined;

/** CRC-32 (IEEE 802.3, as zip and gzip use it) in plain JavaScript: the fallback for Node releases without `zlib.crc32`. */
export function crc32Table(data: Uint8Array, value = 0): number {
  table ??= makeTable();
  let crc = ~value;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

function makeTable(): Int32Array {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
}

/**
 * CRC-32 of `data`, unsigned. Uses the native `zlib.crc32` (Node >= 20.15 / 22.2), which is faster than the table
 * loop on the append path.
 */
export const crc32: (data: Uint8Array, value?: number) => number =
  typeof (zlib as { crc32?: unknown }).crc32 === 'function' ? zlib.crc32 : crc32Table;
