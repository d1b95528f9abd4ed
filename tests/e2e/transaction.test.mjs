// Transactions and batches (POST /fhir with a Bundle): urn:uuid references,
// all-or-nothing rollback, conditional create / update / delete and
// conditional references, GET entries, the spec's processing order and the
// response entry order.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { start } from './lib/server.mjs';
import { assertOperationOutcome, assertStatus } from './lib/fhir.mjs';
import { parseLocation } from './lib/synthea.mjs';

let server;

before(async () => { server = await start({ name: 'transaction' }); });
// a clean SIGTERM stop (exit 0: no sanitizer report) ends the suite
after(async () => {
  if (server) {
    try { await server.stop(); } finally { await server.cleanup(); }
  }
});

const SYS = 'urn:e2e:transaction';
const uid = () => `e2e-${crypto.randomBytes(6).toString('hex')}`;
const urn = () => `urn:uuid:${crypto.randomUUID()}`;
const patient = (ident, extra = {}) => ({ resourceType: 'Patient', identifier: [{ system: SYS, value: ident }], name: [{ family: 'Txtest', given: ['Ada'] }], ...extra });
const observation = (ident, subject, extra = {}) => ({
  resourceType: 'Observation', status: 'final', identifier: [{ system: SYS, value: ident }],
  code: { coding: [{ system: 'http://loinc.org', code: '8302-2' }] },
  ...(subject ? { subject: { reference: subject } } : {}),
  valueQuantity: { value: 170, unit: 'cm', system: 'http://unitsofmeasure.org', code: 'cm' }, ...extra,
});
const tx = (entry, type = 'transaction') => ({ resourceType: 'Bundle', type, entry });
const post = (resource, fullUrl, request = {}) => ({ ...(fullUrl ? { fullUrl } : {}), resource, request: { method: 'POST', url: resource.resourceType, ...request } });

async function send(bundle, headers) {
  return server.req('POST', '/fhir', { body: bundle, headers });
}

/** A 200 transaction-response / batch-response with one entry per request entry. */
function assertResponseBundle(r, bundle) {
  assertStatus(r, 200, `${bundle.type}`);
  assert.equal(r.json?.resourceType, 'Bundle');
  assert.equal(r.json.type, `${bundle.type}-response`);
  assert.equal(r.json.entry?.length, bundle.entry.length, 'one response entry per request entry');
  return r.json.entry;
}

