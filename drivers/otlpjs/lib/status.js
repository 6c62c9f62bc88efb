'use strict';
// gRPC error statuses with google.rpc details (docs/driver-protocol.md,
// section 5): RetryInfo on a retryable Export failure, BadRequest on a
// refused config. The details travel in the grpc-status-details-bin
// trailer as a google.rpc.Status.
const grpc = require('@grpc/grpc-js');
const { Writer } = require('./pb.js');

function any(typeName, w) {
  const a = new Writer();
  a.bytes(1, 'type.googleapis.com/' + typeName);
  a.bytes(2, w.finish());
  return a;
}

function withDetails(code, message, details) {
  const st = new Writer();
  st.uint(1, code);
  st.bytes(2, message);
  for (const d of details) {
    st.message(3, d);
  }
  const metadata = new grpc.Metadata();
  metadata.set('grpc-status-details-bin', st.finish());
  return { code, details: message, metadata };
}

/** retryable: ABORTED, with a RetryInfo when the back end said when to come back. */
function retryable(message, retryAfterMs) {
  if (!(retryAfterMs > 0)) {
    return { code: grpc.status.ABORTED, details: message };
  }
  const dur = new Writer();
  dur.uint(1, Math.floor(retryAfterMs / 1000));
  dur.uint(2, Math.round((retryAfterMs % 1000) * 1e6));
  const ri = new Writer();
  ri.message(1, dur);
  return withDetails(grpc.status.ABORTED, message, [any('google.rpc.RetryInfo', ri)]);
}

/** permanent: FAILED_PRECONDITION, the batch is dropped. */
function permanent(message) {
  return { code: grpc.status.FAILED_PRECONDITION, details: message };
}

/** badConfig: INVALID_ARGUMENT with a BadRequest naming each key. */
function badConfig(problems) {
  const br = new Writer();
  for (const p of problems) {
    const v = new Writer();
    v.bytes(1, p.field);
    v.bytes(2, p.description);
    br.message(1, v);
  }
  const message = problems.map((p) => `${p.field}: ${p.description}`).join('; ');
  return withDetails(grpc.status.INVALID_ARGUMENT, message, [any('google.rpc.BadRequest', br)]);
}

module.exports = { retryable, permanent, badConfig };
