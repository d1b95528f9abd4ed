// CRUD, versioning, history, conditional update, auth, headers and content
// negotiation against a live server.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { start } from './lib/server.mjs';
import {
  assertOperationOutcome, assertSecurityHeaders, assertStatus, sleep, stripServerMeta,
} from './lib/fhir.mjs';

let server;

before(async () => { server = await start({ name: 'crud' }); });
after(async () => { if (server) await server.cleanup(); });

const uid = () => `e2e-${crypto.randomBytes(6).toString('hex')}`;
const patient = (extra = {}) => ({
  resourceType: 'Patient',
  active: true,
  name: [{ family: 'Testperson', given: ['Ada'] }],
  gender: 'female',
  birthDate: '1970-01-01',
  ...extra,
});

function idFromLocation(loc) {
  const m = /\/fhir\/Patient\/([A-Za-z0-9\-.]{1,64})\/_history\/(\d+)$/.exec(loc || '');
  assert.ok(m, `Location header malformed: ${loc}`);
  return { id: m[1], vid: m[2] };
}

async function createPatient(extra) {
  const r = await server.req('POST', '/fhir/Patient', { body: patient(extra) });
  assertStatus(r, 201, 'create');
  return { res: r, ...idFromLocation(r.headers.location) };
}

describe('public endpoints', () => {
  test('GET /healthz and /readyz are public, 200, with security headers', async () => {
    for (const p of ['/healthz', '/readyz']) {
      const r = await server.req('GET', p, { token: null });
      assert.equal(r.status, 200, p);
      assertSecurityHeaders(r);
    }
  });

  test('GET /fhir/metadata is public and returns a CapabilityStatement', async () => {
    const r = await server.req('GET', '/fhir/metadata', { token: null });
    assert.equal(r.status, 200);
    assertSecurityHeaders(r, { fhir: true });
    assert.match(String(r.headers['content-type']), /application\/(fhir\+)?json/);
    assert.equal(r.json.resourceType, 'CapabilityStatement');
    assert.equal(r.json.fhirVersion, '4.0.1');
    assert.ok(Array.isArray(r.json.format) && r.json.format.some((f) => /json/.test(f)), 'format lists json');
    const rest = r.json.rest?.[0];
    assert.ok(rest, 'rest[0] present');
    assert.equal(rest.mode, 'server');
    const pat = rest.resource?.find((x) => x.type === 'Patient');
    assert.ok(pat, 'Patient listed in CapabilityStatement');
    const codes = (pat.interaction || []).map((i) => i.code);
    for (const c of ['read', 'vread', 'update', 'delete', 'create', 'history-instance']) {
      assert.ok(codes.includes(c), `Patient interaction ${c} advertised`);
    }
    const ops = (pat.operation || []).map((o) => o.name);
    for (const o of ['everything', 'break-glass', 'access-report']) assert.ok(ops.includes(o), `Patient $${o} advertised`);
    // the audit trail is the server's: read and searched, never written through the API
    const ae = rest.resource?.find((x) => x.type === 'AuditEvent');
    const aeCodes = (ae?.interaction || []).map((i) => i.code).sort();
    assert.deepEqual(aeCodes, ['read', 'search-type', 'vread'], 'AuditEvent: read, vread and search only');
  });

  test('metadata also answers with a token', async () => {
    const r = await server.req('GET', '/fhir/metadata');
    assert.equal(r.status, 200);
  });
});