function assertWritten(e, status, type) {
  assert.match(e.response?.status ?? '', new RegExp(`^${status}\\b`), `response.status ${e.response?.status}`);
  const loc = parseLocation(e.response.location);
  assert.match(e.response.location, /^https:\/\//, 'response.location is absolute');
  if (type) assert.equal(loc.type, type);
  assert.equal(e.response.etag, `W/"${loc.vid}"`);
  assert.ok(!Number.isNaN(Date.parse(e.response.lastModified)), 'response.lastModified is a date');
  return loc;
}

async function countBy(type, ident) {
  const r = await server.req('GET', `/fhir/${type}?identifier=${encodeURIComponent(`${SYS}|${ident}`)}&_summary=count`);
  assertStatus(r, 200, `count ${type}`);
  return r.json.total;
}

async function idsBy(type, ident) {
  const r = await server.req('GET', `/fhir/${type}?identifier=${encodeURIComponent(`${SYS}|${ident}`)}`);
  assertStatus(r, 200, `search ${type}`);
  return (r.json.entry ?? []).filter((e) => e.search?.mode === 'match').map((e) => e.resource.id);
}

async function createDirect(resource) {
  const r = await server.req('POST', `/fhir/${resource.resourceType}`, { body: resource });
  assertStatus(r, 201, 'direct create');
  return parseLocation(r.headers.location).id;
}

describe('transaction', () => {
  test('urn:uuid fullUrls and references are rewritten to Type/id', async () => {
    const ip = uid(); const io = uid();
    const pu = urn(); const ou = urn();
    const b = tx([
      post(observation(io, pu), ou),
      post(patient(ip), pu),
      post({ resourceType: 'DiagnosticReport', status: 'final', code: { text: 'panel' }, subject: { reference: pu }, result: [{ reference: ou }] }, urn()),
    ]);
    const entries = assertResponseBundle(await send(b), b);
    const o = assertWritten(entries[0], 201, 'Observation');
    const p = assertWritten(entries[1], 201, 'Patient');
    const d = assertWritten(entries[2], 201, 'DiagnosticReport');
    assert.equal(o.vid, '1');
    const ro = await server.req('GET', `/fhir/Observation/${o.id}`);
    assertStatus(ro, 200);
    assert.equal(ro.json.subject.reference, `Patient/${p.id}`, 'subject points at the new Patient');
    const rd = await server.req('GET', `/fhir/DiagnosticReport/${d.id}`);
    assert.equal(rd.json.subject.reference, `Patient/${p.id}`);
    assert.equal(rd.json.result[0].reference, `Observation/${o.id}`);
    assert.ok(!JSON.stringify(rd.json).includes('urn:uuid:'), 'no urn:uuid left');
    // and search sees them
    const s = await server.req('GET', `/fhir/Observation?subject=Patient/${p.id}`);
    assert.deepEqual(s.json.entry.map((e) => e.resource.id), [o.id]);
    assert.equal(await countBy('Patient', ip), 1);
  });

  test('urn:uuid references in extensions, contained resources and nested elements are rewritten too', async () => {
    const pu = urn(); const eu = urn();
    const b = tx([
      post(patient(uid()), pu),
      post({ resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject: { reference: pu } }, eu),
      post({
        resourceType: 'ExplanationOfBenefit', status: 'active', use: 'claim', created: '2020-01-01', outcome: 'complete',
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' }] },
        patient: { reference: pu }, provider: { reference: '#prov' }, insurer: { display: 'x' },
        insurance: [{ focal: true, coverage: { reference: '#cov' } }],
        contained: [
          { resourceType: 'Coverage', id: 'cov', status: 'active', beneficiary: { reference: pu }, payor: [{ display: 'p' }] },
          { resourceType: 'Practitioner', id: 'prov', extension: [{ url: 'urn:e2e:ext', valueReference: { reference: eu } }] },
        ],
        item: [{ sequence: 1, productOrService: { text: 'x' }, encounter: [{ reference: eu }] }],
        extension: [{ url: 'urn:e2e:ext', valueReference: { reference: eu } }],
      }, urn()),
    ]);
    const e = assertResponseBundle(await send(b), b);
    const p = assertWritten(e[0], 201, 'Patient');
    const enc = assertWritten(e[1], 201, 'Encounter');
    const x = assertWritten(e[2], 201, 'ExplanationOfBenefit');
    const r = await server.req('GET', `/fhir/ExplanationOfBenefit/${x.id}`);
    assertStatus(r, 200);
    assert.ok(!r.body.includes('urn:uuid:'), 'no urn:uuid left anywhere in the resource');
    assert.equal(r.json.patient.reference, `Patient/${p.id}`);
    assert.equal(r.json.item[0].encounter[0].reference, `Encounter/${enc.id}`);
    assert.equal(r.json.extension[0].valueReference.reference, `Encounter/${enc.id}`);
    assert.equal(r.json.contained[0].beneficiary.reference, `Patient/${p.id}`);
    assert.equal(r.json.contained[1].extension[0].valueReference.reference, `Encounter/${enc.id}`);
    assert.equal(r.json.provider.reference, '#prov', 'local references stay');
  });

  test('a PUT entry with a urn:uuid fullUrl: references to it become Type/<the PUT id>; a POST id is replaced', async () => {
    const pu = urn(); const id = uid();
    const b = tx([
      { fullUrl: pu, resource: patient(uid(), { id }), request: { method: 'PUT', url: `Patient/${id}` } },
      post(observation(uid(), pu, { id: 'client-chosen-id' }), urn()),
    ]);
    const e = assertResponseBundle(await send(b), b);
    assert.equal(assertWritten(e[0], 201, 'Patient').id, id);
    const o = assertWritten(e[1], 201, 'Observation');
    assert.notEqual(o.id, 'client-chosen-id', 'POST assigns its own id');
    const r = await server.req('GET', `/fhir/Observation/${o.id}`);
    assert.equal(r.json.subject.reference, `Patient/${id}`);
  });

  test('Prefer: return=representation includes each written resource', async () => {
    const ip = uid(); const pu = urn();
    const b = tx([post(patient(ip), pu), post(observation(uid(), pu), urn())]);
    const entries = assertResponseBundle(await send(b, { prefer: 'return=representation' }), b);
    const p = assertWritten(entries[0], 201, 'Patient');
    assert.equal(entries[0].resource?.resourceType, 'Patient');
    assert.equal(entries[0].resource.id, p.id);
    assert.equal(entries[0].resource.meta?.versionId, '1');
    assert.equal(entries[1].resource?.subject?.reference, `Patient/${p.id}`);
  });

  const rollbacks = [
    ['the last entry is invalid (422)', 422, () => post({ resourceType: 'Observation', status: 'not-a-status', code: { text: 'x' } })],
    ['the last entry references an unknown urn:uuid (400)', 400, () => post(observation(uid(), urn()))],
    ['the last entry has a stale ifMatch (412)', 412, (ctx) => ({ resource: patient(ctx.otherIdent, { id: ctx.otherId, active: false }), request: { method: 'PUT', url: `Patient/${ctx.otherId}`, ifMatch: 'W/"7"' } })],
    ['the last entry has a conditional reference with no match (412)', 412, () => post(observation(uid(), `Patient?identifier=${SYS}|${uid()}`))],
    ['the last entry updates a resource type that does not exist (400/404)', [400, 404], () => ({ resource: { resourceType: 'Nonsense', id: 'x' }, request: { method: 'PUT', url: 'Nonsense/x' } })],
    ['the last entry deletes with a bad URL (400/404)', [400, 404], () => ({ request: { method: 'DELETE', url: 'NoSuchType/123' } })],
  ];
  for (const [what, status, last] of rollbacks) {
    test(`rollback: ${what} → nothing of the transaction is visible`, async () => {
      const existingIdent = uid();
      const existingId = await createDirect(patient(existingIdent));
      const otherIdent = uid();
      const otherId = await createDirect(patient(otherIdent));
      const ip = uid(); const io = uid(); const pu = urn();
      const b = tx([
        post(patient(ip), pu),
        post(observation(io, pu), urn()),
        { resource: patient(existingIdent, { id: existingId, gender: 'other' }), request: { method: 'PUT', url: `Patient/${existingId}` } },
        { request: { method: 'DELETE', url: `Patient?identifier=${SYS}|${existingIdent}-gone` } },
        last({ otherId, otherIdent }),
      ]);
      const r = await send(b);
      assertStatus(r, status, what);
      assertOperationOutcome(r, what);
      assert.equal(await countBy('Patient', ip), 0, 'the created Patient is not visible');
      assert.equal(await countBy('Observation', io), 0, 'the created Observation is not visible');
      const ex = await server.req('GET', `/fhir/Patient/${existingId}`);
      assertStatus(ex, 200);
      assert.equal(ex.json.meta.versionId, '1', 'the updated Patient is unchanged');
      assert.equal(ex.json.gender, undefined);
      const h = await server.req('GET', `/fhir/Patient/${existingId}/_history`);
      assert.equal(h.json.entry.length, 1, 'no new version in the history');
    });
  }

  test('rollback also undoes a delete', async () => {
    const ident = uid();
    const id = await createDirect(patient(ident));
    const b = tx([
      { request: { method: 'DELETE', url: `Patient/${id}` } },
      post({ resourceType: 'Observation', status: 'bogus', code: { text: 'x' } }),
    ]);
    const r = await send(b);
    assertStatus(r, 422);
    const g = await server.req('GET', `/fhir/Patient/${id}`);
    assertStatus(g, 200, 'the deleted Patient is back (never deleted)');
    assert.equal(await countBy('Patient', ident), 1);
  });

  test('conditional create (ifNoneExist): the second returns 200 and the same id; one exists', async () => {
    const ident = uid();
    const mk = () => tx([post(patient(ident), urn(), { ifNoneExist: `identifier=${SYS}|${ident}` })]);
    const first = assertResponseBundle(await send(mk()), mk());
    const a = assertWritten(first[0], 201, 'Patient');
    const second = assertResponseBundle(await send(mk()), mk());
    assert.match(second[0].response.status, /^200\b/, `second: ${second[0].response.status}`);
    const b = parseLocation(second[0].response.location);
    assert.equal(b.id, a.id, 'the existing resource is named');
    assert.equal(b.vid, '1', 'and not updated');
    assert.equal(await countBy('Patient', ident), 1);
    // a reference to the fullUrl of a conditional create that matched points at the existing one
    const pu = urn();
    const io = uid();
    const b3 = tx([post(patient(ident), pu, { ifNoneExist: `identifier=${SYS}|${ident}` }), post(observation(io, pu), urn())]);
    const e3 = assertResponseBundle(await send(b3), b3);
    const o = assertWritten(e3[1], 201, 'Observation');
    const ro = await server.req('GET', `/fhir/Observation/${o.id}`);
    assert.equal(ro.json.subject.reference, `Patient/${a.id}`);
    assert.equal(await countBy('Patient', ident), 1);
  });

  test('concurrent conditional creates with the same ifNoneExist create exactly one resource', async () => {
    // three rounds of 8 racing transactions, each round on its own identifier
    for (let round = 0; round < 3; round++) {
      const ident = uid();
      const mk = () => tx([post(patient(ident), urn(), { ifNoneExist: `identifier=${SYS}|${ident}` })]);
      const rs = await Promise.all(Array.from({ length: 8 }, () => send(mk())));
      const ids = new Set();
      for (const r of rs) {
        assertStatus(r, [200, 409, 412], 'concurrent conditional create');
        if (r.status === 200) {
          assert.match(r.json.entry[0].response.status, /^(200|201)\b/);
          ids.add(parseLocation(r.json.entry[0].response.location).id);
        }
      }
      const n = await countBy('Patient', ident);
      const statuses = rs.map((r) => (r.status === 200 ? r.json.entry[0].response.status.slice(0, 3) : String(r.status))).sort().join(',');
      assert.equal(n, 1, `round ${round}: exactly one Patient with the identifier (found ${n}; statuses ${statuses})`);
      assert.equal(ids.size, 1, `round ${round}: every answer names the same Patient (${ids.size} different ids)`);
    }
  });

  test('concurrent transactions with the same ifMatch: one wins, the others 409/412', async () => {
    const ident = uid();
    const id = await createDirect(patient(ident));
    const mk = (g) => tx([{ resource: patient(ident, { id, gender: g }), request: { method: 'PUT', url: `Patient/${id}`, ifMatch: 'W/"1"' } }]);
    const rs = await Promise.all(['male', 'female', 'other', 'unknown', 'male', 'female'].map((g) => send(mk(g))));
    const ok = rs.filter((r) => r.status === 200);
    for (const r of rs) assertStatus(r, [200, 409, 412], 'concurrent ifMatch');
    assert.equal(ok.length, 1, `exactly one update wins (${ok.length} did)`);
    const g = await server.req('GET', `/fhir/Patient/${id}`);
    assert.equal(g.json.meta.versionId, '2');
  });

  test('conditional create with more than one match → 412, nothing stored', async () => {
    const ident = uid();
    await createDirect(patient(ident));
    await createDirect(patient(ident));
    const io = uid();
    const b = tx([post(observation(io, null), urn()), post(patient(ident), urn(), { ifNoneExist: `identifier=${SYS}|${ident}` })]);
    const r = await send(b);
    assertStatus(r, 412);
    assertOperationOutcome(r);
    assert.equal(await countBy('Patient', ident), 2);
    assert.equal(await countBy('Observation', io), 0);
  });

  test('conditional update (PUT Type?query): 0 matches creates, 1 match updates, 2 matches → 412', async () => {
    const ident = uid();
    const url = `Patient?identifier=${SYS}|${ident}`;
    const b1 = tx([{ resource: patient(ident, { gender: 'female' }), request: { method: 'PUT', url } }]);
    const e1 = assertResponseBundle(await send(b1), b1);
    const c = assertWritten(e1[0], 201, 'Patient');
    const b2 = tx([{ resource: patient(ident, { gender: 'male' }), request: { method: 'PUT', url } }]);
    const e2 = assertResponseBundle(await send(b2), b2);
    const u = assertWritten(e2[0], 200, 'Patient');
    assert.equal(u.id, c.id);
    assert.equal(u.vid, '2');
    const g = await server.req('GET', `/fhir/Patient/${c.id}`);
    assert.equal(g.json.gender, 'male');
    assert.equal(await countBy('Patient', ident), 1);
    await createDirect(patient(ident));
    const b3 = tx([{ resource: patient(ident, { gender: 'other' }), request: { method: 'PUT', url } }]);
    const r3 = await send(b3);
    assertStatus(r3, 412);
    assert.equal((await server.req('GET', `/fhir/Patient/${c.id}`)).json.gender, 'male');
  });

  test('conditional delete (DELETE Type?query)', async () => {
    const ident = uid();
    const id = await createDirect(patient(ident));
    const keep = uid();
    const keepId = await createDirect(patient(keep));
    const b = tx([{ request: { method: 'DELETE', url: `Patient?identifier=${SYS}|${ident}` } }]);
    const e = assertResponseBundle(await send(b), b);
    assert.match(e[0].response.status, /^(200|204)\b/);
    assert.equal(await countBy('Patient', ident), 0);
    assertStatus(await server.req('GET', `/fhir/Patient/${id}`), 410);
    assertStatus(await server.req('GET', `/fhir/Patient/${keepId}`), 200, 'another patient is untouched');
    // no match: not an error
    const b2 = tx([{ request: { method: 'DELETE', url: `Patient?identifier=${SYS}|${uid()}` } }]);
    const e2 = assertResponseBundle(await send(b2), b2);
    assert.match(e2[0].response.status, /^(200|204|404)\b/);
  });

  test('conditional references (Patient?identifier=sys|val) resolve to exactly one match', async () => {
    const ident = uid();
    const pid = await createDirect(patient(ident));
    const io = uid();
    const b = tx([post(observation(io, `Patient?identifier=${SYS}|${ident}`), urn())]);
    const e = assertResponseBundle(await send(b), b);
    const o = assertWritten(e[0], 201, 'Observation');
    const r = await server.req('GET', `/fhir/Observation/${o.id}`);
    assert.equal(r.json.subject.reference, `Patient/${pid}`);
    // two matches → 412, nothing stored
    await createDirect(patient(ident));
    const io2 = uid();
    const b2 = tx([post(patient(uid()), urn()), post(observation(io2, `Patient?identifier=${SYS}|${ident}`), urn())]);
    const r2 = await send(b2);
    assertStatus(r2, 412);
    assertOperationOutcome(r2);
    assert.equal(await countBy('Observation', io2), 0);
  });

  test('spec order: DELETE before POST, whatever the entry order', async () => {
    const ident = uid();
    const oldId = await createDirect(patient(ident));
    // in request order this would create a second match and then delete both (or fail)
    const b = tx([
      post(patient(ident), urn()),
      { request: { method: 'DELETE', url: `Patient?identifier=${SYS}|${ident}` } },
    ]);
    const e = assertResponseBundle(await send(b), b);
    const created = assertWritten(e[0], 201, 'Patient');
    assert.match(e[1].response.status, /^(200|204)\b/);
    assert.deepEqual(await idsBy('Patient', ident), [created.id], 'only the new Patient exists');
    assertStatus(await server.req('GET', `/fhir/Patient/${oldId}`), 410, 'the old one was deleted');
  });

  test('spec order: GET entries see the writes of the same transaction', async () => {
    const ident = uid();
    const id = await createDirect(patient(ident));
    const b = tx([
      { request: { method: 'GET', url: `Patient/${id}` } },
      { request: { method: 'GET', url: `Patient?identifier=${SYS}|${ident}` } },
      { resource: patient(ident, { id, gender: 'female' }), request: { method: 'PUT', url: `Patient/${id}` } },
      post(patient(ident), urn()),
    ]);
    const e = assertResponseBundle(await send(b), b);
    assert.match(e[0].response.status, /^200\b/);
    assert.equal(e[0].resource?.meta?.versionId, '2', 'the read ran after the update');
    assert.equal(e[0].resource.gender, 'female');
    assert.equal(e[1].resource?.type, 'searchset');
    assert.equal(e[1].resource.entry?.filter((x) => x.search?.mode === 'match').length, 2, 'the search ran after the create');
    assertWritten(e[2], 200, 'Patient');
    assertWritten(e[3], 201, 'Patient');
  });

  // R4 http.html#transaction: "servers SHALL either accept all actions and
  // return a 200 OK, along with a response bundle, or reject all resources
  // and return an HTTP 400 or 500 type response" -- reads included.
  for (const [what, get, statuses] of [
    ['a read of a missing resource', () => `Patient/${uid()}`, [404, 400]],
    ['a search with an unknown parameter', () => 'Patient?nosuchparameter=1', [400]],
  ]) {
    test(`a failing GET entry (${what}) fails the whole transaction`, async () => {
      const ident = uid();
      const b = tx([post(patient(ident), urn()), { request: { method: 'GET', url: get() } }]);
      const r = await send(b);
      assertStatus(r, statuses, what);
      assertOperationOutcome(r, what);
      assert.equal(await countBy('Patient', ident), 0, 'the POST of the failed transaction is not visible');
    });
  }

  test('response entries are in request order', async () => {
    const ident = uid();
    const id = await createDirect(patient(ident));
    const del = await createDirect(patient(uid()));
    const orgu = urn();
    const b = tx([
      { request: { method: 'GET', url: `Patient/${id}` } },
      { resource: { resourceType: 'Organization', name: 'E2E Org' }, fullUrl: orgu, request: { method: 'POST', url: 'Organization' } },
      { request: { method: 'DELETE', url: `Patient/${del}` } },
      { resource: patient(ident, { id, managingOrganization: { reference: orgu } }), request: { method: 'PUT', url: `Patient/${id}` } },
      post(observation(uid(), `Patient/${id}`), urn()),
      { resource: { resourceType: 'Practitioner', id: `${ident}-pr`, name: [{ family: 'Pr' }] }, request: { method: 'PUT', url: `Practitioner/${ident}-pr` } },
    ]);
    const e = assertResponseBundle(await send(b), b);
    assert.match(e[0].response.status, /^200\b/);
    assert.equal(e[0].resource?.resourceType, 'Patient');
    const org = assertWritten(e[1], 201, 'Organization');
    assert.match(e[2].response.status, /^(200|204)\b/);
    assert.equal(assertWritten(e[3], 200, 'Patient').id, id);
    assertWritten(e[4], 201, 'Observation');
    assert.equal(assertWritten(e[5], 201, 'Practitioner').id, `${ident}-pr`);
    const p = await server.req('GET', `/fhir/Patient/${id}`);
    assert.equal(p.json.managingOrganization.reference, `Organization/${org.id}`);
  });

  test('a transaction in which two entries write the same resource is rejected, nothing stored', async () => {
    const ident = uid();
    const id = await createDirect(patient(ident));
    const io = uid();
    const b = tx([
      post(observation(io, `Patient/${id}`), urn()),
      { resource: patient(ident, { id, gender: 'male' }), request: { method: 'PUT', url: `Patient/${id}` } },
      { resource: patient(ident, { id, gender: 'female' }), request: { method: 'PUT', url: `Patient/${id}` } },
    ]);
    const r = await send(b);
    assertStatus(r, [400, 409, 422]);
    assertOperationOutcome(r);
    assert.equal(await countBy('Observation', io), 0);
  });
});

describe('batch', () => {
  test('one bad entry fails alone: the others succeed, it carries a 4xx and an outcome', async () => {
    const ip = uid(); const io = uid();
    const existing = await createDirect(patient(uid()));
    const b = tx([
      post(patient(ip)),
      post({ resourceType: 'Observation', status: 'not-a-status', code: { text: 'x' } }),
      post(observation(io, `Patient/${existing}`)),
      { request: { method: 'GET', url: 'Patient/does-not-exist' } },
      { resource: { resourceType: 'Patient', id: 'other-id' }, request: { method: 'PUT', url: `Patient/${existing}` } },
    ], 'batch');
    const e = assertResponseBundle(await send(b), b);
    assertWritten(e[0], 201, 'Patient');
    assert.match(e[1].response.status, /^422\b/);
    assert.equal(e[1].response.outcome?.resourceType, 'OperationOutcome');
    assertWritten(e[2], 201, 'Observation');
    assert.match(e[3].response.status, /^404\b/);
    assert.equal(e[3].response.outcome?.resourceType, 'OperationOutcome');
    assert.match(e[4].response.status, /^4\d\d\b/, 'PUT with a mismatched id');
    assert.equal(e[4].response.outcome?.resourceType, 'OperationOutcome');
    assert.equal(await countBy('Patient', ip), 1);
    assert.equal(await countBy('Observation', io), 1);
  });

  test('GET entries: read and search', async () => {
    const ident = uid();
    const id = await createDirect(patient(ident));
    const b = tx([
      { request: { method: 'GET', url: `Patient/${id}` } },
      { request: { method: 'GET', url: `Patient?identifier=${SYS}|${ident}` } },
      { request: { method: 'GET', url: `Patient?identifier=${SYS}|${uid()}` } },
      { request: { method: 'GET', url: 'Patient?nosuchparameter=1' } },
    ], 'batch');
    const e = assertResponseBundle(await send(b), b);
    assert.match(e[0].response.status, /^200\b/);
    assert.equal(e[0].resource?.id, id);
    assert.equal(e[0].resource.meta.versionId, '1');
    assert.match(e[1].response.status, /^200\b/);
    assert.equal(e[1].resource?.resourceType, 'Bundle');
    assert.equal(e[1].resource.type, 'searchset');
    assert.deepEqual(e[1].resource.entry.map((x) => x.resource.id), [id]);
    assert.equal(e[2].resource?.entry?.length ?? 0, 0, 'no match');
    assert.match(e[3].response.status, /^400\b/, 'an unknown search parameter');
    assert.equal(e[3].response.outcome?.resourceType, 'OperationOutcome');
  });
});

describe('malformed bundles', () => {
  // [what, statuses, bundle builder(ident)]: every entry carries `ident`, so
  // nothing of it may be found afterwards
  const cases = [
    ['not a Bundle', [400, 422], () => ({ resourceType: 'Patient' })],
    ['Bundle of type collection', [400, 422], (i) => ({ resourceType: 'Bundle', type: 'collection', entry: [{ resource: patient(i) }] })],
    ['entry without request', [400, 422], (i) => tx([post(patient(i)), { resource: patient(i) }])],
    ['request with an unknown method', [400, 405, 422], (i) => tx([post(patient(i)), { resource: patient(i), request: { method: 'PATCH', url: 'Patient' } }])],
    ['POST url does not match the resource type', [400, 422], (i) => tx([post(patient(i)), { resource: patient(i), request: { method: 'POST', url: 'Observation' } }])],
    // bdl-7: fullUrl must be unique in a bundle (a reference to it would be ambiguous)
    ['duplicate fullUrl', [400, 422], (i) => { const u = urn(); return tx([post(patient(i), u), post(patient(i), u), post(observation(i, u), urn())]); }],
  ];
  for (const [what, statuses, mk] of cases) {
    test(`${what} → ${statuses.join('/')} OperationOutcome, nothing stored`, async () => {
      const ident = uid();
      const r = await send(mk(ident));
      assertStatus(r, statuses, what);
      assertOperationOutcome(r, what);
      assert.equal(await countBy('Patient', ident), 0, 'nothing stored');
      assert.equal(await countBy('Observation', ident), 0, 'nothing stored');
    });
  }
});
