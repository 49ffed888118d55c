import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCsv } from '../src/batch/csv.js';
import { checkFileNamePart, outputFor, readDevices } from '../src/batch/devices.js';

const dir = mkdtempSync(join(tmpdir(), 'piimg-batch-input-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const fields = (text: string) => parseCsv(text).map((r) => r.fields);

describe('parseCsv (RFC 4180)', () => {
  it('reads plain, quoted and empty fields, CRLF and LF, a BOM, and skips empty lines', () => {
    expect(fields('\ufeffname,id\r\na,1\r\n\r\nb,\n')).toEqual([['name', 'id'], ['a', '1'], ['b', '']]);
    expect(fields('a,"b,c","say ""hi"""\n')).toEqual([['a', 'b,c', 'say "hi"']]);
    expect(fields('a,"two\nlines"\nnext,x')).toEqual([['a', 'two\nlines'], ['next', 'x']]);
    expect(fields(',\n')).toEqual([['', '']]);
    expect(fields('')).toEqual([]);
  });

  it('keeps the line each record starts on', () => {
    expect(parseCsv('h\n"a\nb"\nc\n').map((r) => r.line)).toEqual([1, 2, 4]);
  });

  it('refuses an unclosed quote, text after a closing quote and a quote inside a bare field', () => {
    expect(() => parseCsv('a,"open\n')).toThrow(/not closed/);
    expect(() => parseCsv('"a"b,c\n')).toThrow(/after a closing quote/);
    expect(() => parseCsv('a"b,c\n')).toThrow(/quote inside an unquoted field/);
  });
});

describe('device rows', () => {
  it('CSV: columns become variables; a row with the wrong field count fails alone', async () => {
    const path = join(dir, 'devices.csv');
    writeFileSync(path, 'name,device.id\nsensor-1,0001\nsensor-2\n');
    const rows = await readDevices(path);
    expect(rows[0]).toMatchObject({ index: 1, where: 'line 2', vars: { name: 'sensor-1', 'device.id': '0001' }, set: [] });
    expect(rows[0]!.problem).toBeUndefined();
    expect(rows[1]!.problem?.message).toMatch(/line 3: has 1 fields, the header has 2/);
  });

  it('CSV: a header without "name" is an E_CONFIG error for the whole file', async () => {
    const path = join(dir, 'noname.csv');
    writeFileSync(path, 'id\n1\n');
    await expect(readDevices(path)).rejects.toMatchObject({ code: 'E_CONFIG' });
  });

  it('YAML: vars are flattened, other keys become --set overrides; a bad row fails alone', async () => {
    const path = join(dir, 'devices.yaml');
    writeFileSync(path, `- vars: { name: a, device: { id: "0001", octet: 11 } }\n  timezone: Etc/UTC\n  wifi: { networks: [{ ssid: Lab }] }\n- 42\n- vars: [x]\n`);
    const rows = await readDevices(path);
    expect(rows[0]).toMatchObject({ vars: { name: 'a', 'device.id': '0001', 'device.octet': '11' }, set: ['timezone="Etc/UTC"', 'wifi={"networks":[{"ssid":"Lab"}]}'] });
    expect(rows[1]!.problem?.code).toBe('E_CONFIG');
    expect(rows[2]!.problem?.message).toMatch(/vars must be a mapping/);
  });

  it('unsafe file names are refused; the output pattern is filled in', () => {
    for (const bad of ['', '.', '..', '../x', 'a/b', 'a\\b', 'a\u0000b', 'tab\there', 'c:d', 'x'.repeat(201)]) {
      expect(() => checkFileNamePart(bad, 'name'), JSON.stringify(bad)).toThrow(expect.objectContaining({ code: 'E_UNSAFE_NAME' }));
    }
    expect(outputFor('out/{site}/{name}.img', { name: 'sensor-0001', site: 'plant-1' })).toBe('out/plant-1/sensor-0001.img');
    expect(() => outputFor('out/{name}-{rack}.img', { name: 'a' })).toThrow(/\{rack\}/);
    expect(() => outputFor('out/{name}.img', { name: 'ok', site: '../up' })).not.toThrow();
  });
});
