// Malformed / hostile requests.  Every case asserts the expected 4xx status,
// an OperationOutcome body when one is sent, that no sensitive input string
// leaks into the response, and that /healthz still answers 200 afterwards.
// Also: slowloris (header and body dripping) and idle connections.
//
// Server config for this suite: CAREVAULT_MAX_BODY=1048576,
// CAREVAULT_REQUEST_TIMEOUT=5, CAREVAULT_IDLE_TIMEOUT=5.
import { test, before, after, beforeEach, describe } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { start, rawTlsRequest } from './lib/server.mjs';
import { assertOperationOutcome, isOperationOutcome, sleep } from './lib/fhir.mjs';

const MAX_BODY = 1048576;
const SECRET = 'Zebulon Quixotic';
const SECRET_PARTS = ['Zebulon', 'Quixotic'];

let server;
before(async () => {
  server = await start({
    name: 'negative',
    env: {
      CAREVAULT_MAX_BODY: String(MAX_BODY),
      CAREVAULT_REQUEST_TIMEOUT: '5',
      CAREVAULT_IDLE_TIMEOUT: '5',
    },
  });
});
// If a case crashed the server, that case fails (assertHealthy reports the
// crash); restart so the remaining cases are still evaluated independently.
beforeEach(async () => {
  if (!server) return;
  if (server.exit === null) {
    try { if (await server.healthy()) return; } catch { /* fall through */ }
    await sleep(500);
  }
  if (server.exit !== null) {
    crashes++;
    await server.restart();
  }
});
let crashes = 0;

after(async () => {
  if (!server) return;
  try { await server.stop(); } finally { await server.cleanup(); }
});

// ---------------------------------------------------------------- payloads
const P = (extra = {}) => ({ resourceType: 'Patient', name: [{ family: SECRET }], ...extra });
const J = (o) => JSON.stringify(o);
const pj = J(P()); // valid base document as text
const deepArray = (n) => `{"resourceType":"Patient","name":[{"family":"${SECRET}"}],"extension":[{"url":"http://x","valueString":"a","x":${'['.repeat(n)}${']'.repeat(n)}}]}`;
const deepObject = (n) => `{"resourceType":"Patient","name":[{"family":"${SECRET}"}],"x":${'{"a":'.repeat(n)}1${'}'.repeat(n)}}`;
const buf = (...parts) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));
const bigPatient = (bytes) => {
  const pad = 'x'.repeat(bytes);
  return J({ resourceType: 'Patient', name: [{ family: SECRET }], text: { status: 'generated', div: `<div xmlns="http://www.w3.org/1999/xhtml">${pad}</div>` } });
};

const V = [400, 422]; // "validation or parse" failure
const FHIR_CT = { 'content-type': 'application/fhir+json' };

