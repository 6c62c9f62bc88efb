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

/** ids writes a trace id (hi, lo) or a span id (hi alone) as big-endian bytes. */
function ids(w, field, hi, lo) {
  const n = lo === undefined ? 8 : 16;
  w.tag(field, 2);
  w.varint(n);
  w.ensure(n);
  w.buf.writeBigUInt64BE(hi, w.pos);
  if (lo !== undefined) {
    w.buf.writeBigUInt64BE(lo, w.pos + 8);
  }
  w.pos += n;
}

/** stringAttr writes a KeyValue with a string AnyValue as field. */
function stringAttr(w, field, key, value) {
  w.fork(field);
  w.bytes(1, valid(key));
  // A string value is written even when empty: AnyValue is a oneof.
  const v = valid(value);
  w.fork(2);
  w.tag(1, 2);
  w.varint(v.length);
  w.push(v);
  w.ldelim();
  w.ldelim();
}

/** intAttr writes a KeyValue with an int AnyValue as field. */
function intAttr(w, field, key, value) {
  w.fork(field);
  w.bytes(1, key);
  w.fork(2);
  w.tag(3, 0);
  w.varint(value);
  w.ldelim();
  w.ldelim();
}

const PEER_SERVICE = Buffer.from('peer.service');
const PEER_ADDRESS = Buffer.from('network.peer.address');
const SERVICE_NAME = Buffer.from('service.name');

/** span writes s as a Span, field 2 of a ScopeSpans. */
function span(w, s) {
  w.fork(2);
  ids(w, 1, s.traceIdHigh, s.traceIdLow);
  ids(w, 2, s.spanId);
  if (s.traceState.length > 0) {
    w.bytes(3, valid(s.traceState));
  }
  // A root span has no parent_span_id at all: 8 zero bytes are not a root
  // to back ends.
  if (s.parentId !== 0n) {
    ids(w, 4, s.parentId);
  }
  w.bytes(5, valid(s.name));
  w.uint(6, OTLP_KIND[s.kind] || 1);
  w.fixed64(7, s.start);
  w.fixed64(8, s.start + s.duration);
  for (const t of s.tags) {
    stringAttr(w, 9, t.key, t.value);
  }
  if (s.remoteService.length > 0) {
    stringAttr(w, 9, PEER_SERVICE, s.remoteService);
  }
  if (s.remoteIp.length > 0) {
    stringAttr(w, 9, PEER_ADDRESS, Buffer.from(ipString(s.remoteIp)));
  }
  if (s.remotePort !== 0) {
    intAttr(w, 9, 'network.peer.port', s.remotePort);
  }
  for (const e of s.events) {
    w.fork(11);
    w.fixed64(1, e.unixNano);
    w.bytes(2, valid(e.value));
    w.ldelim();
  }
  if (s.error) {
    w.fork(15);
    w.uint(3, STATUS_CODE_ERROR);
    w.ldelim();
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
  w.ldelim();
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
  const w = new Writer(512 * spans.length + 256);
  for (const { service, spans: group } of byService.values()) {
    w.fork(1); // ResourceSpans
    w.fork(1); // Resource
    if (!('service.name' in resource)) {
      stringAttr(w, 1, SERVICE_NAME, service);
    }
    for (const [k, v] of Object.entries(resource)) {
      stringAttr(w, 1, Buffer.from(k), Buffer.from(String(v)));
    }
    w.ldelim();
    w.fork(2); // ScopeSpans
    w.fork(1); // InstrumentationScope
    w.bytes(1, 'tracehop-driver-otlpjs');
    w.bytes(2, scopeVersion);
    w.ldelim();
    for (const s of group) {
      span(w, s);
    }
    w.ldelim();
    w.ldelim();
  }
  return w.finish();
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
