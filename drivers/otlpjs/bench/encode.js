'use strict';
// The driver's CPU per span outside the network: a batch of proxy-like
// spans (the tags tracehop's spans carry) decoded from the batch layout and
// encoded as an OTLP request, the work each Export does.
// Run: node bench/encode.js [spans per batch] [batches]
const { encode, decode, TAG_KEYS } = require('../lib/batch.js');
const otlp = require('../lib/otlp.js');

const perBatch = Number(process.argv[2] || 500);
const batches = Number(process.argv[3] || 200);

function proxySpan(i) {
  const tag = (k, v) => ({ key: Buffer.from(k), value: Buffer.from(v) });
  return {
    traceIdHigh: 0x0af7651916cd43ddn, traceIdLow: 0x8448eb211c80319cn + BigInt(i),
    spanId: 0x00f067aa0ba902b7n + BigInt(i), parentId: 0x1122334455667788n,
    start: 1765000000000000000n + BigInt(i) * 1000n, duration: 250000n,
    kind: 1, error: false, sampled: true, debug: false, shared: false, parentOrigin: 2,
    name: Buffer.from('ingress'), localService: Buffer.from('frontend'), remoteService: Buffer.alloc(0),
    remoteIp: Buffer.from([127, 0, 0, 1]), remotePort: 40000 + (i % 1000),
    tags: [
      tag('component', 'proxy'), tag('node_id', 'node-1'), tag('guid:x-request-id', `0f2b7c8e-5d1a-4c3b-9e6f-${String(i).padStart(12, '0')}`),
      tag('http.url', 'http://svc/trace/' + i), tag('http.method', 'GET'), tag('http.protocol', 'HTTP/1.1'),
      tag('user_agent', 'wrk'), tag('peer.address', '127.0.0.1'), tag('request_size', '0'), tag('response_size', '100'),
      tag('upstream_cluster', 'up'), tag('upstream_address', '127.0.0.1:18080'), tag('http.status_code', '200'),
    ],
    events: [], traceState: Buffer.alloc(0),
  };
}

const spans = Array.from({ length: perBatch }, (_, i) => proxySpan(i));
const batch = encode(spans, false, TAG_KEYS.length);
const now = 1765000000000000000n;
let bytes = 0;
for (let i = 0; i < 20; i++) { // warm-up
  bytes = otlp.request(decode(batch, perBatch, now, false, TAG_KEYS.length)).length;
}
const t0 = process.cpuUsage();
for (let i = 0; i < batches; i++) {
  otlp.request(decode(batch, perBatch, now, false, TAG_KEYS.length));
}
const used = process.cpuUsage(t0);
const us = (used.user + used.system) / (perBatch * batches);
console.log(`${perBatch} spans a batch, ${batches} batches: ${us.toFixed(2)} µs of CPU per span (decode and encode), ${(bytes / perBatch).toFixed(0)} bytes of OTLP per span`);