// Each case: name, method, path, body (string|Buffer|object), headers, expect (status list),
// expression (optional regexp expected in some issue.expression for 422).
const cases = [
  // ---------- JSON syntax
  { name: 'truncated JSON', body: '{"resourceType":"Patient","name":[{"family":"Zebulon Quixotic"}', expect: [400] },
  { name: 'only an opening brace', body: '{', expect: [400] },
  { name: 'trailing comma in object', body: `{"resourceType":"Patient","name":[{"family":"${SECRET}"}],}`, expect: [400] },
  { name: 'trailing comma in array', body: `{"resourceType":"Patient","name":[{"family":"${SECRET}"},]}`, expect: [400] },
  { name: 'single-quoted strings', body: `{'resourceType':'Patient','name':[{'family':'${SECRET}'}]}`, expect: [400] },
  { name: 'unquoted key', body: `{resourceType:"Patient","name":[{"family":"${SECRET}"}]}`, expect: [400] },
  { name: 'trailing garbage after document', body: `${pj} garbage`, expect: [400] },
  { name: 'two concatenated documents', body: `${pj}${pj}`, expect: [400] },
  { name: 'JavaScript comment', body: `{/* c */"resourceType":"Patient","name":[{"family":"${SECRET}"}]}`, expect: [400] },
  { name: 'NaN literal', body: `{"resourceType":"Patient","multipleBirthInteger":NaN,"name":[{"family":"${SECRET}"}]}`, expect: [400] },
  { name: 'Infinity literal', body: `{"resourceType":"Patient","multipleBirthInteger":Infinity,"name":[{"family":"${SECRET}"}]}`, expect: [400] },
  { name: 'number with leading zeros', body: `{"resourceType":"Patient","multipleBirthInteger":007,"name":[{"family":"${SECRET}"}]}`, expect: [400] },
  { name: 'hex number', body: `{"resourceType":"Patient","multipleBirthInteger":0x10,"name":[{"family":"${SECRET}"}]}`, expect: [400] },
  { name: 'unterminated string', body: `{"resourceType":"Patient","name":[{"family":"${SECRET}}]}`, expect: [400] },
  { name: 'invalid escape \\x41', body: `{"resourceType":"Patient","name":[{"family":"${SECRET}\\x41"}]}`, expect: [400] },
  { name: 'truncated \\u escape', body: `{"resourceType":"Patient","name":[{"family":"${SECRET}\\u12"}]}`, expect: [400] },
  { name: 'lone high surrogate escape', body: `{"resourceType":"Patient","name":[{"family":"${SECRET}\\ud800"}]}`, expect: V },
  { name: 'raw newline inside string', body: `{"resourceType":"Patient","name":[{"family":"Zebulon\nQuixotic"}]}`, expect: [400] },
  { name: 'raw tab inside string', body: `{"resourceType":"Patient","name":[{"family":"Zebulon\tQuixotic"}]}`, expect: [400] },
  { name: 'raw NUL byte inside string', body: buf(`{"resourceType":"Patient","name":[{"family":"${SECRET}`, [0x00], '"}]}'), expect: [400] },
  { name: 'raw NUL byte between tokens', body: buf('{"resourceType":"Patient",', [0x00], `"name":[{"family":"${SECRET}"}]}`), expect: [400] },
  { name: 'escaped \\u0000 inside string', body: `{"resourceType":"Patient","name":[{"family":"${SECRET}\\u0000"}]}`, expect: V },
  { name: 'escaped \\u0000 inside key', body: `{"resourceType":"Patient","na\\u0000me":[{"family":"${SECRET}"}]}`, expect: V },
  { name: 'invalid UTF-8 (C3 28)', body: buf(`{"resourceType":"Patient","name":[{"family":"${SECRET}`, [0xc3, 0x28], '"}]}'), expect: [400] },
  { name: 'overlong UTF-8 (C0 AF)', body: buf(`{"resourceType":"Patient","name":[{"family":"${SECRET}`, [0xc0, 0xaf], '"}]}'), expect: [400] },
  { name: 'UTF-8 encoded surrogate (ED A0 80)', body: buf(`{"resourceType":"Patient","name":[{"family":"${SECRET}`, [0xed, 0xa0, 0x80], '"}]}'), expect: [400] },
  { name: 'stray continuation byte (80)', body: buf(`{"resourceType":"Patient","name":[{"family":"${SECRET}`, [0x80], '"}]}'), expect: [400] },
  { name: 'truncated multibyte at end of body', body: buf(`{"resourceType":"Patient","name":[{"family":"${SECRET}"}]}`, [0xe2, 0x82]), expect: [400] },
  { name: 'UTF-16LE encoded body', body: Buffer.from(pj, 'utf16le'), expect: [400, 415] },
  { name: 'empty body', body: '', expect: [400] },
  { name: 'whitespace-only body', body: '   \n\t ', expect: [400] },
  { name: 'JSON null', body: 'null', expect: V },
  { name: 'top-level array', body: `[${pj}]`, expect: V },
  { name: 'top-level string', body: `"${SECRET}"`, expect: V },
  { name: 'top-level number', body: '42', expect: V },
  { name: 'top-level true', body: 'true', expect: V },
  { name: '10,000-deep array nesting', body: deepArray(10000), expect: [400, 413, 422] },
  { name: '10,000-deep object nesting', body: deepObject(10000), expect: [400, 413, 422] },
  { name: '100,000-deep array nesting', body: deepArray(100000), expect: [400, 413, 422] },
  { name: 'duplicate key (birthDate twice)', body: `{"resourceType":"Patient","birthDate":"1970-01-01","birthDate":"1980-01-01","name":[{"family":"${SECRET}"}]}`, expect: V },
  { name: 'duplicate resourceType key', body: `{"resourceType":"Patient","resourceType":"Observation","name":[{"family":"${SECRET}"}]}`, expect: V },

  // ---------- structure / validation
  { name: 'missing resourceType', body: J({ name: [{ family: SECRET }] }), expect: V },
  { name: 'resourceType is a number', body: J({ resourceType: 7, name: [{ family: SECRET }] }), expect: V },
  { name: 'resourceType is an empty string', body: J({ resourceType: '', name: [{ family: SECRET }] }), expect: V },
  { name: 'resourceType mismatch with URL', path: '/fhir/Patient', body: J({ resourceType: 'Observation', status: 'final', code: { text: SECRET } }), expect: V },
  { name: 'resourceType unknown in body', body: J({ resourceType: 'Zebulon', name: [{ family: SECRET }] }), expect: V },
  { name: 'unknown field', body: J(P({ favouriteColour: 'blue' })), expect: V },
  { name: 'unknown field nested in HumanName', body: J({ resourceType: 'Patient', name: [{ family: SECRET, nickname: 'Zeb' }] }), expect: V },
  { name: 'birthDate month 13', body: J(P({ birthDate: '1990-13-45' })), expect: [422], expression: /Patient\.birthDate/ },
  { name: 'birthDate free text', body: J(P({ birthDate: 'not a date' })), expect: [422], expression: /Patient\.birthDate/ },
  { name: 'birthDate without zero padding', body: J(P({ birthDate: '1990-1-1' })), expect: [422], expression: /Patient\.birthDate/ },
  { name: 'birthDate with time part', body: J(P({ birthDate: '1990-01-01T10:00:00Z' })), expect: [422], expression: /Patient\.birthDate/ },
  { name: 'birthDate as number', body: J(P({ birthDate: 19900101 })), expect: V, expression: /Patient\.birthDate/ },
  { name: 'birthDate null', body: J(P({ birthDate: null })), expect: V },
  { name: 'deceasedDateTime without timezone but with time', body: J(P({ deceasedDateTime: '2015-02-07T13:28:17' })), expect: [422], expression: /Patient\.deceased/ },
  { name: 'meta.lastUpdated garbage', body: J(P({ meta: { lastUpdated: 'yesterday' } })), expect: V },
  { name: 'boolean as string ("true")', body: J(P({ active: 'true' })), expect: V, expression: /Patient\.active/ },
  { name: 'boolean as number (1)', body: J(P({ active: 1 })), expect: V, expression: /Patient\.active/ },
  { name: 'integer as string ("2")', body: J(P({ multipleBirthInteger: '2' })), expect: V },
  { name: 'integer with fraction (1.5)', body: J(P({ multipleBirthInteger: 1.5 })), expect: V },
  { name: 'integer out of 32-bit range', body: J(P({ multipleBirthInteger: 2147483648 })), expect: V },
  { name: 'decimal as string', path: '/fhir/Observation', body: J({ resourceType: 'Observation', status: 'final', code: { text: SECRET }, valueQuantity: { value: '12.5' } }), expect: V },
  { name: 'array field given as object (name)', body: J({ resourceType: 'Patient', name: { family: SECRET } }), expect: V },
  { name: 'array of strings where objects expected', body: J({ resourceType: 'Patient', name: [SECRET] }), expect: V },
  { name: 'string field given as array (family)', body: J({ resourceType: 'Patient', name: [{ family: [SECRET] }] }), expect: V },
  { name: 'string field given as number (telecom.value)', body: J(P({ telecom: [{ system: 'phone', value: 5551234 }] })), expect: V },
  { name: 'empty string value', body: J({ resourceType: 'Patient', name: [{ family: '' }], birthDate: '1970-01-01' }), expect: V },
  { name: 'empty object in array', body: J({ resourceType: 'Patient', name: [{}] }), expect: V },
  { name: 'empty array', body: J(P({ identifier: [] })), expect: V },
  { name: 'two choice variants (deceasedBoolean + deceasedDateTime)', body: J(P({ deceasedBoolean: true, deceasedDateTime: '2020-01-01' })), expect: V },
  { name: 'invalid code for gender', body: J(P({ gender: 'zebulon' })), expect: V },
  { name: 'extension without url', body: J(P({ extension: [{ valueString: SECRET }] })), expect: V },
  { name: 'id with illegal characters in POST body', body: J(P({ id: 'bad id!' })), expect: V },
  { name: 'meta.versionId as number', body: J(P({ meta: { versionId: 3 } })), expect: V },
  { name: 'required element missing (Observation.status)', path: '/fhir/Observation', body: J({ resourceType: 'Observation', code: { text: SECRET } }), expect: [422] },
  { name: 'contained resource without resourceType', body: J(P({ contained: [{ id: 'c1', name: [{ family: SECRET }] }] })), expect: V },

  // ---------- PUT specific
  { name: 'PUT body id differs from URL id', method: 'PUT', path: '/fhir/Patient/neg-a', body: J(P({ id: 'neg-b' })), expect: [400] },
  { name: 'PUT body without id', method: 'PUT', path: '/fhir/Patient/neg-c', body: J(P()), expect: [400] },
  { name: 'PUT resourceType mismatch', method: 'PUT', path: '/fhir/Patient/neg-d', body: J({ resourceType: 'Observation', id: 'neg-d', status: 'final', code: { text: SECRET } }), expect: V },
  { name: 'PUT id longer than 64 chars', method: 'PUT', path: `/fhir/Patient/${'a'.repeat(65)}`, body: J(P({ id: 'a'.repeat(65) })), expect: V },
  { name: 'PUT id with illegal characters', method: 'PUT', path: '/fhir/Patient/bad$id', body: J(P({ id: 'bad$id' })), expect: [400, 404, 422] },
  { name: 'PUT on type without id', method: 'PUT', path: '/fhir/Patient', body: J(P()), expect: [400, 405] },
  { name: 'PUT with malformed If-Match', method: 'PUT', path: '/fhir/Patient/neg-e', headers: { 'if-match': 'garbage' }, body: J(P({ id: 'neg-e' })), expect: [400, 412] },

  // ---------- content types
  { name: 'Content-Type text/plain', headers: { 'content-type': 'text/plain' }, body: pj, expect: [415] },
  { name: 'Content-Type application/xml', headers: { 'content-type': 'application/xml' }, body: `<Patient xmlns="http://hl7.org/fhir"><name><family value="${SECRET}"/></name></Patient>`, expect: [415] },
  { name: 'Content-Type application/fhir+xml', headers: { 'content-type': 'application/fhir+xml' }, body: pj, expect: [415] },
  { name: 'Content-Type form-urlencoded', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `family=${encodeURIComponent(SECRET)}`, expect: [415] },
  { name: 'Content-Type multipart/form-data', headers: { 'content-type': 'multipart/form-data; boundary=x' }, body: `--x\r\nContent-Disposition: form-data; name="a"\r\n\r\n${pj}\r\n--x--\r\n`, expect: [415] },
  { name: 'Content-Type garbage', headers: { 'content-type': ';;;' }, body: pj, expect: [400, 415] },
  { name: 'Content-Type missing', headers: { 'content-type': null }, body: pj, expect: [400, 415] },
  { name: 'Content-Type json with non-utf8 charset', headers: { 'content-type': 'application/fhir+json; charset=iso-8859-1' }, body: pj, expect: [400, 415] },

  // ---------- Accept / _format
  { name: 'Accept application/xml on read', method: 'GET', path: '/fhir/Patient/neg-x', headers: { accept: 'application/xml' }, expect: [406] },
  { name: 'Accept text/html on metadata', method: 'GET', path: '/fhir/metadata', headers: { accept: 'text/html' }, expect: [406] },
  { name: '_format=xml', method: 'GET', path: '/fhir/metadata?_format=xml', expect: [400, 406] },

  // ---------- routing, methods, query parameters
  { name: 'unknown resource type in URL', method: 'GET', path: '/fhir/Zebulon/1', expect: [400, 404] },
  { name: 'lower-case resource type in URL', method: 'GET', path: '/fhir/patient/1', expect: [400, 404] },
  { name: 'POST to unknown resource type', method: 'POST', path: '/fhir/NotAType', body: J({ resourceType: 'NotAType' }), expect: [400, 404, 422] },
  { name: 'PATCH is not supported', method: 'PATCH', path: '/fhir/Patient/neg-a', headers: { 'content-type': 'application/json-patch+json' }, body: '[]', expect: [405] },
  { name: 'DELETE on type level', method: 'DELETE', path: '/fhir/Patient', expect: [405] },
  { name: 'DELETE on system level', method: 'DELETE', path: '/fhir', expect: [400, 404, 405] },
  { name: 'invalid percent-encoding', method: 'GET', path: '/fhir/Patient/%ZZ', expect: [400, 404] },
  { name: 'encoded slash in id', method: 'GET', path: '/fhir/Patient/a%2Fb', expect: [400, 404] },
  { name: 'path traversal (..)', method: 'GET', path: '/fhir/Patient/../../../../etc/passwd', rawPath: true, expect: [400, 404], forbidden: ['root:'] },
  { name: 'encoded path traversal (%2e%2e)', method: 'GET', path: '/fhir/Patient/%2e%2e/%2e%2e/master.key', expect: [400, 404] },
  { name: 'id longer than 64 chars in read', method: 'GET', path: `/fhir/Patient/${'b'.repeat(65)}`, expect: [400, 404] },
  { name: 'vread with non-numeric version', method: 'GET', path: '/fhir/Patient/neg-a/_history/abc', expect: [400, 404] },
  { name: '_count negative', method: 'GET', path: '/fhir/_history?_count=-1', expect: [400] },
  { name: '_count not a number', method: 'GET', path: '/fhir/Patient/_history?_count=lots', expect: [400] },
  { name: '_since not a date', method: 'GET', path: `/fhir/_history?_since=${encodeURIComponent(SECRET)}`, expect: [400] },
  { name: 'unauthenticated POST with hostile body', token: null, body: '{"resourceType":', expect: [401] },
];

