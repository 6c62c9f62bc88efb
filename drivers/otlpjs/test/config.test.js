'use strict';
// The config block: defaults, strict keys, every problem at once.
const test = require('node:test');
const assert = require('node:assert/strict');
const { parse, secretKeys, DEFAULT_ENDPOINT } = require('../lib/config.js');

const cfg = (o) => parse(Buffer.from(JSON.stringify(o)));

test('null and {} take the defaults', () => {
  for (const raw of ['null', '{}', '']) {
    const { config, problems } = parse(Buffer.from(raw));
    assert.equal(problems, undefined);
    assert.equal(config.endpoint, DEFAULT_ENDPOINT);
    assert.equal(config.timeoutMs, 10000);
  }
});

test('a URL without a path gets /v1/traces', () => {
  assert.equal(cfg({ endpoint: 'http://jaeger:4318' }).config.endpoint, 'http://jaeger:4318/v1/traces');
  assert.equal(cfg({ endpoint: 'https://x/otlp/v1/traces' }).config.endpoint, 'https://x/otlp/v1/traces');
});

test('every problem at once, each naming its key', () => {
  const { problems } = cfg({ endpont: 'x', endpoint: 'localhost:4318', protocol: 'grpc', timeout: 'soon', headers: { a: 1 } });
  assert.deepEqual(problems.map((p) => p.field).sort(), ['endpoint', 'endpont', 'headers', 'protocol', 'timeout']);
});

test('durations', () => {
  assert.equal(cfg({ timeout: '1m30s' }).config.timeoutMs, 90000);
  assert.equal(cfg({ timeout: '250ms' }).config.timeoutMs, 250);
  assert.ok(cfg({ timeout: '10' }).problems);
});

test('header values are secret', () => {
  assert.deepEqual(secretKeys(cfg({ headers: { 'x-api-key': 's3cr3t' } }).config), ['headers.x-api-key']);
});

test('an unknown key near a valid one says which', () => {
  const { problems } = cfg({ endpont: 'http://x' });
  assert.match(problems[0].description, /did you mean "endpoint"\?/);
});
