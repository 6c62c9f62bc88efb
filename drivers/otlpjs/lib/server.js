'use strict';
// The driver process: go-plugin's handshake with AutoMTLS, and the gRPC
// services of docs/driver-protocol.md section 3, serving the Driver
// service with an OTLP/HTTP exporter.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const x509 = require('@peculiar/x509');
const { decode, BatchError, TAG_KEYS } = require('./batch.js');
const otlp = require('./otlp.js');
const status = require('./status.js');
const config = require('./config.js');
const { takeRing, readRegion, RingError } = require('./ring.js');
const { version } = require('../package.json');

const MAGIC_COOKIE_KEY = 'TRACEHOP_DRIVER_MAGIC_COOKIE';
const MAGIC_COOKIE = 'b1f5c4c0-tracehop-driver';
const PROTOCOL_VERSION = 1;
const MAX_MESSAGE = 64 << 20;
// How long before the host's deadline an Export gives up, to answer in time.
const DEADLINE_MARGIN_MS = 50;

// driver.proto is the contract's own file, read at run time; found beside
// the package when installed (proto/driver.proto), else in the repository.
function driverProto() {
  const here = path.join(__dirname, '..', 'proto', 'driver.proto');
  if (fs.existsSync(here)) {
    return here;
  }
  return path.join(__dirname, '..', '..', '..', 'core', 'wire', 'driverpb', 'driver.proto');
}

/** log writes one hclog-style JSON line on standard error (section 3.6). */
function log(level, message, attrs = {}) {
  process.stderr.write(JSON.stringify({ '@level': level, '@message': message, '@timestamp': new Date().toISOString(), ...attrs }) + '\n');
}

/** selfSigned makes the driver's one-time TLS server certificate (section 2.3). */
async function selfSigned() {
  x509.cryptoProvider.set(crypto.webcrypto);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await crypto.webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: crypto.randomBytes(16).toString('hex').replace(/^[89a-f]/, '1'),
    name: 'CN=localhost, O=tracehop',
    notBefore: new Date(now - 30000),
    notAfter: new Date(now + 30 * 365 * 24 * 3600 * 1000),
    signingAlgorithm: alg,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.keyCertSign, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'dns', value: 'localhost' }]),
    ],
  });
  const pkcs8 = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  return { der: Buffer.from(cert.rawData), certPem: cert.toString('pem') + '\n', keyPem };
}

/** retryAfterMs reads an HTTP Retry-After: seconds or a date. */
function retryAfterMs(h) {
  if (!h) {
    return 0;
  }
  if (/^\d+$/.test(h.trim())) {
    return Number(h.trim()) * 1000;
  }
  const t = Date.parse(h);
  return Number.isNaN(t) ? 0 : Math.max(0, t - Date.now());
}

/** Driver is the tracehop.driver.v1.Driver service's state. */
class Driver {
  /** ring is the span ring the host handed over ({fd, size}), or null. */
  constructor(ring = null) {
    this.cfg = null;
    this.closed = false;
    this.inFlight = new Set();
    this.ring = ring;
    this.useRing = false;
  }

  configure(call, cb) {
    if (this.cfg !== null) {
      return cb(status.permanent('Configure called twice'));
    }
    const { config: c, problems } = config.parse(call.request.config_json);
    if (problems) {
      log('warn', 'config refused', { problems: problems.length });
      return cb(status.badConfig(problems));
    }
    this.cfg = c;
    this.scopeVersion = version;
    // Taken only when the host offers the size this driver found (7.2).
    const offered = String(call.request.span_ring_bytes || '0');
    this.useRing = this.ring !== null && offered !== '0' && offered === String(this.ring.size);
    log('info', 'configured', {
      endpoint: c.endpoint,
      host_version: call.request.host ? call.request.host.version : '',
      transport: this.useRing ? 'shm' : 'grpc',
    });
    cb(null, {
      capabilities: {
        propagation: ['tracecontext'],
        trace_id_128bit: true,
        precision: 'PRECISION_NANOSECOND',
        shared_spans: false,
        secret_keys: config.secretKeys(c),
      },
      span_ring: this.useRing,
      span_trace_state: true,
      span_tag_keys: TAG_KEYS.length,
    });
  }

