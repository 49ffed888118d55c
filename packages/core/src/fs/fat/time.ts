/**
 * FAT timestamps are local wall-clock time without a zone (FAT spec §6.3
 * "Date and Time Formats"). piimg stores the UTC wall time of the given Date:
 * a Raspberry Pi reads the boot partition before it knows any timezone, and
 * Linux mounts vfat with tz=UTC semantics unless told otherwise, so this keeps
 * images reproducible and identical on every build host. Reading does the
 * inverse. Range 1980-01-01 .. 2107-12-31; times outside are clamped.
 */

export interface FatTimestamp {
  date: number;
  time: number;
  /** Hundredths of a second beyond `time`'s 2-second resolution, 0..199 (DIR_CrtTimeTenth). */
  hundredths: number;
}

const MIN_MS = Date.UTC(1980, 0, 1);
const MAX_MS = Date.UTC(2107, 11, 31, 23, 59, 58);

export function encodeFatTime(when: Date): FatTimestamp {
  let ms = when.getTime();
  if (!Number.isFinite(ms) || ms < MIN_MS) ms = MIN_MS;
  if (ms > MAX_MS) ms = MAX_MS;
  const d = new Date(ms);
  const date = ((d.getUTCFullYear() - 1980) << 9) | ((d.getUTCMonth() + 1) << 5) | d.getUTCDate();
  const seconds = d.getUTCSeconds();
  const time = (d.getUTCHours() << 11) | (d.getUTCMinutes() << 5) | (seconds >> 1);
  const hundredths = (seconds & 1) * 100 + Math.floor(d.getUTCMilliseconds() / 10);
  return { date, time, hundredths };
}

/** Decodes a FAT date and time; invalid fields (month 0, day 0, second 60) are clamped, not trusted. */
export function decodeFatTime(date: number, time = 0, hundredths = 0): Date {
  if (date === 0) return new Date(MIN_MS);
  const year = 1980 + (date >> 9);
  const month = Math.min(Math.max((date >> 5) & 0x0f, 1), 12);
  const day = Math.max(date & 0x1f, 1);
  const hours = Math.min(time >> 11, 23);
  const minutes = Math.min((time >> 5) & 0x3f, 59);
  const seconds = Math.min((time & 0x1f) * 2, 58);
  const extraMs = hundredths <= 199 ? hundredths * 10 : 0;
  return new Date(Date.UTC(year, month - 1, day, hours, minutes, seconds) + extraMs);
}
