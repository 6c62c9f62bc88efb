'use strict';
// The protobuf writer: nested messages written in place, whose lengths
// take one byte or more (each varint boundary), read back by pb.read.
const test = require('node:test');
const assert = require('node:assert/strict');
const { Writer, read } = require('../lib/pb.js');

test('nested messages across the varint boundaries of their length', () => {
  for (const n of [0, 1, 127, 128, 129, 16383, 16384, 70000]) {
    const w = new Writer(8); // grows as it goes
    w.uint(1, 7);
    w.fork(2);
    w.bytes(1, Buffer.alloc(n, 0x61));
    w.fork(2); // nested twice, after the long field
    w.uint(1, 2n ** 64n - 1n);
    w.ldelim();
    w.ldelim();
    w.fixed64(3, 1765000000000000000n);
    w.fixed32(4, 0x201);
    const top = read(w.finish());
    assert.deepEqual(top[1], [7n], `n=${n}`);
    const inner = read(top[2][0]);
    assert.equal(inner[1] ? inner[1][0].length : 0, n, `n=${n}: the long field`);
    assert.deepEqual(read(inner[2][0])[1], [2n ** 64n - 1n], `n=${n}: the message after it`);
    assert.deepEqual(top[3], [1765000000000000000n]);
    assert.deepEqual(top[4], [0x201n]);
  }
});

test('what is left out and what is not', () => {
  const w = new Writer();
  w.uint(1, 0);
  w.uint(2, 0n);
  w.bytes(3, '');
  w.bytes(4, Buffer.alloc(0));
  w.fork(5); // an empty message is written: AnyValue's oneof
  w.ldelim();
  w.bytes(6, 'é');
  assert.deepEqual([...w.finish()], [5 << 3 | 2, 0, 6 << 3 | 2, 2, 0xc3, 0xa9]);
});
