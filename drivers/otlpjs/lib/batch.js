'use strict';
// The span batch layout of docs/driver-protocol.md, section 4: decode (with
// the sanitizing of section 4.2) and encode (section 4.3, for tests).
//
// A decoded span keeps 64-bit integers as BigInt and every string as the raw
// bytes it arrived as (a Buffer): the layout's strings need not be UTF-8,
// and only the back end's encoder decides how to make them valid.

/** Flag bits (section 4.1). */
const FLAG_ERROR = 1;
const FLAG_SAMPLED = 2;
const FLAG_DEBUG = 4;
const FLAG_SHARED = 8;
const FLAG_TRACE_STATE = 64;
const FLAG_TAG_KEYS = 128;

/**
 * The well-known tag keys (section 4.5), numbered from 1 in this order: a
 * span with flag 128 writes each tag key as its number here, or as 0 and
 * the key. The list only grows at its end.
 */
const TAG_KEYS = [
  'component', 'node_id', 'zone', 'guid:x-request-id', 'guid:x-client-trace-id',
  'http.url', 'http.method', 'http.protocol', 'user_agent', 'peer.address',
  'request_size', 'response_size', 'upstream_cluster', 'upstream_address', 'http.status_code',
  'grpc.status_code', 'response_flags', 'tls.client.identity', 'tls.client.subject', 'error',
  'error.message', 'grpc.path', 'grpc.authority', 'grpc.content_type', 'grpc.timeout',
  'grpc.message',
].map((k) => Buffer.from(k, 'latin1'));

/** Parent origins, (flags >> 4) & 3. */
const ORIGIN_UNKNOWN = 0;
const ORIGIN_LOCAL = 1;
const ORIGIN_REMOTE = 2;

/** Kinds. */
const KIND_SERVER = 1;
const KIND_INTERNAL = 5;

/** The smallest a span, a tag and an event can be (section 4.2). */
const MIN_SPAN = 58;
const MIN_TAG = 2;
const MIN_EVENT = 9;

class BatchError extends Error {}

class Reader {
  constructor(buf) {
    this.buf = buf;
    this.off = 0;
  }
  left() {
    return this.buf.length - this.off;
  }
  need(n, what) {
    if (this.left() < n) {
      throw new BatchError(`batch ends inside ${what} at byte ${this.off} (${n} bytes wanted, ${this.left()} left)`);
    }
  }
  u8(what) {
    this.need(1, what);
    return this.buf[this.off++];
  }
  u16(what) {
    this.need(2, what);
    const v = this.buf.readUInt16LE(this.off);
    this.off += 2;
    return v;
  }
  u64(what) {
    this.need(8, what);
    const v = this.buf.readBigUInt64LE(this.off);
    this.off += 8;
    return v;
  }
  i64(what) {
    this.need(8, what);
    const v = this.buf.readBigInt64LE(this.off);
    this.off += 8;
    return v;
  }
  uvarint(what) {
    let v = 0n;
    for (let i = 0; i < 10; i++) {
      this.need(1, what);
      const b = this.buf[this.off++];
      if (i === 9 && b > 1) {
        throw new BatchError(`${what}: varint overflows 64 bits at byte ${this.off - 1}`);
      }
      v |= BigInt(b & 0x7f) << BigInt(7 * i);
      if (b < 0x80) {
        return v;
      }
    }
    throw new BatchError(`${what}: varint longer than 10 bytes at byte ${this.off}`);
  }
  /**
   * small reads a varint as a Number: one byte without BigInt (the
   * lengths and counts of a batch nearly always fit), the rest through
   * uvarint. A value past 2^53 loses precision, which no comparison with
   * a batch's length can tell.
   */
  small(what) {
    if (this.off < this.buf.length && this.buf[this.off] < 0x80) {
      return this.buf[this.off++];
    }
    return Number(this.uvarint(what));
  }
  count(what, min) {
    const n = this.small(what);
    if (n * min > this.left()) {
      throw new BatchError(`${what} ${n} cannot fit in the ${this.left()} bytes left`);
    }
    return n;
  }
  /**
   * str returns the next string as a view of the batch, not a copy: a
   * batch's spans are encoded for the back end before the Export that
   * brought them is answered, and the batch (the request's, or the copy
   * made out of the ring) is not reused meanwhile.
   */
  str(what) {
    const n = this.small(`${what} length`);
    if (n > this.left()) {
      throw new BatchError(`${what} length ${n} runs past the end of the batch (${this.left()} bytes left)`);
    }
    const s = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return s;
  }
}

