'use strict';
// The shared-memory span transport (docs/driver-protocol.md, section 7),
// read without mapping it: Node.js cannot map a file, so each batch is
// copied out of the ring with pread (section 7.2, "Reading without a
// mapping"). That is still one copy in the kernel where the gRPC path
// costs the batch's trip through TLS, HTTP/2 and protobuf in both
// processes.
const fs = require('node:fs');

// The SDK's limits on a ring's size (section 7.2).
const MIN_RING = 16;
const MAX_RING = 1 << 30;
const HEADER = 16;

/** RingError is a region this driver must refuse (FAILED_PRECONDITION). */
class RingError extends Error {}

/**
 * takeRing opens the ring the host handed over (section 7.2): its
 * descriptor, named by TRACEHOP_SPAN_RING_FD, and its size. It returns
 * null, with why in reason, when there is none or it cannot be used.
 */
function takeRing(env, fstat = fs.fstatSync) {
  const v = env.TRACEHOP_SPAN_RING_FD;
  if (v === undefined || v === '') {
    return { ring: null, reason: 'no TRACEHOP_SPAN_RING_FD' };
  }
  const fd = Number(v);
  if (!Number.isInteger(fd) || fd < 0) {
    return { ring: null, reason: `TRACEHOP_SPAN_RING_FD is ${JSON.stringify(v)}, not a descriptor` };
  }
  let size;
  try {
    size = fstat(fd).size;
  } catch (e) {
    return { ring: null, reason: `descriptor ${fd}: ${e.message}` };
  }
  if (!(size > MIN_RING && size <= MAX_RING)) {
    return { ring: null, reason: `a ring of ${size} bytes (want more than ${MIN_RING}, at most ${MAX_RING})` };
  }
  return { ring: { fd, size }, reason: '' };
}

function preadExactly(read, fd, buf, position) {
  let done = 0;
  while (done < buf.length) {
    const n = read(fd, buf, done, buf.length - done, position + done);
    if (n === 0) {
      throw new RingError(`the ring ends at ${position + done}, inside a region`);
    }
    done += n;
  }
}

/**
 * readRegion returns a copy of the batch an Export names in the ring, after
 * the checks of section 7.4 (a RingError says which failed), and checks
 * once the copy is made that the host did not reuse the region meanwhile.
 * req carries ring_offset, ring_seq (strings: 64-bit), ring_length and
 * span_count. read is fs.readSync's shape (fd, buffer, offset, length,
 * position), for tests.
 */
function readRegion(ring, req, read = fs.readSync) {
  const off = BigInt(req.ring_offset || 0);
  const length = BigInt(req.ring_length || 0);
  const seq = BigInt(req.ring_seq || 0);
  const size = BigInt(ring.size);
  if (seq === 0n) {
    throw new RingError('ring_seq 0 names no region');
  }
  if (off % 8n !== 0n) {
    throw new RingError(`ring_offset ${off} is not a multiple of 8`);
  }
  // Each term against the size first: no sum can overflow here (BigInt),
  // but the checks are the ones section 7.4 lists.
  if (off > size || length > size || off + BigInt(HEADER) > size || off + BigInt(HEADER) + length > size) {
    throw new RingError(`a region of ${length} bytes at ${off} does not fit in the ring of ${size} bytes`);
  }
  const at = Number(off);
  const head = Buffer.allocUnsafe(HEADER);
  preadExactly(read, ring.fd, head, at);
  const got = head.readBigUInt64LE(0);
  if (got !== seq) {
    throw new RingError(`the region at ${off} has sequence number ${got}, the Export names ${seq}`);
  }
  if (BigInt(head.readUInt32LE(8)) !== length || head.readUInt32LE(12) !== Number(req.span_count)) {
    throw new RingError(`the region at ${off} holds ${head.readUInt32LE(8)} bytes and ${head.readUInt32LE(12)} spans, the Export names ${length} and ${req.span_count}`);
  }
  const batch = Buffer.allocUnsafe(Number(length));
  preadExactly(read, ring.fd, batch, at + HEADER);
  // The copy is this driver's from here on: what remains is whether the
  // host rewrote the region while it was made (only ever under a driver
  // that outlived the RPC's deadline).
  preadExactly(read, ring.fd, head.subarray(0, 8), at);
  if (head.readBigUInt64LE(0) !== seq) {
    throw new RingError(`the region at ${off} was reused while it was read (sequence number ${head.readBigUInt64LE(0)}, was ${seq}): the Export came too late`);
  }
  return batch;
}

module.exports = { takeRing, readRegion, RingError };
