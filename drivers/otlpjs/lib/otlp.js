'use strict';
// Decoded spans as an OTLP ExportTraceServiceRequest (protobuf, the
// encoding OTLP/HTTP's application/x-protobuf carries), and the answer's
// partial success read back.
const { isUtf8 } = require('node:buffer');
const { Writer, read } = require('./pb.js');
const { hex16, ipString, ORIGIN_UNKNOWN, ORIGIN_REMOTE, KIND_SERVER } = require('./batch.js');

// OTLP's span kinds, by tracehop's kind (1 server .. 5 internal).
const OTLP_KIND = [1, 2, 3, 4, 5, 1];
const SPAN_FLAG_SAMPLED = 0x1;
const SPAN_FLAG_HAS_IS_REMOTE = 0x100;
const SPAN_FLAG_IS_REMOTE = 0x200;
const STATUS_CODE_ERROR = 2;

const utf8 = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true });

/** valid returns b as UTF-8 bytes, each invalid sequence replaced by U+FFFD. */
function valid(b) {
  return isUtf8(b) ? b : Buffer.from(utf8.decode(b), 'utf8');
}

function u64BE(hi, lo) {
  const b = Buffer.alloc(lo === undefined ? 8 : 16);
  if (lo === undefined) {
    b.writeBigUInt64BE(hi);
  } else {
    b.writeBigUInt64BE(hi);
    b.writeBigUInt64BE(lo, 8);
  }
  return b;
}

function stringAttr(key, value) {
  const any = new Writer();
  // A string value is written even when empty: AnyValue is a oneof.
  const v = valid(value);
  any.tag(1, 2);
  any.varint(v.length);
  any.push(v);
  const kv = new Writer();
  kv.bytes(1, valid(key));
  kv.message(2, any);
  return kv;
}

function intAttr(key, value) {
  const any = new Writer();
  any.tag(3, 0);
  any.varint(value);
  const kv = new Writer();
  kv.bytes(1, key);
  kv.message(2, any);
  return kv;
}

function span(s) {
  const w = new Writer();
  w.bytes(1, u64BE(s.traceIdHigh, s.traceIdLow));
  w.bytes(2, u64BE(s.spanId));
  if (s.traceState.length > 0) {
    w.bytes(3, valid(s.traceState));
  }
  // A root span has no parent_span_id at all: 8 zero bytes are not a root
  // to back ends.
  if (s.parentId !== 0n) {
    w.bytes(4, u64BE(s.parentId));
  }
  w.bytes(5, valid(s.name));
  w.uint(6, OTLP_KIND[s.kind] || 1);
  w.fixed64(7, s.start);
  w.fixed64(8, s.start + s.duration);
  for (const t of s.tags) {
    w.message(9, stringAttr(t.key, t.value));
  }
  if (s.remoteService.length > 0) {
    w.message(9, stringAttr(Buffer.from('peer.service'), s.remoteService));
  }
  if (s.remoteIp.length > 0) {
    w.message(9, stringAttr(Buffer.from('network.peer.address'), Buffer.from(ipString(s.remoteIp))));
  }
  if (s.remotePort !== 0) {
    w.message(9, intAttr('network.peer.port', s.remotePort));
  }
  for (const e of s.events) {
    const ev = new Writer();
    ev.fixed64(1, e.unixNano);
    ev.bytes(2, valid(e.value));
    w.message(11, ev);
  }
  if (s.error) {
    const st = new Writer();
    st.uint(3, STATUS_CODE_ERROR);
    w.message(15, st);
  }
  let flags = s.sampled ? SPAN_FLAG_SAMPLED : 0;
  if (s.parentId !== 0n) {
    // Where the parent came from, as the host says; unknown: from the
    // kind, as docs/driver-protocol.md section 4.1 says.
    let origin = s.parentOrigin;
    if (origin === ORIGIN_UNKNOWN) {
      origin = s.kind === KIND_SERVER ? ORIGIN_REMOTE : 1;
    }
    flags |= SPAN_FLAG_HAS_IS_REMOTE | (origin === ORIGIN_REMOTE ? SPAN_FLAG_IS_REMOTE : 0);
  }
  w.fixed32(16, flags);
  return w;
}

/**
 * request encodes spans as an ExportTraceServiceRequest: one ResourceSpans
 * per local service (service.name), with the config's resource attributes.
 */
function request(spans, { resource = {}, scopeVersion = '' } = {}) {
  const byService = new Map();
  for (const s of spans) {
    const key = s.localService.toString('latin1');
    if (!byService.has(key)) {
      byService.set(key, { service: s.localService, spans: [] });
    }
    byService.get(key).spans.push(s);
  }
  const req = new Writer();
  for (const { service, spans: group } of byService.values()) {
    const res = new Writer();
    const attrs = { ...resource };
    const r = new Writer();
    if (!('service.name' in attrs)) {
      r.message(1, stringAttr(Buffer.from('service.name'), service));
    }
    for (const [k, v] of Object.entries(attrs)) {
      r.message(1, stringAttr(Buffer.from(k), Buffer.from(String(v))));
    }
    res.message(1, r);
    const scope = new Writer();
    const sc = new Writer();
    sc.bytes(1, 'tracehop-driver-otlpjs');
    sc.bytes(2, scopeVersion);
    scope.message(1, sc);
    for (const s of group) {
      scope.message(2, span(s));
    }
    res.message(2, scope);
    req.message(1, res);
  }
  return req.finish();
}

/**
 * partialSuccess reads an ExportTraceServiceResponse: the spans the
 * receiver refused and its message ({rejected: 0, message: ''} for none).
 */
function partialSuccess(body) {
  const out = { rejected: 0, message: '' };
  if (!body || body.length === 0) {
    return out;
  }
  const ps = read(body)[1];
  if (!ps) {
    return out;
  }
  const f = read(ps[ps.length - 1]);
  if (f[1]) {
    out.rejected = Number(f[1][0]);
  }
  if (f[2]) {
    out.message = f[2][0].toString('utf8');
  }
  return out;
}

module.exports = { request, partialSuccess, valid, hex16 };
