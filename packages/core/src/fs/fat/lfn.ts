/**
 * VFAT long names: a run of 32-byte slots before the short entry, stored
 * last part first, each holding 13 UTF-16 code units and the checksum of the
 * short name. Ref: FAT spec §7 "Long File Name Implementation".
 */
import {
  ATTR_LONG_NAME,
  DIRENT_SIZE,
  LAST_LONG_ENTRY,
  LDIR,
  LDIR_CHARS_PER_SLOT,
  LDIR_CHAR_OFFSETS,
  MAX_LONG_SLOTS,
} from './layout.js';

export function longNameSlotCount(name: string): number {
  return Math.ceil(name.length / LDIR_CHARS_PER_SLOT);
}

/**
 * Builds the long-name slots for `name` in on-disk order (highest ordinal
 * first). The name ends with a 0x0000 unit when it does not fill its last
 * slot, and the rest is padded with 0xFFFF.
 */
export function encodeLongName(name: string, checksum: number): Uint8Array {
  const count = longNameSlotCount(name);
  const out = new Uint8Array(count * DIRENT_SIZE);
  for (let ord = 1; ord <= count; ord++) {
    const slot = out.subarray((count - ord) * DIRENT_SIZE, (count - ord + 1) * DIRENT_SIZE);
    slot[LDIR.LDIR_Ord.byteOffset] = ord | (ord === count ? LAST_LONG_ENTRY : 0);
    slot[LDIR.LDIR_Attr.byteOffset] = ATTR_LONG_NAME;
    slot[LDIR.LDIR_Type.byteOffset] = 0;
    slot[LDIR.LDIR_Chksum.byteOffset] = checksum;
    // LDIR_FstClusLO stays 0 (FAT spec §7: "must be zero").
    for (let i = 0; i < LDIR_CHARS_PER_SLOT; i++) {
      const index = (ord - 1) * LDIR_CHARS_PER_SLOT + i;
      const unit = index < name.length ? name.charCodeAt(index) : index === name.length ? 0x0000 : 0xffff;
      const at = LDIR_CHAR_OFFSETS[i]!;
      slot[at] = unit & 0xff;
      slot[at + 1] = unit >>> 8;
    }
  }
  return out;
}

/** The 13 code units of one slot, up to the 0x0000 terminator. */
export function decodeLongNameSlot(slot: Uint8Array): { text: string; terminated: boolean } {
  const units: number[] = [];
  for (const at of LDIR_CHAR_OFFSETS) {
    const unit = slot[at]! | (slot[at + 1]! << 8);
    if (unit === 0) return { text: String.fromCharCode(...units), terminated: true };
    units.push(unit);
  }
  return { text: String.fromCharCode(...units), terminated: false };
}

/**
 * Collects the long name of a sequence of slots while a directory is
 * scanned. Feed slots in disk order; `take` returns the name when the
 * sequence was complete, in order, and matches the short entry's checksum
 * (an orphaned or damaged sequence is ignored, as the spec asks).
 */
export class LongNameAssembler {
  private parts: string[] = [];
  private expected = 0;
  private checksum = -1;
  private firstSlot = -1;
  private valid = false;

  reset(): void {
    this.valid = false;
    this.expected = 0;
    this.parts = [];
  }

  push(slot: Uint8Array, slotIndex: number): void {
    const ord = slot[LDIR.LDIR_Ord.byteOffset]!;
    const sum = slot[LDIR.LDIR_Chksum.byteOffset]!;
    const number = ord & 0x3f;
    if (ord & LAST_LONG_ENTRY) {
      if (number === 0 || number > MAX_LONG_SLOTS) return this.reset();
      this.parts = new Array<string>(number);
      this.expected = number;
      this.checksum = sum;
      this.firstSlot = slotIndex;
      this.valid = true;
      const { text } = decodeLongNameSlot(slot);
      this.parts[number - 1] = text;
      this.expected = number - 1;
      return;
    }
    if (!this.valid || number !== this.expected || number === 0 || sum !== this.checksum) return this.reset();
    const { text, terminated } = decodeLongNameSlot(slot);
    // Only the last part may end early.
    if (terminated || text.length !== LDIR_CHARS_PER_SLOT) return this.reset();
    this.parts[number - 1] = text;
    this.expected = number - 1;
  }

  /** Called at a short entry: the long name belonging to it, if any, and where its slots start. */
  take(shortChecksum: number): { name: string; firstSlot: number } | undefined {
    const ok = this.valid && this.expected === 0 && this.checksum === shortChecksum;
    const result = ok ? { name: this.parts.join(''), firstSlot: this.firstSlot } : undefined;
    this.reset();
    if (result && result.name.length === 0) return undefined;
    return result;
  }
}