  export(call, cb) {
    if (this.cfg === null) {
      return cb(status.permanent('Export before Configure'));
    }
    if (this.closed) {
      return cb(status.permanent('Export after Shutdown'));
    }
    const req = call.request;
    let batch = req.spans;
    if (req.ring_seq && req.ring_seq !== '0') {
      if (!this.useRing) {
        return cb(status.permanent('a batch in the span ring, which this driver did not accept'));
      }
      try {
        batch = readRegion(this.ring, req);
      } catch (e) {
        // A region refused (section 7.4), or the descriptor failing: the
        // batch is dropped and counted by the host, and the driver lives.
        const why = e instanceof RingError ? e.message : `reading the span ring: ${e.message}`;
        return cb(status.permanent(`batch ${req.batch_id}: ${why}`));
      }
    }
    let spans;
    try {
      spans = decode(batch, req.span_count, BigInt(Date.now()) * 1000000n, true, TAG_KEYS.length);
    } catch (e) {
      if (e instanceof BatchError) {
        return cb(status.permanent(`malformed batch ${req.batch_id}: ${e.message}`));
      }
      throw e;
    }
    if (spans.length === 0) {
      return cb(null, {});
    }
    const p = this.send(call, spans).then((r) => cb(null, r), (err) => cb(err));
    this.inFlight.add(p);
    p.finally(() => this.inFlight.delete(p));
  }

  // send posts the spans and classes the outcome (section 5.1).
  async send(call, spans) {
    const c = this.cfg;
    const body = otlp.request(spans, { resource: c.resource, scopeVersion: this.scopeVersion });
    let wait = c.timeoutMs;
    const deadline = call.getDeadline();
    const at = deadline instanceof Date ? deadline.getTime() : Number(deadline);
    if (Number.isFinite(at)) {
      wait = Math.min(wait, Math.max(0, at - Date.now() - DEADLINE_MARGIN_MS));
    }
    const ac = new AbortController();
    const timer = setTimeout(() => ac.abort(new Error(`no answer within ${wait} ms`)), wait);
    const onCancel = () => ac.abort(new Error('the host cancelled the export'));
    call.on('cancelled', onCancel);
    const where = `POST ${c.endpoint}`;
    try {
      let res;
      try {
        res = await fetch(c.endpoint, {
          method: 'POST',
          headers: { ...c.headers, 'content-type': 'application/x-protobuf', 'user-agent': `tracehop-driver-otlpjs/${version}` },
          body,
          signal: ac.signal,
        });
      } catch (e) {
        const why = ac.signal.aborted ? String(ac.signal.reason && ac.signal.reason.message) : (e.cause && (e.cause.code || e.cause.message)) || e.message;
        throw status.retryable(`${where}: ${why}`);
      }
      const answer = Buffer.from(await res.arrayBuffer());
      if (res.ok) {
        const ps = otlp.partialSuccess(answer);
        return { rejected_spans: Math.min(ps.rejected, spans.length), rejected_message: ps.message };
      }
      const msg = `${where}: ${res.status} ${res.statusText}`;
      if (res.status === 429 || res.status === 408 || res.status >= 500) {
        throw status.retryable(msg, retryAfterMs(res.headers.get('retry-after')));
      }
      if (res.status >= 400) {
        // The receiver refused the data itself: sending it again cannot help.
        throw status.permanent(msg);
      }
      throw status.retryable(msg);
    } catch (e) {
      if (e && typeof e.code === 'number') {
        throw e;
      }
      throw status.retryable(`${where}: ${e && e.message}`);
    } finally {
      clearTimeout(timer);
      call.removeListener('cancelled', onCancel);
    }
  }

  async shutdown(call, cb) {
    this.closed = true;
    const deadline = call.getDeadline();
    const at = deadline instanceof Date ? deadline.getTime() : Number(deadline);
    const wait = Number.isFinite(at) ? Math.max(0, at - Date.now() - DEADLINE_MARGIN_MS) : 5000;
    // Nothing is buffered: flushing is awaiting the exports in flight.
    await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((r) => setTimeout(r, wait).unref())]);
    cb(null, {});
  }
}