/**
 * decode reads spanCount spans from buf and sanitizes them against now
 * (BigInt nanoseconds since the epoch). traceState says whether flag 64
 * is followed by a trace state, tagKeys how many well-known tag keys the
 * driver knows (what it answered at Configure: span_trace_state,
 * span_tag_keys). It throws a BatchError for a malformed batch.
 */
function decode(buf, spanCount, now, traceState, tagKeys = 0) {
  const r = new Reader(buf);
  if (BigInt(spanCount) * BigInt(MIN_SPAN) > BigInt(buf.length)) {
    throw new BatchError(`span count ${spanCount} cannot fit in a batch of ${buf.length} bytes`);
  }
  const spans = [];
  for (let i = 0; i < spanCount; i++) {
    const s = {};
    s.traceIdHigh = r.u64('trace id');
    s.traceIdLow = r.u64('trace id');
    s.spanId = r.u64('span id');
    s.parentId = r.u64('parent id');
    s.start = r.i64('start');
    s.duration = r.i64('duration');
    s.kind = r.u8('kind');
    const flags = r.u8('flags');
    s.error = (flags & FLAG_ERROR) !== 0;
    s.sampled = (flags & FLAG_SAMPLED) !== 0;
    s.debug = (flags & FLAG_DEBUG) !== 0;
    s.shared = (flags & FLAG_SHARED) !== 0;
    s.parentOrigin = (flags >> 4) & 3;
    s.name = r.str('name');
    s.localService = r.str('local service');
    s.remoteService = r.str('remote service');
    const ipLen = r.u8('remote ip length');
    if (ipLen !== 0 && ipLen !== 4 && ipLen !== 16) {
      throw new BatchError(`remote ip length ${ipLen}: want 0, 4 or 16`);
    }
    r.need(ipLen, 'remote ip');
    s.remoteIp = buf.subarray(r.off, r.off + ipLen);
    r.off += ipLen;
    if (ipLen === 16 && s.remoteIp.subarray(0, 12).equals(V4_MAPPED)) {
      s.remoteIp = s.remoteIp.subarray(12);
    }
    s.remotePort = r.u16('remote port');
    const tags = r.count('tag count', MIN_TAG);
    s.tags = [];
    const numbered = tagKeys > 0 && (flags & FLAG_TAG_KEYS) !== 0;
    for (let t = 0; t < tags; t++) {
      let key;
      if (numbered) {
        const n = r.small('tag key number');
        if (n > tagKeys) {
          throw new BatchError(`tag key number ${n} is beyond the ${tagKeys} well-known keys`);
        }
        key = n === 0 ? r.str('tag key') : TAG_KEYS[n - 1];
      } else {
        key = r.str('tag key');
      }
      s.tags.push({ key, value: r.str('tag value') });
    }
    const events = r.count('event count', MIN_EVENT);
    s.events = [];
    for (let e = 0; e < events; e++) {
      s.events.push({ unixNano: r.i64('event time'), value: r.str('event value') });
    }
    s.traceState = Buffer.alloc(0);
    if (traceState && (flags & FLAG_TRACE_STATE) !== 0) {
      s.traceState = r.str('trace state');
    }
    sanitize(s, now);
    spans.push(s);
  }
  if (r.left() !== 0) {
    throw new BatchError(`${r.left()} bytes left after ${spanCount} spans`);
  }
  return spans;
}

const V4_MAPPED = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