function defaultFor(c) {
  return {
    method: c.method || 'POST',
    path: c.path || '/fhir/Patient',
  };
}

async function assertHealthy() {
  await sleep(20);
  if (server.exit !== null) {
    assert.fail(`server died: ${JSON.stringify(server.exit)}\n--- log tail ---\n${server.logTail(1500)}`);
  }
  const t0 = Date.now();
  const r = await server.req('GET', '/healthz', { token: null, timeout: 5000 });
  assert.equal(r.status, 200, '/healthz after hostile request');
  assert.ok(Date.now() - t0 < 5000);
}

function assertNoLeak(res, extra = []) {
  const text = res.body || '';
  for (const s of [...SECRET_PARTS, ...extra]) {
    assert.ok(!text.includes(s), `response leaks "${s}": ${text.slice(0, 300)}`);
  }
  if (res.json && Array.isArray(res.json.issue)) {
    for (const i of res.json.issue) {
      for (const s of SECRET_PARTS) {
        assert.ok(!String(i.diagnostics || '').includes(s), 'diagnostics leak input');
        assert.ok(!JSON.stringify(i.details || {}).includes(s), 'details leak input');
      }
    }
  }
  // The bearer token must never be reflected either.
  assert.ok(!text.includes(server.token), 'response leaks bearer token');
}

