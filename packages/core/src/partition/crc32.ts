/**
 * CRC-32 as GPT uses it (IEEE 802.3, reflected polynomial 0xEDB88320, initial
 * value and final XOR 0xFFFFFFFF). Ref: UEFI 2.10 §5.3.2, "HeaderCRC32".
 * Table-driven, one byte at a time: headers are 92 bytes and entry arrays
 * 16 KiB, so this is never the bottleneck.
 */
const TABLE = /* @__PURE__ */ (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * CRC-32 of `data`. Pass the previous result as `crc` to continue over
 * several chunks: `crc32(b, crc32(a))` equals `crc32(concat(a, b))`.
 */
export function crc32(data: Uint8Array, crc = 0): number {
  let c = (crc ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) {
    c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  }
  return (c ^ 0xffffffff) >>> 0;
}
