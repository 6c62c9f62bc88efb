'use strict';
// The span ring read with pread (docs/driver-protocol.md, section 7): a
// file laid out as the host lays out a ring, and the checks of section
// 7.4 one by one.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { takeRing, readRegion, RingError } = require('../lib/ring.js');
const { decode } = require('../lib/batch.js');

const SIZE = 4096;

// The worked example of section 4.4, as its vector holds it.
const vectors = path.join(__dirname, '..', '..', '..', 'core', 'wire', 'testdata', 'vectors');
function example() {
  for (const f of fs.readdirSync(vectors).filter((n) => n.endsWith('.json'))) {
    const v = JSON.parse(fs.readFileSync(path.join(vectors, f), 'utf8'));
    if (!v.malformed && v.span_count === 1 && !v.trace_state && !v.tag_keys) {
      const hex = fs.readFileSync(path.join(vectors, f.replace(/\.json$/, '.hex')), 'utf8');
      return { v, batch: Buffer.from(hex.replace(/\s+/g, ''), 'hex') };
    }
  }
  throw new Error('no one-span vector');
}

// ringFile writes a ring of SIZE bytes with one region at off (section
// 7.3) and returns it open, as the host hands it over.
function ringFile(t, off, seq, batch, count) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'otlpjs-ring-'));
  const file = path.join(dir, 'ring');
  const mem = Buffer.alloc(SIZE);
  mem.writeBigUInt64LE(BigInt(seq), off);
  mem.writeUInt32LE(batch.length, off + 8);
  mem.writeUInt32LE(count, off + 12);
  batch.copy(mem, off + 16);
  fs.writeFileSync(file, mem);
  const fd = fs.openSync(file, 'r');
  t.after(() => {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return fd;
}

test('takeRing: the descriptor and its size, or why not', (t) => {
  assert.equal(takeRing({}).ring, null);
  assert.match(takeRing({ TRACEHOP_SPAN_RING_FD: 'three' }).reason, /not a descriptor/);
  const fd = ringFile(t, 0, 1, Buffer.alloc(8), 0);
  assert.deepEqual(takeRing({ TRACEHOP_SPAN_RING_FD: String(fd) }).ring, { fd, size: SIZE });
  assert.match(takeRing({ TRACEHOP_SPAN_RING_FD: String(fd) }, () => ({ size: 16 })).reason, /16 bytes/);
  assert.match(takeRing({ TRACEHOP_SPAN_RING_FD: '987654' }).reason, /descriptor 987654/);
});

test('readRegion: the batch a region holds, decoded as one inside an Export', (t) => {
  const { v, batch } = example();
  const fd = ringFile(t, 64, 7, batch, 1);
  const ring = { fd, size: SIZE };
  const got = readRegion(ring, { ring_offset: '64', ring_seq: '7', ring_length: batch.length, span_count: 1 });
  assert.deepEqual(got, batch);
  const now = BigInt(v.now_unix_nano);
  assert.deepEqual(decode(got, 1, now, false, 0), decode(batch, 1, now, false, 0));
});

test('readRegion: what section 7.4 refuses', (t) => {
  const { batch } = example();
  const fd = ringFile(t, 64, 7, batch, 1);
  const ring = { fd, size: SIZE };
  const ok = { ring_offset: '64', ring_seq: '7', ring_length: batch.length, span_count: 1 };
  for (const [name, req, want] of [
    ['an offset not a multiple of 8', { ring_offset: '60' }, /not a multiple of 8/],
    ['past the end', { ring_offset: String(SIZE - 8) }, /does not fit/],
    ['a length past the end', { ring_length: SIZE }, /does not fit/],
    ['an offset that would overflow 64 bits', { ring_offset: '18446744073709551608' }, /does not fit/],
    ['another sequence number', { ring_seq: '8' }, /sequence number 7, the Export names 8/],
    ['sequence number 0', { ring_seq: '0' }, /ring_seq 0 names no region/],
    ['another length', { ring_length: batch.length - 1 }, /holds \d+ bytes and 1 spans/],
    ['another span count', { span_count: 2 }, /the Export names \d+ and 2/],
  ]) {
    assert.throws(() => readRegion(ring, { ...ok, ...req }), (e) => e instanceof RingError && want.test(e.message), name);
  }
});

test('readRegion: a region the host reused while it was copied', (t) => {
  const { batch } = example();
  const fd = ringFile(t, 0, 7, batch, 1);
  let reads = 0;
  // The third read is the sequence number again: the host has moved on.
  const racing = (fd, buf, off, len, pos) => {
    const n = fs.readSync(fd, buf, off, len, pos);
    if (++reads === 3) {
      buf.writeBigUInt64LE(9n, off);
    }
    return n;
  };
  assert.throws(() => readRegion({ fd, size: SIZE }, { ring_offset: '0', ring_seq: '7', ring_length: batch.length, span_count: 1 }, racing),
    (e) => e instanceof RingError && /reused while it was read/.test(e.message));
});