describe('authentication', () => {
  const protectedCalls = [
    ['GET', '/fhir/Patient/does-not-matter'],
    ['POST', '/fhir/Patient'],
    ['GET', '/fhir/_history'],
    ['GET', '/fhir/Patient/_history'],
    ['DELETE', '/fhir/Patient/x'],
    ['PUT', '/fhir/Patient/x'],
  ];
  for (const [method, p] of protectedCalls) {
    test(`${method} ${p} without token → 401 + WWW-Authenticate: Bearer`, async () => {
      const body = ['POST', 'PUT'].includes(method) ? patient({ id: 'x' }) : undefined;
      const r = await server.req(method, p, { token: null, body });
      assert.equal(r.status, 401);
      assert.match(String(r.headers['www-authenticate'] || ''), /^Bearer\b/i);
      assertOperationOutcome(r);
      assertSecurityHeaders(r, { fhir: true });
    });
  }

  const forged = () => {
    const t = server.token;
    const last = t[t.length - 1];
    const flipped = last === 'A' ? 'B' : 'A';
    return t.slice(0, -1) + flipped;
  };
  const badAuth = [
    ['forged token (last char changed)', () => `Bearer ${forged()}`],
    ['token truncated', () => `Bearer ${server.token.slice(0, -1)}`],
    ['token with suffix', () => `Bearer ${server.token}x`],
    ['random token', () => `Bearer ${crypto.randomBytes(32).toString('base64url')}`],
    ['empty bearer', () => 'Bearer '],
    ['scheme only', () => 'Bearer'],
    ['Basic scheme with token', () => `Basic ${Buffer.from(`admin:${server.token}`).toString('base64')}`],
    ['token without scheme', () => server.token],
  ];
  for (const [name, mk] of badAuth) {
    test(`${name} → 401`, async () => {
      const r = await server.req('GET', '/fhir/Patient/anything', { token: null, headers: { authorization: mk() } });
      assert.equal(r.status, 401);
      assert.match(String(r.headers['www-authenticate'] || ''), /^Bearer\b/i);
      assertOperationOutcome(r);
      assert.ok(!r.body.includes(server.token), 'response must not echo the real token');
    });
  }

  test('scheme is case-insensitive (bearer) or at least not a 5xx', async () => {
    const r = await server.req('GET', '/fhir/Patient/nope', { token: null, headers: { authorization: `bearer ${server.token}` } });
    assertStatus(r, [404, 401]);
  });
});