describe('malformed requests', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const { method, path } = defaultFor(c);
      const headers = { ...(c.body !== undefined ? FHIR_CT : {}), ...(c.headers || {}) };
      const opts = { headers, token: c.token === undefined ? server.token : c.token };
      if (c.body !== undefined) opts.body = typeof c.body === 'string' ? Buffer.from(c.body, 'utf8') : c.body;
      if (c.rawPath) opts.rawPath = path;
      const res = await server.req(method, path, opts);
      assert.ok(c.expect.includes(res.status),
        `expected ${c.expect.join('|')}, got ${res.status}: ${String(res.body).slice(0, 300)}`);
      if (res.body.length > 0 || res.status !== 406) assertOperationOutcome(res, c.name);
      if (c.expression && res.status === 422) {
        const exprs = res.json.issue.flatMap((i) => i.expression || []);
        assert.ok(exprs.some((e) => c.expression.test(e)), `issue.expression ${JSON.stringify(exprs)} should match ${c.expression}`);
      }
      assertNoLeak(res, c.forbidden || []);
      assert.ok(res.headers['x-request-id'], 'X-Request-Id on error response');
      await assertHealthy();
    });
  }

  test('nothing from the hostile PUTs was stored', async () => {
    for (const id of ['neg-a', 'neg-c', 'neg-d', 'neg-e']) {
      const r = await server.req('GET', `/fhir/Patient/${id}`);
      assert.equal(r.status, 404, `Patient/${id}`);
    }
  });
});