/** sanitize applies section 4.2's five rules. */
function sanitize(s, now) {
  if (s.duration < 0n) {
    s.duration = 0n;
  }
  if (s.start < 1000n) {
    s.start = now - s.duration;
    if (s.start < 1000n) {
      s.start = now;
    }
  }
  if (s.kind === 0 || s.kind > KIND_INTERNAL) {
    s.kind = KIND_INTERNAL;
  }
  if (s.parentId === 0n || s.parentOrigin === 3) {
    s.parentOrigin = ORIGIN_UNKNOWN;
  }
  for (const e of s.events) {
    if (e.unixNano < 1000n) {
      e.unixNano = s.start;
    }
  }
}

class Writer {
  constructor() {
    this.parts = [];
  }
  u8(v) {
    this.parts.push(Buffer.from([v]));
  }
  u16(v) {
    const b = Buffer.alloc(2);
    b.writeUInt16LE(v);
    this.parts.push(b);
  }
  u64(v) {
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(BigInt.asUintN(64, v));
    this.parts.push(b);
  }
  uvarint(v) {
    v = BigInt(v);
    const out = [];
    while (v >= 0x80n) {
      out.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    out.push(Number(v));
    this.parts.push(Buffer.from(out));
  }
  str(b) {
    this.uvarint(b.length);
    this.parts.push(Buffer.from(b));
  }
}

/**
 * encode writes spans in the layout (section 4.3), for a decoder that
 * reads trace states (traceState) and knows tagKeys well-known keys.
 */
function encode(spans, traceState, tagKeys = 0) {
  const w = new Writer();
  for (const s of spans) {
    w.u64(s.traceIdHigh);
    w.u64(s.traceIdLow);
    w.u64(s.spanId);
    w.u64(s.parentId);
    w.u64(s.start);
    w.u64(s.duration);
    w.u8(s.kind);
    let flags = (s.error ? FLAG_ERROR : 0) | (s.sampled ? FLAG_SAMPLED : 0) | (s.debug ? FLAG_DEBUG : 0) |
      (s.shared ? FLAG_SHARED : 0) | ((s.parentOrigin & 3) << 4);
    const withState = traceState && s.traceState && s.traceState.length > 0;
    if (withState) {
      flags |= FLAG_TRACE_STATE;
    }
    const numbered = tagKeys > 0 && s.tags.length > 0;
    if (numbered) {
      flags |= FLAG_TAG_KEYS;
    }
    w.u8(flags);
    w.str(s.name);
    w.str(s.localService);
    w.str(s.remoteService);
    w.u8(s.remoteIp.length);
    w.parts.push(Buffer.from(s.remoteIp));
    w.u16(s.remotePort);
    w.uvarint(s.tags.length);
    for (const t of s.tags) {
      const n = numbered ? TAG_KEYS.findIndex((k) => k.equals(t.key)) + 1 : 0;
      if (numbered) {
        w.uvarint(n > 0 && n <= tagKeys ? n : 0);
      }
      if (!(n > 0 && n <= tagKeys)) {
        w.str(t.key);
      }
      w.str(t.value);
    }
    w.uvarint(s.events.length);
    for (const e of s.events) {
      w.u64(e.unixNano);
      w.str(e.value);
    }
    if (withState) {
      w.str(s.traceState);
    }
  }
  return Buffer.concat(w.parts);
}

/** hex16 writes a u64 as 16 lowercase hex digits, as W3C and B3 headers do. */
function hex16(v) {
  return v.toString(16).padStart(16, '0');
}

module.exports = {
  decode, encode, hex16, BatchError, TAG_KEYS,
  ORIGIN_UNKNOWN, ORIGIN_LOCAL, ORIGIN_REMOTE, KIND_SERVER, KIND_INTERNAL,
};

/**
 * ipString writes a remote ip's bytes as text: IPv4 dotted, IPv6 in RFC
 * 5952's form; "" for none.
 */
function ipString(b) {
  if (b.length === 0) {
    return '';
  }
  if (b.length === 4) {
    return [...b].join('.');
  }
  const groups = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push(b.readUInt16BE(i));
  }
  // The longest run (of at least two) of zero groups becomes ::.
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) {
      j++;
    }
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) {
    return hex.join(':');
  }
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

module.exports.ipString = ipString;