describe('create / read / vread / update / delete', () => {
  test('POST creates: 201, Location, ETag W/"1", meta set by server', async () => {
    const { res, id, vid } = await createPatient();
    assert.equal(vid, '1');
    assert.equal(res.headers.etag, 'W/"1"');
    assertSecurityHeaders(res, { fhir: true });
    if (res.json) {
      assert.equal(res.json.resourceType, 'Patient');
      assert.equal(res.json.id, id);
      assert.equal(res.json.meta?.versionId, '1');
      assert.ok(!Number.isNaN(Date.parse(res.json.meta?.lastUpdated)), 'meta.lastUpdated is a date');
    }
  });

  test('POST ignores client meta.versionId / lastUpdated', async () => {
    const { id } = await createPatient({ meta: { versionId: '77', lastUpdated: '2001-01-01T00:00:00Z' } });
    const r = await server.req('GET', `/fhir/Patient/${id}`);
    assert.equal(r.status, 200);
    assert.equal(r.json.meta.versionId, '1');
    assert.notEqual(r.json.meta.lastUpdated, '2001-01-01T00:00:00Z');
  });

  test('POST ids are unique', async () => {
    const ids = await Promise.all(Array.from({ length: 10 }, async () => (await createPatient()).id));
    assert.equal(new Set(ids).size, ids.length);
  });

  test('GET read: 200, ETag, Last-Modified, content round-trips', async () => {
    const body = patient({ name: [{ family: 'Readback', given: ['Rita', 'R.'] }] });
    const c = await server.req('POST', '/fhir/Patient', { body });
    assertStatus(c, 201);
    const { id } = idFromLocation(c.headers.location);
    const r = await server.req('GET', `/fhir/Patient/${id}`);
    assert.equal(r.status, 200);
    assertSecurityHeaders(r, { fhir: true });
    assert.equal(r.headers.etag, 'W/"1"');
    assert.ok(r.headers['last-modified'], 'Last-Modified present');
    const lm = Date.parse(r.headers['last-modified']);
    assert.ok(!Number.isNaN(lm), 'Last-Modified is an HTTP date');
    assert.ok(Math.abs(lm - Date.parse(r.json.meta.lastUpdated)) < 1500, 'Last-Modified matches meta.lastUpdated');
    assert.equal(r.json.id, id);
    assert.deepEqual(stripServerMeta({ ...r.json, id: undefined }, false), { ...body, id: undefined });
  });

  test('GET unknown id → 404 OperationOutcome', async () => {
    const r = await server.req('GET', `/fhir/Patient/${uid()}`);
    assert.equal(r.status, 404);
    assertOperationOutcome(r);
    assertSecurityHeaders(r, { fhir: true });
  });

  test('vread: _history/1 → 200, unknown version → 404', async () => {
    const { id } = await createPatient();
    const r = await server.req('GET', `/fhir/Patient/${id}/_history/1`);
    assert.equal(r.status, 200);
    assert.equal(r.json.meta.versionId, '1');
    assert.equal(r.headers.etag, 'W/"1"');
    const r2 = await server.req('GET', `/fhir/Patient/${id}/_history/99`);
    assert.equal(r2.status, 404);
    assertOperationOutcome(r2);
  });

  test('PUT update: 200, version increments, old version still readable', async () => {
    const { id } = await createPatient();
    const u = await server.req('PUT', `/fhir/Patient/${id}`, { body: patient({ id, active: false }) });
    assert.equal(u.status, 200);
    assert.equal(u.headers.etag, 'W/"2"');
    if (u.json) assert.equal(u.json.meta.versionId, '2');
    const r = await server.req('GET', `/fhir/Patient/${id}`);
    assert.equal(r.json.active, false);
    assert.equal(r.json.meta.versionId, '2');
    const v1 = await server.req('GET', `/fhir/Patient/${id}/_history/1`);
    assert.equal(v1.status, 200);
    assert.equal(v1.json.active, true);
    const v2 = await server.req('GET', `/fhir/Patient/${id}/_history/2`);
    assert.equal(v2.json.active, false);
    assert.ok(Date.parse(v2.json.meta.lastUpdated) >= Date.parse(v1.json.meta.lastUpdated));
  });

  test('PUT with a new client id creates (201), second PUT updates (200)', async () => {
    const id = uid();
    const c = await server.req('PUT', `/fhir/Patient/${id}`, { body: patient({ id }) });
    assert.equal(c.status, 201);
    assert.equal(c.headers.etag, 'W/"1"');
    if (c.headers.location) assert.match(c.headers.location, new RegExp(`/fhir/Patient/${id}/_history/1$`));
    const u = await server.req('PUT', `/fhir/Patient/${id}`, { body: patient({ id, gender: 'other' }) });
    assert.equal(u.status, 200);
    assert.equal(u.headers.etag, 'W/"2"');
  });

  test('PUT with body id different from URL id → 400', async () => {
    const id = uid();
    const r = await server.req('PUT', `/fhir/Patient/${id}`, { body: patient({ id: `${id}-other` }) });
    assert.equal(r.status, 400);
    assertOperationOutcome(r);
    const g = await server.req('GET', `/fhir/Patient/${id}`);
    assert.equal(g.status, 404, 'nothing was created');
  });

  test('If-Match: current version → 200, stale → 412 and nothing changes', async () => {
    const { id } = await createPatient();
    const ok = await server.req('PUT', `/fhir/Patient/${id}`, {
      body: patient({ id, gender: 'male' }), headers: { 'if-match': 'W/"1"' },
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.etag, 'W/"2"');
    const stale = await server.req('PUT', `/fhir/Patient/${id}`, {
      body: patient({ id, gender: 'unknown' }), headers: { 'if-match': 'W/"1"' },
    });
    assert.equal(stale.status, 412);
    assertOperationOutcome(stale);
    const r = await server.req('GET', `/fhir/Patient/${id}`);
    assert.equal(r.json.gender, 'male');
    assert.equal(r.json.meta.versionId, '2');
  });

  test('concurrent If-Match updates: exactly one wins', async () => {
    const { id } = await createPatient();
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) => server.req('PUT', `/fhir/Patient/${id}`, {
      body: patient({ id, name: [{ family: `Racer${i}` }] }), headers: { 'if-match': 'W/"1"' },
    })));
    const statuses = results.map((r) => r.status).sort();
    assert.equal(statuses.filter((s) => s === 200).length, 1, `statuses ${statuses}`);
    assert.ok(statuses.filter((s) => s !== 200).every((s) => s === 412 || s === 409), `statuses ${statuses}`);
    const r = await server.req('GET', `/fhir/Patient/${id}`);
    assert.equal(r.json.meta.versionId, '2');
  });

  test('DELETE → 200/204, then GET → 410, history records deletion', async () => {
    const { id } = await createPatient();
    const d = await server.req('DELETE', `/fhir/Patient/${id}`);
    assertStatus(d, [200, 204]);
    assertSecurityHeaders(d, { fhir: true });
    const g = await server.req('GET', `/fhir/Patient/${id}`);
    assert.equal(g.status, 410);
    assertOperationOutcome(g);
    const h = await server.req('GET', `/fhir/Patient/${id}/_history`);
    assert.equal(h.status, 200);
    assert.equal(h.json.type, 'history');
    assert.ok(h.json.entry.length >= 2, 'create + delete in history');
    const methods = h.json.entry.map((e) => e.request?.method).filter(Boolean);
    if (methods.length) assert.ok(methods.includes('DELETE'), `history request methods ${methods}`);
  });

  test('DELETE of an unknown id is not a 5xx', async () => {
    const r = await server.req('DELETE', `/fhir/Patient/${uid()}`);
    assertStatus(r, [200, 204, 404]);
  });

  test('PUT after DELETE recreates the resource with a new version', async () => {
    const { id } = await createPatient();
    assertStatus(await server.req('DELETE', `/fhir/Patient/${id}`), [200, 204]);
    const p = await server.req('PUT', `/fhir/Patient/${id}`, { body: patient({ id }) });
    assertStatus(p, [200, 201]);
    const g = await server.req('GET', `/fhir/Patient/${id}`);
    assert.equal(g.status, 200);
    assert.ok(Number(g.json.meta.versionId) >= 3, `versionId ${g.json.meta.versionId}`);
  });

  test('other resource types work (Observation)', async () => {
    const obs = {
      resourceType: 'Observation', status: 'final',
      code: { coding: [{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }] },
      valueQuantity: { value: 72, unit: 'beats/minute', system: 'http://unitsofmeasure.org', code: '/min' },
    };
    const c = await server.req('POST', '/fhir/Observation', { body: obs });
    assert.equal(c.status, 201);
    assert.match(c.headers.location, /\/fhir\/Observation\/[A-Za-z0-9\-.]+\/_history\/1$/);
  });

  test('unknown resource type → 404 (or 400)', async () => {
    const r = await server.req('GET', '/fhir/NotAResource/123');
    assertStatus(r, [404, 400]);
    assertOperationOutcome(r);
  });
});

