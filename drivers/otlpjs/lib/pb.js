'use strict';
// A minimal protobuf writer and reader: enough for OTLP's trace request and
// response and google.rpc.Status with its details, so that those messages
// need no generated code.

/**
 * Writer writes a message into one growing buffer. A nested message is
 * written in place between fork and ldelim: its length, known only at the
 * end, goes before it (in the byte reserved for it, the message moved
 * along when the length needs more). The first edition made a Buffer per
 * varint and copied each nested message into its parent: about 55 µs of
 * CPU per span (node bench/encode.js), most of it allocation.
 */
class Writer {
  constructor(size = 256) {
    this.buf = Buffer.allocUnsafe(size);
    this.pos = 0;
    this.forks = [];
  }
  ensure(n) {
    if (this.pos + n > this.buf.length) {
      const b = Buffer.allocUnsafe(Math.max(2 * this.buf.length, this.pos + n));
      this.buf.copy(b, 0, 0, this.pos);
      this.buf = b;
    }
  }
  push(b) {
    this.ensure(b.length);
    this.pos += b.copy(this.buf, this.pos);
  }
  /** varint writes v (a number or a BigInt, below 2^64). */
  varint(v) {
    this.ensure(10);
    if (typeof v === 'number' && v >= 0 && v <= 0xffffffff) {
      while (v >= 0x80) {
        this.buf[this.pos++] = (v & 0x7f) | 0x80;
        v = Math.floor(v / 128);
      }
      this.buf[this.pos++] = v;
      return;
    }
    v = BigInt.asUintN(64, BigInt(v));
    while (v >= 0x80n) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }
  tag(field, wire) {
    this.varint((field << 3) | wire);
  }
  /** uint32/uint64/int64/enum/bool as a varint field; 0 is left out. */
  uint(field, v) {
    if (v !== 0 && v !== 0n && BigInt(v) !== 0n) {
      this.tag(field, 0);
      this.varint(v);
    }
  }
  fixed64(field, v) {
    this.tag(field, 1);
    this.ensure(8);
    this.pos = this.buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(v)), this.pos);
  }
  fixed32(field, v) {
    this.tag(field, 5);
    this.ensure(4);
    this.pos = this.buf.writeUInt32LE(v >>> 0, this.pos);
  }
  /** bytes, a string (made UTF-8) or a nested Writer; empty is left out. */
  bytes(field, v) {
    if (typeof v === 'string') {
      const n = Buffer.byteLength(v, 'utf8');
      if (n === 0) {
        return;
      }
      this.tag(field, 2);
      this.varint(n);
      this.ensure(n);
      this.pos += this.buf.write(v, this.pos, 'utf8');
      return;
    }
    const b = v instanceof Writer ? v.finish() : v;
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
  /** fork begins a nested message, written even when empty, ended by ldelim. */
  fork(field) {
    this.tag(field, 2);
    this.ensure(1);
    this.forks.push(this.pos);
    this.pos++; // its length's first byte
  }
  ldelim() {
    const at = this.forks.pop();
    const n = this.pos - at - 1;
    let size = 1;
    for (let v = n; v >= 0x80; v = Math.floor(v / 128)) {
      size++;
    }
    if (size > 1) {
      this.ensure(size - 1);
      this.buf.copyWithin(at + size, at + 1, this.pos);
      this.pos += size - 1;
    }
    let v = n;
    let i = at;
    while (v >= 0x80) {
      this.buf[i++] = (v & 0x7f) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[i] = v;
  }
  finish() {
    return this.buf.subarray(0, this.pos);
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
