'use strict';
// A minimal protobuf writer and reader: enough for OTLP's trace request and
// response and google.rpc.Status with its details, so that those messages
// need no generated code.

class Writer {
  constructor() {
    this.parts = [];
    this.len = 0;
  }
  push(b) {
    this.parts.push(b);
    this.len += b.length;
  }
  varint(v) {
    v = BigInt.asUintN(64, BigInt(v));
    const out = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.push(Buffer.from(out));
  }
  tag(field, wire) {
    this.varint((field << 3) | wire);
  }
  /** uint32/uint64/int64/enum/bool as a varint field; 0 is left out. */
  uint(field, v) {
    if (BigInt(v) !== 0n) {
      this.tag(field, 0);
      this.varint(v);
    }
  }
  fixed64(field, v) {
    this.tag(field, 1);
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)));
    this.push(b);
  }
  fixed32(field, v) {
    this.tag(field, 5);
    const b = Buffer.alloc(4);
    b.writeUInt32LE(v >>> 0);
    this.push(b);
  }
  /** bytes, a string (made UTF-8) or a nested Writer; empty is left out. */
  bytes(field, v) {
    let b = v;
    if (typeof v === 'string') {
      b = Buffer.from(v, 'utf8');
    } else if (v instanceof Writer) {
      b = v.finish();
    }
    if (b.length === 0) {
      return;
    }
    this.tag(field, 2);
    this.varint(b.length);
    this.push(b);
  }
  /** A nested message written even when empty. */
  message(field, w) {
    const b = w.finish();
    this.tag(field, 2);
    this.varint(b.length);
    this.push(b);
  }
  finish() {
    return Buffer.concat(this.parts, this.len);
  }
}

/**
 * read returns the fields of a message as {field: [values]}: varints as
 * BigInt, length-delimited fields as Buffers, fixed ones as BigInt.
 */
function read(buf) {
  const fields = {};
  let off = 0;
  const varint = () => {
    let v = 0n;
    for (let i = 0; i < 10; i++) {
      if (off >= buf.length) {
        throw new Error('protobuf: truncated varint');
      }
      const b = buf[off++];
      v |= BigInt(b & 0x7f) << BigInt(7 * i);
      if (b < 0x80) {
        return v;
      }
    }
    throw new Error('protobuf: varint too long');
  };
  while (off < buf.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wire = Number(key & 7n);
    let v;
    switch (wire) {
      case 0: v = varint(); break;
      case 1: v = buf.readBigUInt64LE(off); off += 8; break;
      case 5: v = BigInt(buf.readUInt32LE(off)); off += 4; break;
      case 2: {
        const n = Number(varint());
        if (off + n > buf.length) {
          throw new Error('protobuf: truncated field');
        }
        v = buf.subarray(off, off + n);
        off += n;
        break;
      }
      default: throw new Error(`protobuf: wire type ${wire}`);
    }
    (fields[field] = fields[field] || []).push(v);
  }
  return fields;
}

module.exports = { Writer, read };
