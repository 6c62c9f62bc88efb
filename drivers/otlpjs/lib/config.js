'use strict';
// The driver's config block (tracing.driver.config), decoded strictly:
// every problem is reported at once, each with its key.

const DEFAULT_ENDPOINT = 'http://localhost:4318/v1/traces';
const DEFAULT_TIMEOUT_MS = 10000;
const KEYS = ['endpoint', 'protocol', 'headers', 'timeout', 'resource'];

// A Go-style duration: "10s", "500ms", "1m30s".
function parseDuration(s) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  const unit = { ms: 1, s: 1000, m: 60000, h: 3600000 };
  let total = 0;
  let seen = '';
  let m;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * unit[m[2]];
    seen += m[0];
  }
  return seen === s && s !== '' ? total : NaN;
}

// distance is the edit distance between a and b (Levenshtein).
function distance(a, b) {
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}

function isStringMap(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

/**
 * parse reads config_json (a Buffer holding a JSON object or null) and
 * returns {config} or {problems: [{field, description}]}.
 */
function parse(raw) {
  let obj;
  try {
    obj = raw && raw.length > 0 ? JSON.parse(raw.toString('utf8')) : null;
  } catch (e) {
    return { problems: [{ field: '', description: `not JSON: ${e.message}` }] };
  }
  if (obj === null) {
    obj = {};
  }
  if (typeof obj !== 'object' || Array.isArray(obj)) {
    return { problems: [{ field: '', description: 'want an object of keys' }] };
  }
  const problems = [];
  for (const k of Object.keys(obj)) {
    if (!KEYS.includes(k)) {
      const near = KEYS.find((valid) => distance(k, valid) <= 2);
      const hint = near ? `did you mean "${near}"? ` : '';
      problems.push({ field: k, description: `unknown key (${hint}valid keys: ${KEYS.join(', ')})` });
    }
  }
  const c = { endpoint: DEFAULT_ENDPOINT, headers: {}, timeoutMs: DEFAULT_TIMEOUT_MS, resource: {} };
  if ('endpoint' in obj) {
    const e = obj.endpoint;
    let u = null;
    try {
      u = typeof e === 'string' ? new URL(e) : null;
    } catch {
      u = null;
    }
    if (!u || (u.protocol !== 'http:' && u.protocol !== 'https:')) {
      problems.push({ field: 'endpoint', description: `want an http:// or https:// URL, got ${JSON.stringify(e)}` });
    } else {
      if (u.pathname === '' || u.pathname === '/') {
        u.pathname = '/v1/traces';
      }
      c.endpoint = u.toString();
    }
  }
  if ('protocol' in obj && obj.protocol !== 'http/protobuf') {
    problems.push({ field: 'protocol', description: `only http/protobuf is supported, got ${JSON.stringify(obj.protocol)}` });
  }
  if ('headers' in obj) {
    if (!isStringMap(obj.headers)) {
      problems.push({ field: 'headers', description: 'want an object of header names to string values' });
    } else {
      c.headers = obj.headers;
    }
  }
  if ('timeout' in obj) {
    const ms = typeof obj.timeout === 'string' ? parseDuration(obj.timeout) : NaN;
    if (!(ms > 0)) {
      problems.push({ field: 'timeout', description: `want a positive duration such as "10s" or "500ms", got ${JSON.stringify(obj.timeout)}` });
    } else {
      c.timeoutMs = ms;
    }
  }
  if ('resource' in obj) {
    if (!isStringMap(obj.resource)) {
      problems.push({ field: 'resource', description: 'want an object of attribute names to string values' });
    } else {
      c.resource = obj.resource;
    }
  }
  return problems.length > 0 ? { problems } : { config: c };
}

/** secretKeys lists the config's secret values, as dotted paths, for the host to redact. */
function secretKeys(c) {
  return Object.keys(c.headers).map((h) => `headers.${h}`);
}

module.exports = { parse, secretKeys, DEFAULT_ENDPOINT };