describe('history', () => {
  test('instance history: Bundle type history, newest first, all versions', async () => {
    const { id } = await createPatient();
    for (let i = 0; i < 3; i++) {
      const u = await server.req('PUT', `/fhir/Patient/${id}`, { body: patient({ id, name: [{ family: `V${i + 2}` }] }) });
      assert.equal(u.status, 200);
    }
    const h = await server.req('GET', `/fhir/Patient/${id}/_history`);
    assert.equal(h.status, 200);
    assertSecurityHeaders(h, { fhir: true });
    assert.equal(h.json.resourceType, 'Bundle');
    assert.equal(h.json.type, 'history');
    assert.equal(h.json.entry.length, 4);
    if (h.json.total !== undefined) assert.equal(h.json.total, 4);
    const versions = h.json.entry.map((e) => e.resource.meta.versionId);
    assert.deepEqual(versions, ['4', '3', '2', '1'], 'history is newest first');
    for (const e of h.json.entry) {
      assert.equal(e.resource.id, id);
      if (e.fullUrl) assert.match(e.fullUrl, new RegExp(`/Patient/${id}`));
    }
  });

  test('instance history _count limits entries', async () => {
    const { id } = await createPatient();
    for (let i = 0; i < 3; i++) await server.req('PUT', `/fhir/Patient/${id}`, { body: patient({ id, birthDate: `198${i}-01-01` }) });
    const h = await server.req('GET', `/fhir/Patient/${id}/_history?_count=2`);
    assert.equal(h.status, 200);
    assert.equal(h.json.type, 'history');
    assert.equal(h.json.entry.length, 2);
    assert.equal(h.json.entry[0].resource.meta.versionId, '4');
  });

  test('type and system history include new writes; _count respected', async () => {
    const { id } = await createPatient();
    const t = await server.req('GET', '/fhir/Patient/_history?_count=50');
    assert.equal(t.status, 200);
    assert.equal(t.json.type, 'history');
    assert.ok(t.json.entry.length <= 50);
    assert.ok(t.json.entry.every((e) => !e.resource || e.resource.resourceType === 'Patient'), 'type history only has Patients');
    assert.ok(t.json.entry.some((e) => e.resource?.id === id || (e.fullUrl || '').includes(id)), 'new patient in type history');
    const s = await server.req('GET', '/fhir/_history?_count=50');
    assert.equal(s.status, 200);
    assert.equal(s.json.type, 'history');
    assert.ok(s.json.entry.some((e) => e.resource?.id === id || (e.fullUrl || '').includes(id)), 'new patient in system history');
    const one = await server.req('GET', '/fhir/_history?_count=1');
    assert.equal(one.json.entry.length, 1);
    const oneT = await server.req('GET', '/fhir/Patient/_history?_count=1');
    assert.equal(oneT.json.entry.length, 1);
  });

  test('_since filters at all three levels', async () => {
    const { id: oldId } = await createPatient();
    await sleep(1100);
    const since = new Date(Date.now() - 100).toISOString();
    await sleep(1100);
    const { id: newId } = await createPatient();
    await server.req('PUT', `/fhir/Patient/${oldId}`, { body: patient({ id: oldId, active: false }) });

    const idsOf = (b) => b.entry.map((e) => `${e.resource?.id}/${e.resource?.meta?.versionId}`);
    const sinceQ = `_since=${encodeURIComponent(since)}`;

    const inst = await server.req('GET', `/fhir/Patient/${oldId}/_history?${sinceQ}`);
    assert.equal(inst.status, 200);
    assert.deepEqual(idsOf(inst.json), [`${oldId}/2`]);

    const type = await server.req('GET', `/fhir/Patient/_history?${sinceQ}`);
    assert.equal(type.status, 200);
    const typeIds = idsOf(type.json);
    assert.ok(typeIds.includes(`${newId}/1`), 'new create since T');
    assert.ok(typeIds.includes(`${oldId}/2`), 'update since T');
    assert.ok(!typeIds.includes(`${oldId}/1`), 'old version before T excluded');
    for (const e of type.json.entry) {
      assert.ok(Date.parse(e.resource.meta.lastUpdated) >= Date.parse(since) - 1000, 'entry not older than _since');
    }

    const sys = await server.req('GET', `/fhir/_history?${sinceQ}`);
    assert.equal(sys.status, 200);
    const sysIds = idsOf(sys.json);
    assert.ok(sysIds.includes(`${newId}/1`));
    assert.ok(!sysIds.includes(`${oldId}/1`));

    const future = await server.req('GET', `/fhir/_history?_since=${encodeURIComponent(new Date(Date.now() + 3600e3).toISOString())}`);
    assert.equal(future.status, 200);
    assert.equal((future.json.entry || []).length, 0);
  });
});