describe('size limits', () => {
  test('body just under the limit is not rejected as too large', async () => {
    const body = bigPatient(MAX_BODY - 4096);
    assert.ok(Buffer.byteLength(body) < MAX_BODY);
    const r = await server.req('POST', '/fhir/Patient', { body: Buffer.from(body), headers: FHIR_CT });
    assert.notEqual(r.status, 413);
    assert.ok(r.status < 500, `status ${r.status}`);
    await assertHealthy();
  });

  test('body over limit (Content-Length) → 413', async () => {
    const body = bigPatient(MAX_BODY + 1024);
    let r;
    try {
      r = await server.req('POST', '/fhir/Patient', { body: Buffer.from(body), headers: FHIR_CT, timeout: 20000 });
    } catch (e) {
      // Server may answer 413 and close before reading all; node then reports EPIPE/ECONNRESET.
      r = { status: 'closed', error: e };
    }
    if (r.status !== 'closed') {
      assert.equal(r.status, 413);
      assertOperationOutcome(r);
      assertNoLeak(r);
    }
    await assertHealthy();
  });

  test('over-limit Content-Length without a body → 413 without waiting for the body', async () => {
    const t0 = Date.now();
    const r = await rawTlsRequest(server, 'POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\n'
      + `Authorization: Bearer ${server.token}\r\nContent-Type: application/fhir+json\r\n`
      + `Content-Length: ${10 * MAX_BODY}\r\nConnection: close\r\n\r\n{"resourceType":"Patient"`, { timeout: 15000 });
    assert.equal(r.status, 413, `got ${r.statusLine} / ${r.error}`);
    assert.ok(isOperationOutcome(r.json), 'OperationOutcome body');
    assert.ok(Date.now() - t0 < 8000, 'rejected early');
    await assertHealthy();
  });

  test('chunked body over limit → 413 (or connection closed)', async () => {
    const chunk = 'a'.repeat(64 * 1024);
    let data = 'POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\n'
      + `Authorization: Bearer ${server.token}\r\nContent-Type: application/fhir+json\r\n`
      + 'Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n';
    for (let i = 0; i < 20; i++) data += `${chunk.length.toString(16)}\r\n${chunk}\r\n`;
    data += '0\r\n\r\n';
    const r = await rawTlsRequest(server, data, { timeout: 15000 });
    if (r.status !== undefined) assert.equal(r.status, 413);
    else assert.ok(r.closed, 'connection closed');
    await assertHealthy();
  });

  test('Content-Length mismatch (declared shorter than sent) does not smuggle a second request', async () => {
    const body = J(P());
    const smuggled = 'GET /fhir/_history HTTP/1.1\r\nHost: localhost\r\n\r\n';
    const r = await rawTlsRequest(server, 'POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\n'
      + 'Content-Type: application/fhir+json\r\n'
      + `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}${smuggled}`, { timeout: 10000 });
    assert.ok([400, 401].includes(r.status), `first request is unauthenticated, got ${r.statusLine}`);
    assert.ok(!/"type"\s*:\s*"history"/.test(r.raw.toString('utf8')), 'smuggled request must not be answered with data');
    await assertHealthy();
  });

  test('conflicting Content-Length and Transfer-Encoding → 400 or closed', async () => {
    const r = await rawTlsRequest(server, 'POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\n'
      + `Authorization: Bearer ${server.token}\r\nContent-Type: application/fhir+json\r\n`
      + 'Content-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n', { timeout: 10000 });
    if (r.status !== undefined) assert.ok(r.status >= 400 && r.status < 500, `status ${r.status}`);
    await assertHealthy();
  });

  test('URL over 8 KiB → 414', async () => {
    const p = `/fhir/Patient/x?_format=json&pad=${'z'.repeat(9 * 1024)}`;
    let r;
    try { r = await server.req('GET', p); } catch (e) { r = { status: 'closed', error: e }; }
    assert.ok(r.status === 414 || r.status === 'closed', `status ${r.status}`);
    if (r.status === 414 && r.body) assertOperationOutcome(r);
    await assertHealthy();
  });

  test('an encoded NUL (%00) in the path or a parameter → 400, not a cut-short id', async () => {
    // decoded, "Patient/x%00y" would read Patient/x and "patient=x%00" match x
    for (const p of ['/fhir/Patient/x%00y', '/fhir/Patient?_id=x%00', '/fhir/Patient/x%00/$everything']) {
      const r = await server.req('GET', p);
      assert.equal(r.status, 400, `${p}: ${r.status}`);
      assertOperationOutcome(r);
      assert.match(r.body, /encoded NUL/);
    }
    await assertHealthy();
  });

  test('single header over 16 KiB → 431 (or connection closed)', async () => {
    let r;
    try { r = await server.req('GET', '/fhir/metadata', { headers: { 'x-big': 'h'.repeat(17 * 1024) } }); } catch (e) { r = { status: 'closed', error: e }; }
    assert.ok([431, 400, 413, 'closed'].includes(r.status), `status ${r.status}`);
    if (r.status === 431 && r.body) assertOperationOutcome(r);
    await assertHealthy();
  });

  test('many headers totalling over 16 KiB → 431 (or connection closed)', async () => {
    const headers = {};
    for (let i = 0; i < 400; i++) headers[`x-h-${i}`] = 'v'.repeat(60);
    let r;
    try { r = await server.req('GET', '/fhir/metadata', { headers }); } catch (e) { r = { status: 'closed', error: e }; }
    assert.ok([431, 400, 413, 'closed'].includes(r.status), `status ${r.status}`);
    await assertHealthy();
  });

  test('huge Authorization header → 401/431 (or closed), never 5xx', async () => {
    let r;
    try { r = await server.req('GET', '/fhir/Patient/x', { token: null, headers: { authorization: `Bearer ${'A'.repeat(15000)}` } }); } catch (e) { r = { status: 'closed', error: e }; }
    assert.ok([401, 431, 400, 'closed'].includes(r.status), `status ${r.status}`);
    await assertHealthy();
  });
});