/** main runs the driver; it returns only by exiting the process. */
async function main() {
  if (process.env.TRACEHOP_DRIVER_INFO === '1') {
    process.stdout.write(JSON.stringify({ version: `v${version}`, protocol: PROTOCOL_VERSION, go: `node ${process.version}` }) + '\n');
    process.exit(0);
  }
  if (process.env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE) {
    process.stderr.write('tracehop-driver-otlpjs is a tracehop driver: tracehop starts it (tracing.driver: {name: otlpjs}); it is not run by hand.\n');
    process.exit(1);
  }
  const versions = (process.env.PLUGIN_PROTOCOL_VERSIONS || '').split(',').map((v) => Number(v.trim()));
  if (!versions.includes(PROTOCOL_VERSION)) {
    log('warn', 'the host does not list protocol version 1; answering 1 anyway', { host_versions: process.env.PLUGIN_PROTOCOL_VERSIONS || '' });
  }
  const clientCert = process.env.PLUGIN_CLIENT_CERT;
  if (!clientCert) {
    process.stderr.write('PLUGIN_CLIENT_CERT is not set: tracehop always runs drivers with mutual TLS\n');
    process.exit(1);
  }

  const loadOpts = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
  const driverPkg = grpc.loadPackageDefinition(protoLoader.loadSync(driverProto(), loadOpts));
  const pluginPkg = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(__dirname, '..', 'proto', 'plugin.proto'), loadOpts));
  const healthPkg = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(__dirname, '..', 'proto', 'health.proto'), loadOpts));

  const server = new grpc.Server({ 'grpc.max_receive_message_length': MAX_MESSAGE, 'grpc.max_send_message_length': MAX_MESSAGE });
  // The span ring (section 7). Its descriptor stays open (Node cannot set
  // close-on-exec): this driver starts no process that could inherit it.
  const { ring, reason } = takeRing(process.env);
  if (ring === null && process.env.TRACEHOP_SPAN_RING_FD) {
    log('warn', 'the span ring cannot be used: batches come over gRPC', { reason });
  }
  const driver = new Driver(ring);
  const streams = new Set();
  let socket = '';
  const exit = (code) => {
    for (const s of streams) {
      s.end();
    }
    server.forceShutdown();
    if (socket) {
      fs.rmSync(socket, { force: true });
    }
    process.exit(code);
  };

  server.addService(driverPkg.tracehop.driver.v1.Driver.service, {
    Configure: (call, cb) => driver.configure(call, cb),
    Export: (call, cb) => driver.export(call, cb),
    Shutdown: (call, cb) => driver.shutdown(call, cb),
  });
  server.addService(healthPkg.grpc.health.v1.Health.service, {
    Check: (call, cb) => {
      if (call.request.service === 'plugin' || call.request.service === '') {
        return cb(null, { status: 'SERVING' });
      }
      cb({ code: grpc.status.NOT_FOUND, details: `unknown service ${call.request.service}` });
    },
  });
  server.addService(pluginPkg.plugin.GRPCController.service, {
    // Answer at once, then exit (section 3.3).
    Shutdown: (call, cb) => {
      cb(null, {});
      setTimeout(() => exit(0), 10);
    },
  });
  server.addService(pluginPkg.plugin.GRPCStdio.service, {
    // Nothing is written to tracehop's standard output: the stream stays
    // open and empty until the process ends.
    StreamStdio: (call) => {
      streams.add(call);
      call.on('cancelled', () => streams.delete(call));
    },
  });

  const { der, certPem, keyPem } = await selfSigned();
  const creds = grpc.ServerCredentials.createSsl(Buffer.from(clientCert), [{ private_key: Buffer.from(keyPem), cert_chain: Buffer.from(certPem) }], true);
  // In the directory tracehop made for this launch (section 2.2): it
  // removes it, socket and all, if this process is killed.
  socket = path.join(process.env.PLUGIN_UNIX_SOCKET_DIR || process.env.TMPDIR || os.tmpdir(), `tracehop-otlpjs-${process.pid}-${crypto.randomBytes(4).toString('hex')}.sock`);
  await new Promise((resolve, reject) => server.bindAsync('unix://' + socket, creds, (err) => (err ? reject(err) : resolve())));

  // The handshake line (section 2.1): the certificate's DER in base64
  // without padding.
  const cert64 = der.toString('base64').replace(/=+$/, '');
  process.stdout.write(`1|${PROTOCOL_VERSION}|unix|${socket}|grpc|${cert64}\n`);

  // Exit when the host is gone (section 8.6): its pid is no longer our parent.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) {
      log('warn', 'tracehop is gone; flushing and exiting');
      driver.closed = true;
      Promise.race([Promise.allSettled([...driver.inFlight]), new Promise((r) => setTimeout(r, 5000))]).then(() => exit(0));
    }
  }, 1000);
}

module.exports = { main, Driver, selfSigned };