describe('methods and content negotiation', () => {
  test('PATCH /fhir/Patient/x → 405', async () => {
    const { id } = await createPatient();
    const r = await server.req('PATCH', `/fhir/Patient/${id}`, {
      body: [{ op: 'replace', path: '/active', value: false }], headers: { 'content-type': 'application/json-patch+json' },
    });
    assert.equal(r.status, 405);
    assertOperationOutcome(r);
  });

  test('DELETE /fhir/Patient (type level) → 405', async () => {
    const r = await server.req('DELETE', '/fhir/Patient');
    assert.equal(r.status, 405);
    assertOperationOutcome(r);
  });

  test('POST /fhir/Patient/{id} → 405', async () => {
    const r = await server.req('POST', '/fhir/Patient/abc', { body: patient() });
    assertStatus(r, [405, 400]);
    assertOperationOutcome(r);
  });

  test('Content-Type application/json accepted', async () => {
    const r = await server.req('POST', '/fhir/Patient', { body: patient(), headers: { 'content-type': 'application/json' } });
    assert.equal(r.status, 201);
  });

  test('Content-Type with charset parameter accepted', async () => {
    const r = await server.req('POST', '/fhir/Patient', { body: patient(), headers: { 'content-type': 'application/fhir+json; charset=utf-8' } });
    assert.equal(r.status, 201);
  });

  test('Content-Type text/plain → 415', async () => {
    const r = await server.req('POST', '/fhir/Patient', { body: patient(), headers: { 'content-type': 'text/plain' } });
    assert.equal(r.status, 415);
    assertOperationOutcome(r);
  });

  for (const accept of ['application/fhir+json', 'application/json', '*/*', 'application/*', 'application/fhir+json;q=0.9, application/xml;q=0.1']) {
    test(`Accept: ${accept} → 200 JSON`, async () => {
      const r = await server.req('GET', '/fhir/metadata', { headers: { accept } });
      assert.equal(r.status, 200);
      assert.match(String(r.headers['content-type']), /application\/(fhir\+)?json/);
    });
  }

  test('no Accept header → 200 JSON', async () => {
    const r = await server.req('GET', '/fhir/metadata', { headers: { accept: null } });
    assert.equal(r.status, 200);
    assert.equal(r.json.resourceType, 'CapabilityStatement');
  });

  for (const accept of ['application/xml', 'application/fhir+xml', 'text/html']) {
    test(`Accept: ${accept} → 406`, async () => {
      const { id } = await createPatient();
      const r = await server.req('GET', `/fhir/Patient/${id}`, { headers: { accept } });
      assert.equal(r.status, 406);
    });
  }

  test('_format=json ok, overrides Accept', async () => {
    const { id } = await createPatient();
    const r = await server.req('GET', `/fhir/Patient/${id}?_format=json`);
    assert.equal(r.status, 200);
    assert.equal(r.json.id, id);
    const r2 = await server.req('GET', `/fhir/Patient/${id}?_format=application/fhir%2Bjson`);
    assertStatus(r2, 200);
  });

  test('_format=xml → 406 (or 400)', async () => {
    const { id } = await createPatient();
    const r = await server.req('GET', `/fhir/Patient/${id}?_format=xml`);
    assertStatus(r, [406, 400]);
  });
});