describe('protocol-level garbage (raw TLS)', () => {
  const rawCases = [
    // libmicrohttpd 0.9.75 ends the request target and header values at a NUL: the
    // server never sees the bytes after it. Unauthenticated, the cut path gets 401.
    ['NUL byte in request path', 'GET /fhir/Patient/a\0b HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', [400, 401, 404]],
    ['NUL byte in header value', `GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nX-A: a\0b\r\nConnection: close\r\n\r\n`, [200, 400]],
    ['missing Host on HTTP/1.1', 'GET /fhir/metadata HTTP/1.1\r\nConnection: close\r\n\r\n', [400]],
    ['unknown method', 'BREW /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n', [400, 405, 501]],
    ['garbage request line', 'this is not http\r\n\r\n', [400]],
    ['HTTP/2 preface over TLS without ALPN', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', [400, 505]],
    ['unsupported HTTP version', 'GET /fhir/metadata HTTP/9.9\r\nHost: localhost\r\nConnection: close\r\n\r\n', [400, 505]],
    ['header without colon', 'GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nBrokenHeader\r\nConnection: close\r\n\r\n', [400]],
    ['CR in header value injection', `GET /fhir/metadata HTTP/1.1\r\nHost: localhost\r\nX-A: a\rInjected: 1\r\nConnection: close\r\n\r\n`, [400]],
  ];
  for (const [name, data, expect] of rawCases) {
    test(name, async () => {
      const r = await rawTlsRequest(server, Buffer.from(data, 'latin1'), { timeout: 10000 });
      if (r.status !== undefined) {
        assert.ok(expect.includes(r.status), `expected ${expect.join('|')}, got ${r.statusLine}`);
      } else {
        assert.ok(r.closed, `no response and not closed (${r.error?.message})`);
      }
      await assertHealthy();
    });
  }
});

// ------------------------------------------------------------ slow clients
function drip(server, data, { intervalMs = 1000, maxMs = 30000 } = {}) {
  // Sends `data` one byte per interval; resolves when the server closes
  // the connection (or maxMs passes) with {closedAfterMs, sent, response}.
  return new Promise((resolve) => {
    const t0 = Date.now();
    let sent = 0;
    let timer;
    let done = false;
    const chunks = [];
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, ca: server.ca, servername: 'localhost' });
    const finish = (why) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(guard);
      sock.destroy();
      resolve({ closedAfterMs: Date.now() - t0, sent, why, response: Buffer.concat(chunks).toString('latin1') });
    };
    const guard = setTimeout(() => finish('still-open'), maxMs);
    sock.on('secureConnect', () => {
      timer = setInterval(() => {
        if (sent >= data.length) return;
        sock.write(data.subarray(sent, sent + 1), (err) => { if (err) finish('write-error'); });
        sent++;
      }, intervalMs);
    });
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', () => finish('end'));
    sock.on('close', () => finish('close'));
    sock.on('error', () => finish('error'));
  });
}

