import { PiimgError } from '@piimg/core';

/**
 * Parses CSV text into records of fields. Ref: RFC 4180 §2: fields are
 * separated by commas and records by CRLF (LF alone is accepted too); a field
 * in double quotes may hold commas, line breaks and doubled quotes (""). A
 * leading byte order mark is dropped. Nothing is trimmed; empty lines are
 * skipped. Each record keeps the line it starts on, for messages.
 */
export function parseCsv(text: string, origin = 'CSV'): { line: number; fields: string[] }[] {
  const records: { line: number; fields: string[] }[] = [];
  let fields: string[] = [];
  let field = '';
  let quoted = false;
  let atFieldStart = true;
  let line = 1;
  let recordLine = 1;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  const endRecord = () => {
    fields.push(field);
    // A record that is one empty field is an empty line.
    if (!(fields.length === 1 && fields[0] === '')) records.push({ line: recordLine, fields });
    fields = [];
    field = '';
    atFieldStart = true;
    recordLine = line;
  };
  for (; i < text.length; i++) {
    const c = text[i]!;
    if (quoted) {
      if (c === '"') {
        if (text[i + 1] === '"') {
          field += '"';
          i++;
        } else {
          quoted = false;
          const next = text[i + 1];
          if (next !== undefined && next !== ',' && next !== '\n' && next !== '\r') {
            throw new PiimgError('E_CONFIG', `${origin} line ${line}: text after a closing quote`, { line });
          }
        }
      } else {
        if (c === '\n') line++;
        field += c;
      }
      continue;
    }
    if (c === '"' && atFieldStart) {
      quoted = true;
      atFieldStart = false;
    } else if (c === '"') {
      throw new PiimgError('E_CONFIG', `${origin} line ${line}: a quote inside an unquoted field (quote the whole field and double the quote)`, { line });
    } else if (c === ',') {
      fields.push(field);
      field = '';
      atFieldStart = true;
    } else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      line++;
      endRecord();
    } else {
      field += c;
      atFieldStart = false;
    }
  }
  if (quoted) throw new PiimgError('E_CONFIG', `${origin} line ${recordLine}: a quoted field is not closed`, { line: recordLine });
  if (field !== '' || fields.length > 0) endRecord();
  return records;
}