describe('headers', () => {
  test('X-Request-Id is unique per response', async () => {
    const ids = new Set();
    for (let i = 0; i < 5; i++) {
      const r = await server.req('GET', '/fhir/metadata');
      ids.add(r.headers['x-request-id']);
    }
    assert.equal(ids.size, 5);
  });

  test('security headers on errors and non-FHIR routes too', async () => {
    for (const [m, p, o] of [
      ['GET', '/fhir/Patient/nope', {}],
      ['GET', '/nonexistent-route', {}],
      ['GET', '/fhir/Patient/x', { token: null }],
      ['POST', '/fhir/Patient', { body: '{', headers: { 'content-type': 'application/fhir+json' } }],
    ]) {
      const r = await server.req(m, p, o);
      assert.ok(r.status >= 400 && r.status < 500, `${m} ${p} → ${r.status}`);
      assertSecurityHeaders(r, { fhir: p.startsWith('/fhir') });
    }
  });

  test('SIGTERM → graceful exit 0; data survives restart', async () => {
    const { id } = await createPatient({ name: [{ family: 'Persisted' }] });
    await server.stop();
    await server.restart();
    const r = await server.req('GET', `/fhir/Patient/${id}`);
    assert.equal(r.status, 200);
    assert.equal(r.json.name[0].family, 'Persisted');
    await server.stop();
  });
});
