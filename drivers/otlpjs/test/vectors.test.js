'use strict';
// The batch layout's test vectors (docs/driver-protocol.md, section 9),
// decoded and encoded by lib/batch.js.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const path = require('node:path');
const net = require('node:net');
const { decode, encode, hex16, ipString } = require('../lib/batch.js');

const dir = path.join(__dirname, '..', '..', '..', 'core', 'wire', 'testdata', 'vectors');

// A STRING of the vectors: a JSON string when the bytes are UTF-8, else {hex}.
function fromString(v) {
  return typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v.hex, 'hex');
}
function toString(b) {
  const s = new TextDecoder('utf-8', { fatal: false, ignoreBOM: true }).decode(b);
  return Buffer.from(s, 'utf8').equals(b) ? s : { hex: b.toString('hex') };
}

function ipFromJSON(s) {
  if (s === '') {
    return Buffer.alloc(0);
  }
  if (net.isIPv4(s)) {
    return Buffer.from(s.split('.').map(Number));
  }
  // Expand an RFC 5952 IPv6 address into 16 bytes.
  const [head, tail] = s.includes('::') ? s.split('::') : [s, null];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const b = Buffer.alloc(16);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), 2 * i));
  return b;
}

function spanFromJSON(j) {
  return {
    traceIdHigh: BigInt('0x' + j.trace_id.slice(0, 16)),
    traceIdLow: BigInt('0x' + j.trace_id.slice(16)),
    spanId: BigInt('0x' + j.span_id),
    parentId: BigInt('0x' + j.parent_id),
    start: BigInt(j.start_unix_nano),
    duration: BigInt(j.duration_nanos),
    kind: j.kind,
    error: j.error, sampled: j.sampled, debug: j.debug, shared: j.shared,
    parentOrigin: j.parent_origin,
    name: fromString(j.name),
    localService: fromString(j.local_service),
    remoteService: fromString(j.remote_service),
    remoteIp: ipFromJSON(j.remote_ip),
    remotePort: j.remote_port,
    tags: j.tags.map((t) => ({ key: fromString(t.key), value: fromString(t.value) })),
    events: j.events.map((e) => ({ unixNano: BigInt(e.unix_nano), value: fromString(e.value) })),
    traceState: j.trace_state === undefined ? Buffer.alloc(0) : fromString(j.trace_state),
  };
}

function spanToJSON(s) {
  const j = {
    trace_id: hex16(s.traceIdHigh) + hex16(s.traceIdLow),
    span_id: hex16(s.spanId),
    parent_id: hex16(s.parentId),
    start_unix_nano: s.start.toString(),
    duration_nanos: s.duration.toString(),
    kind: s.kind,
    error: s.error, sampled: s.sampled, debug: s.debug, shared: s.shared,
    parent_origin: s.parentOrigin,
    name: toString(s.name),
    local_service: toString(s.localService),
    remote_service: toString(s.remoteService),
    remote_ip: ipString(s.remoteIp),
    remote_port: s.remotePort,
    tags: s.tags.map((t) => ({ key: toString(t.key), value: toString(t.value) })),
    events: s.events.map((e) => ({ unix_nano: e.unixNano.toString(), value: toString(e.value) })),
  };
  if (s.traceState.length > 0) {
    j.trace_state = toString(s.traceState);
  }
  return j;
}

const names = fs.readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5));

test('there are vectors', () => {
  assert.ok(names.length >= 20, `only ${names.length} vectors in ${dir}`);
});

for (const name of names) {
  test(name, () => {
    const v = JSON.parse(fs.readFileSync(path.join(dir, name + '.json'), 'utf8'));
    const batch = Buffer.from(fs.readFileSync(path.join(dir, name + '.hex'), 'utf8').replace(/\s+/g, ''), 'hex');
    const traceState = v.trace_state === true;
    const tagKeys = v.tag_keys || 0;
    if (v.malformed) {
      assert.throws(() => decode(batch, v.span_count, 0n, traceState, tagKeys), undefined, `a decoder must reject it: ${v.malformed}`);
      return;
    }
    const got = decode(batch, v.span_count, BigInt(v.now_unix_nano), traceState, tagKeys).map(spanToJSON);
    assert.deepStrictEqual(got, v.sanitized || v.spans);
    if (!v.decode_only) {
      assert.strictEqual(encode(v.spans.map(spanFromJSON), traceState, tagKeys).toString('hex'), batch.toString('hex'));
    }
  });
}
