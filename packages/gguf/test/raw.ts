/**
 * A byte-level GGUF builder for tests: it writes whatever it is told, valid or not, so tests can
 * craft every malformed file the reader must reject.
 */
export class Raw {
  readonly parts: number[] = [];

  u8(v: number): this {
    this.parts.push(v & 0xff);
    return this;
  }

  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.parts.push(...b);
    return this;
  }

  u64(v: bigint | number): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt(v));
    this.parts.push(...b);
    return this;
  }

  bytes(bytes: ArrayLike<number>): this {
    for (let i = 0; i < bytes.length; i++) {
      this.parts.push(bytes[i]!);
    }
    return this;
  }

  /** u64 length + raw bytes (a string given as text is UTF-8 encoded). */
  str(s: string | Uint8Array, length?: bigint | number): this {
    const bytes = typeof s === "string" ? Buffer.from(s, "utf8") : s;
    this.u64(length ?? bytes.length);
    return this.bytes(bytes);
  }

  header(nTensors: bigint | number, nKv: bigint | number, version = 3): this {
    return this.bytes([0x47, 0x47, 0x55, 0x46]).u32(version).u64(nTensors).u64(nKv);
  }

  kvU32(key: string, value: number): this {
    return this.str(key).u32(4).u32(value);
  }

  kvString(key: string, value: string): this {
    return this.str(key).u32(8).str(value);
  }

  tensorInfo(
    name: string,
    shape: (number | bigint)[],
    type: number,
    offset: number | bigint,
  ): this {
    this.str(name).u32(shape.length);
    for (const d of shape) {
      this.u64(d);
    }
    return this.u32(type).u64(offset);
  }

  padTo(alignment: number): this {
    while (this.parts.length % alignment !== 0) {
      this.parts.push(0);
    }
    return this;
  }

  zeros(n: number): this {
    for (let i = 0; i < n; i++) {
      this.parts.push(0);
    }
    return this;
  }

  get length(): number {
    return this.parts.length;
  }

  build(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}
