/** One field of an on-disk struct: its original name (as the spec or kernel spells it), offset and length in bytes. */
export interface FieldLayout {
  readonly name: string;
  readonly byteOffset: number;
  readonly length: number;
}