async function timedHealthz() {
  const t0 = Date.now();
  const r = await server.req('GET', '/healthz', { token: null, timeout: 5000 });
  return { status: r.status, ms: Date.now() - t0 };
}

describe('slow clients', () => {
  test('slowloris: dripping headers do not block others and are cut off', async () => {
    const header = Buffer.from(`GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ${'s'.repeat(200)}\r\n\r\n`, 'latin1');
    const N = 16;
    const drips = Array.from({ length: N }, () => drip(server, header, { intervalMs: 1000, maxMs: 20000 }));
    // While dripping, other clients must still be served quickly.
    await sleep(1500);
    const probes = [];
    for (let i = 0; i < 5; i++) {
      probes.push(await timedHealthz());
      await sleep(500);
    }
    for (const p of probes) {
      assert.equal(p.status, 200);
      assert.ok(p.ms < 1500, `/healthz took ${p.ms} ms while slowloris was dripping`);
    }
    const res = await Promise.all(drips);
    for (const r of res) {
      assert.notEqual(r.why, 'still-open', 'server never closed the dripping connection');
      assert.ok(r.closedAfterMs < 20000, `closed after ${r.closedAfterMs} ms (request timeout is 5 s)`);
      assert.ok(!/^HTTP\/1\.[01] 200/.test(r.response), 'incomplete request must not be served');
    }
    await assertHealthy();
  });

  test('slow body: dripping a declared body is cut off by the request timeout', async () => {
    const body = J(P());
    const head = `POST /fhir/Patient HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${server.token}\r\n`
      + `Content-Type: application/fhir+json\r\nContent-Length: ${Buffer.byteLength(body) + 500}\r\n\r\n`;
    const t0 = Date.now();
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, ca: server.ca, servername: 'localhost' });
    await new Promise((resolve, reject) => { sock.once('secureConnect', resolve); sock.once('error', reject); });
    sock.write(head);
    const closed = new Promise((resolve) => {
      let got = '';
      sock.on('data', (c) => { got += c.toString('latin1'); });
      const done = (why) => resolve({ why, ms: Date.now() - t0, got });
      sock.on('close', () => done('close'));
      sock.on('error', () => done('error'));
      setTimeout(() => done('still-open'), 20000);
    });
    let i = 0;
    const timer = setInterval(() => {
      if (sock.destroyed) return;
      sock.write(body[i % body.length]);
      i++;
    }, 1000);
    const h = await timedHealthz();
    assert.equal(h.status, 200);
    assert.ok(h.ms < 1500, `/healthz took ${h.ms} ms`);
    const r = await closed;
    clearInterval(timer);
    sock.destroy();
    assert.notEqual(r.why, 'still-open', 'server never closed the slow-body connection');
    assert.ok(!/^HTTP\/1\.[01] 201/.test(r.got), 'incomplete body must not be stored');
    if (/^HTTP\/1\.[01] (\d+)/.test(r.got)) {
      const st = Number(/^HTTP\/1\.[01] (\d+)/.exec(r.got)[1]);
      assert.ok([400, 408, 413].includes(st), `status ${st}`);
    }
    await assertHealthy();
  });

  test('idle TLS connection (no request) is closed by the idle timeout', async () => {
    const t0 = Date.now();
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, ca: server.ca, servername: 'localhost' });
    const r = await new Promise((resolve) => {
      sock.on('close', () => resolve('close'));
      sock.on('error', () => resolve('error'));
      setTimeout(() => resolve('still-open'), 20000);
    });
    sock.destroy();
    assert.notEqual(r, 'still-open', 'idle connection never closed');
    assert.ok(Date.now() - t0 >= 2000, 'not closed immediately');
    await assertHealthy();
  });

  test('half-finished TLS handshake does not block the server', async () => {
    const net = await import('node:net');
    const socks = [];
    for (let i = 0; i < 10; i++) {
      const s = net.connect(server.port, '127.0.0.1');
      s.on('error', () => {});
      s.on('connect', () => s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]))); // partial ClientHello
      socks.push(s);
    }
    await sleep(500);
    const h = await timedHealthz();
    assert.equal(h.status, 200);
    assert.ok(h.ms < 1500, `/healthz took ${h.ms} ms`);
    for (const s of socks) s.destroy();
  });
});

test('negative suite defines at least 60 malformed request cases', () => {
  assert.ok(cases.length >= 60, `only ${cases.length} cases`);
});

test('server never crashed during the negative suite', () => {
  assert.equal(crashes + (server.exit !== null ? 1 : 0), 0, `server crashed ${crashes} time(s); see failures above`);
});
