// Keys: per-patient data keys and erasure by crypto-shredding, attacked from
// the disk and through the API, on a running server.
//
// All 41 Synthea patients are loaded (transactions); then every file of the
// store (the embedded store's database, WAL and shared memory, or the whole
// PostgreSQL cluster directory), every other file of the data directory, a
// backup made while serving and the server's log are searched for every patient's names, identifiers, phone
// numbers, address parts and birth date: none may be there. Then one patient
// is erased with `carevault patient erase` while the server serves: their
// resources answer 404, no search finds them, writes of new data for them are
// refused (410), the other patients read back unchanged, and the audit trail
// is still whole and records the erasure.
//
// The records are synthetic but shaped like real PHI: no assertion message
// prints their contents (counts and server-assigned ids only).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { start } from './lib/server.mjs';
import { mapLimit, sleep } from './lib/fhir.mjs';
import { cli, facts, verify } from './lib/audit.mjs';
import { PASSWORD, addAccount, addBackend, backendTokenRes, login, username } from './lib/access.mjs';
import { base32Decode } from './lib/totp.mjs';
import { loadSyntheaBundles, parseLocation, rewriteRefs } from './lib/synthea.mjs';

let server;
let agent;
const bundles = loadSyntheaBundles();
// per bundle: the resources as created (ids and references rewritten)
const created = bundles.map(() => []);
let loaded = false;

before(async () => {
  server = await start({ name: 'keys' });
  agent = new https.Agent({ keepAlive: true, maxSockets: 4, ca: server.ca });
});

after(async () => {
  agent?.destroy();
  if (server) {
    try { await server.stop(); } finally { await server.cleanup(); }
  }
});

const req = (method, p, o = {}) => server.req(method, p, { agent, timeout: 300_000, ...o });
const need = () => assert.ok(loaded, 'the Synthea data did not load');
const patientOf = (i) => created[i].find((r) => r.resourceType === 'Patient');
const NON_PATIENT = new Set(['Organization', 'Practitioner', 'Location', 'PractitionerRole', 'Medication']);

function statusOnly(res, expected, msg) {
  const list = Array.isArray(expected) ? expected : [expected];
  if (list.includes(res.status)) return;
  const why = res.json?.resourceType === 'OperationOutcome' ? res.json.issue?.map((i) => i.diagnostics).join('; ').slice(0, 300) : '';
  assert.fail(`${msg}: expected ${list.join('|')}, got ${res.status} ${why}`);
}

test('all 41 Synthea patients load', async () => {
  assert.equal(bundles.length, 41);
  await mapLimit(bundles, 2, async ({ raw, bundle }, i) => {
    const r = await req('POST', '/fhir', { body: raw });
    statusOnly(r, 200, `transaction of bundle #${i}`);
    const map = new Map();
    r.json.entry.forEach((e, k) => {
      assert.match(e.response?.status ?? '', /^201\b/, `bundle #${i} entry ${k}`);
      const loc = parseLocation(e.response.location);
      map.set(bundle.entry[k].fullUrl, `${loc.type}/${loc.id}`);
    });
    for (const e of bundle.entry) {
      const res = rewriteRefs(e.resource, map);
      res.id = map.get(e.fullUrl).split('/')[1];
      created[i].push(res);
    }
  });
  loaded = true;
});

// ------------------------------------------------------------ at rest

/** Every patient's direct identifiers, as they stand in JSON (quoted), and bare when long. */
function needles() {
  const out = new Set();
  for (const { bundle } of bundles) {
    const p = bundle.entry.map((e) => e.resource).find((r) => r.resourceType === 'Patient');
    out.add(p.birthDate);
    for (const n of p.name || []) {
      if (n.family) out.add(n.family);
      for (const g of n.given || []) out.add(g);
    }
    for (const a of p.address || []) {
      for (const l of a.line || []) out.add(l);
      if (a.city) out.add(a.city);
      if (a.postalCode) out.add(a.postalCode);
    }
    for (const t of p.telecom || []) out.add(t.value);
    for (const id of p.identifier || []) out.add(id.value);
  }
  const words = [...out].filter((s) => typeof s === 'string' && s.length >= 4);
  return { count: words.length, list: [...words.map((w) => `"${w}"`), ...words.filter((w) => w.length >= 8)] };
}

function walk(dir, out = []) {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const f = path.join(dir, e.name);
    if (e.isDirectory()) walk(f, out);
    else if (e.isFile()) out.push(f);
  }
  return out;
}

/** The store's files, every other file the server writes (not the TLS key or master key: no PHI
 * there), a backup of it, and the log. */
function files() {
  const out = walk(server.dataDir).filter((f) => !f.includes(`${path.sep}tls${path.sep}`) && !f.endsWith('master.key'));
  const backup = path.join(server.tmpDir, 'scan.cvbk');
  if (fs.existsSync(backup)) out.push(backup);
  if (process.env.CV_PG_BASE) {
    const root = path.join(decodeURIComponent(/host=([^&]+)/.exec(process.env.CV_PG_BASE)[1]), 'data');
    for (const sub of ['base', 'pg_wal', 'global']) walk(path.join(root, sub), out);
  }
  out.push(server.logFile);
  return out;
}

/** The files (by base name) that hold any of the needles; one pass per file. */
function holders(list) {
  const esc = list.map((w) => w.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).sort((a, b) => b.length - a.length);
  const re = new RegExp(esc.join('|'));
  return files().filter((f) => re.test(fs.readFileSync(f).toString('latin1'))).map((f) => path.basename(f));
}

test('no patient\'s names, identifiers, phones, addresses or birth dates are in any file', () => {
  need();
  const b = cli(server, ['backup', '--data', server.dataDir, '--out', path.join(server.tmpDir, 'scan.cvbk')], { timeout: 300_000 });
  assert.equal(b.status, 0, `backup: ${b.stderr.slice(-300)}`);
  const { count, list } = needles();
  assert.ok(count >= 41 * 5, `a handful of identifiers per patient (${count})`);
  const f = files();
  assert.ok(f.some((x) => x.endsWith('-wal') || x.includes('pg_wal')), 'the WAL is among the files searched');
  assert.ok(f.some((x) => x.endsWith('scan.cvbk')), 'a backup is among the files searched');
  // the search itself works: a file holding one of them is found
  const probe = path.join(server.tmpDir, 'probe.txt');
  fs.writeFileSync(probe, `x${list[0]}x`);
  assert.ok(new RegExp(list[0].replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).test(fs.readFileSync(probe, 'latin1')));
  fs.unlinkSync(probe);
  assert.deepEqual(holders(list), [], 'files holding an identifier in plaintext');
  // the search can take longer than the server keeps an idle connection: start with fresh ones
  agent.destroy();
  agent = new https.Agent({ keepAlive: true, maxSockets: 4, ca: server.ca });
});

// ------------------------------------------------------------ erasure

let erased; // the erased patient's bundle index
let countErased = 0;

async function allOf(i) {
  const out = [];
  for (const r of created[i]) out.push({ r, res: await req('GET', `/fhir/${r.resourceType}/${r.id}`) });
  return out;
}

async function total(p) {
  const r = await req('GET', `${p}${p.includes('?') ? '&' : '?'}_summary=count`);
  statusOnly(r, 200, `count ${p.split('?')[0]}`);
  return r.json.total;
}

test('carevault patient erase destroys a patient\'s keys while the server serves', async () => {
  need();
  erased = 3;
  const a = patientOf(erased);
  assert.ok(await total(`/fhir/Observation?patient=${a.id}`) > 0, 'the patient has Observations before');
  const before = await allOf(erased);
  for (const { r, res } of before) statusOnly(res, 200, `${r.resourceType}/${r.id} before`);
  const out = cli(server, ['patient', 'erase', '--data', server.dataDir, '--id', a.id, '--yes']);
  assert.equal(out.status, 0, `erase: ${out.stderr.slice(0, 300)}`);
  const m = /erased: (\d+) resources/.exec(out.stdout);
  assert.ok(m, `erase says how many: ${out.stdout.slice(0, 200)}`);
  countErased = Number(m[1]);
  const inCompartment = created[erased].filter((r) => !NON_PATIENT.has(r.resourceType)).length;
  assert.equal(countErased, inCompartment, 'every resource of the patient\'s compartment, and nothing else');
  assert.doesNotMatch(out.stdout + out.stderr, new RegExp(a.name?.[0]?.family ?? '^$'), 'the command prints no name');
  // the ledger beside the store records the blinded owner, not the id
  const ledger = fs.readFileSync(path.join(server.dataDir, 'erasures'), 'utf8');
  assert.match(ledger, /^[0-9a-f]{32} \d+\n$/);
  assert.ok(!ledger.includes(a.id), 'the ledger holds no patient id');
});

test('the erased patient\'s resources answer 404, and no search finds them', async () => {
  need();
  assert.ok(countErased > 0, 'the erasure ran');
  const a = patientOf(erased);
  await sleep(1500); // the server drops cached keys within a second
  for (const { r, res } of await allOf(erased)) {
    statusOnly(res, NON_PATIENT.has(r.resourceType) ? 200 : 404, `${r.resourceType}/${r.id} after the erasure`);
  }
  statusOnly(await req('GET', `/fhir/Patient/${a.id}/_history`), 404, 'the patient\'s history');
  statusOnly(await req('GET', `/fhir/Patient/${a.id}/$everything`), 404, '$everything');
  assert.equal(await total(`/fhir/Observation?patient=${a.id}`), 0, 'searches by patient');
  assert.equal(await total(`/fhir/Patient?_id=${a.id}`), 0, 'search by id');
  const fam = a.name?.[0]?.family;
  const withName = bundles.filter(({ bundle }) => bundle.entry.some((e) => e.resource.resourceType === 'Patient' &&
    e.resource.name?.some((n) => n.family === fam))).length;
  assert.equal(await total(`/fhir/Patient?family:exact=${encodeURIComponent(fam)}`), withName - 1, 'search by name');
  // the system-wide history shows none of their versions
  const ids = new Set(created[erased].filter((r) => !NON_PATIENT.has(r.resourceType)).map((r) => r.id));
  const h = await req('GET', '/fhir/Patient/_history?_count=100');
  statusOnly(h, 200, 'type history');
  assert.equal((h.json.entry ?? []).filter((e) => ids.has(e.resource?.id ?? e.request?.url?.split('/')[1])).length, 0,
    'type history leaves them out');
});

test('the other patients read back unchanged', async () => {
  need();
  for (const i of [0, erased + 1, 40]) {
    for (const { r, res } of (await allOf(i)).slice(0, 40)) {
      statusOnly(res, 200, `${r.resourceType}/${r.id}`);
      assert.equal(res.json.id, r.id);
      const { meta, ...got } = res.json;
      const { meta: m0, ...want } = r;
      void meta; void m0;
      assert.ok(isDeepStrictEqual(got, want), `${r.resourceType}/${r.id} differs`);
    }
  }
});

test('new data for an erased patient is refused; a second erasure says so', async () => {
  need();
  const a = patientOf(erased);
  const obs = { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${a.id}` } };
  const r = await req('POST', '/fhir/Observation', { body: JSON.stringify(obs), headers: { 'content-type': 'application/fhir+json' } });
  statusOnly(r, 410, 'a new Observation for the erased patient');
  assert.equal(r.json?.resourceType, 'OperationOutcome');
  const put = await req('PUT', `/fhir/Patient/${a.id}`, { body: JSON.stringify({ resourceType: 'Patient', id: a.id }),
    headers: { 'content-type': 'application/fhir+json' } });
  statusOnly(put, 410, 'recreating the erased Patient');
  const again = cli(server, ['patient', 'erase', '--data', server.dataDir, '--id', a.id, '--yes']);
  assert.equal(again.status, 1);
  assert.match(again.stderr, /erased already/);
  const none = cli(server, ['patient', 'erase', '--data', server.dataDir, '--id', 'no-such-patient', '--yes']);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no data of this patient/);
  const unconfirmed = cli(server, ['patient', 'erase', '--data', server.dataDir, '--id', patientOf(0).id]);
  assert.equal(unconfirmed.status, 2, 'without --yes nothing happens');
  statusOnly(await req('GET', `/fhir/Patient/${patientOf(0).id}`), 200, 'the unconfirmed patient is still there');
});

test('the audit trail records the erasure and stays whole', async () => {
  need();
  const a = patientOf(erased);
  const r = await req('GET', `/fhir/AuditEvent?patient=${a.id}&subtype=patient-erased`);
  statusOnly(r, 200, 'audit search');
  assert.equal(r.json.entry?.length, 1, 'one erasure record under the patient\'s pseudonym');
  const started = await req('GET', `/fhir/AuditEvent?patient=${a.id}&subtype=patient-erasure-started`);
  assert.equal(started.json.entry?.length, 1, 'the erasure was recorded before the keys were destroyed');
  assert.ok(Date.parse(started.json.entry[0].resource.recorded) <= Date.parse(r.json.entry[0].resource.recorded), 'and before its outcome');
  const v = verify(server);
  assert.ok(v.whole, `audit verify: ${v.out.slice(0, 300)}`);
});

// ------------------------------------------------------------ erasure through the admin API

test('the admin API erases a patient only with a second administrator\'s approval', async () => {
  need();
  // a reader for the checks (the first administrator account retires the bootstrap token)
  const reader = await addBackend(server, (m, p, o) => server.req(m, p, o), 'keys reader', 'system/*.rs system/AuditEvent.rs');
  const { token } = await backendTokenRes(server, reader);
  const req = (method, p) => server.req(method, p, { agent, token });
  const fx = { sym: new Map() };
  const a1 = await addAccount(server, fx, 'eraser_one', { role: 'admin' });
  const s1 = await login(server, a1);
  const as = (sess) => (method, p, body) => server.req(method, p, { token: '', body: body ? JSON.stringify(body) : undefined,
    headers: { cookie: sess.cookie, 'x-csrf-token': sess.csrf, 'content-type': 'application/json' } });
  const one = as(s1);
  const made = await one('POST', '/admin/users', { username: username('eraser_two'), role: 'admin', password: PASSWORD });
  assert.equal(made.status, 201, `second administrator: ${made.status}`);
  const a2 = { id: made.json.id, username: username('eraser_two'), seed: base32Decode(new URL(made.json.otpauth).searchParams.get('secret')) };
  const s2 = await login(server, a2);
  const two = as(s2);
  const p = patientOf(5);
  const q = patientOf(6);
  // a request, pending
  const req1 = await one('POST', '/admin/erasures', { patient: p.id, reason: 'ticket DPO-123' });
  assert.equal(req1.status, 202, `request: ${req1.status} ${req1.body?.toString().slice(0, 200)}`);
  assert.equal(req1.json.state, 'pending');
  assert.equal(req1.json.requested_by, a1.id);
  assert.equal((await req('GET', `/fhir/Patient/${p.id}`)).status, 200, 'nothing is erased by a request');
  // the requester cannot approve their own request; the bootstrap administrator can as a second one, but a2 does
  const self = await one('POST', `/admin/erasures/${req1.json.id}/approve`);
  assert.equal(self.status, 403);
  assert.match(JSON.stringify(self.json), /second administrator must approve/);
  const ok = await two('POST', `/admin/erasures/${req1.json.id}/approve`);
  assert.equal(ok.status, 200, `approve: ${ok.status} ${ok.body?.toString().slice(0, 200)}`);
  assert.equal(ok.json.state, 'done');
  assert.equal(ok.json.decided_by, a2.id);
  assert.equal(ok.json.resources, created[5].filter((r) => !NON_PATIENT.has(r.resourceType)).length);
  await sleep(1200);
  assert.equal((await req('GET', `/fhir/Patient/${p.id}`)).status, 404, 'the approved erasure is done');
  const lines = fs.readFileSync(path.join(server.dataDir, 'erasures'), 'utf8').trim().split('\n');
  assert.equal(lines.length, 2, 'the ledger has this erasure too');
  // the ledger rebuilt from the store (a deployment with several nodes) says the same
  const rebuilt = cli(server, ['patient', 'ledger', '--data', server.dataDir]);
  assert.equal(rebuilt.status, 0, rebuilt.stderr);
  assert.deepEqual(rebuilt.stdout.trim().split('\n').sort(), lines.slice().sort());
  const again = await two('POST', `/admin/erasures/${req1.json.id}/approve`);
  assert.equal(again.status, 409, 'a decided request stays decided');
  assert.equal((await one('POST', '/admin/erasures', { patient: p.id, reason: 'again' })).status, 410, 'erased already');
  assert.equal((await one('POST', '/admin/erasures', { patient: 'nobody-here', reason: 'x' })).status, 404, 'no such patient');
  assert.equal((await one('POST', '/admin/erasures', { patient: q.id })).status, 400, 'a reason is required');
  // a rejected request erases nothing
  const req2 = await one('POST', '/admin/erasures', { patient: q.id, reason: 'mistaken ticket' });
  assert.equal(req2.status, 202);
  const no = await one('POST', `/admin/erasures/${req2.json.id}/reject`);
  assert.equal(no.status, 200);
  assert.equal(no.json.state, 'rejected');
  assert.equal((await two('POST', `/admin/erasures/${req2.json.id}/approve`)).status, 409, 'a rejected request cannot be approved');
  assert.equal((await req('GET', `/fhir/Patient/${q.id}`)).status, 200, 'the rejected patient is still there');
  const list = await two('GET', '/admin/erasures');
  assert.equal(list.status, 200);
  assert.deepEqual(list.json.erasures.map((e) => e.state).sort(), ['done', 'rejected']);
  // the trail has the request, the erasure and the rejection under the patients' pseudonyms
  const trail = await req('GET', `/fhir/AuditEvent?patient=${p.id}&subtype=patient-erased`);
  const outcomes = (trail.json.entry ?? []).map((e) => e.resource.outcome).sort();
  assert.deepEqual(outcomes, ['0', '4', '4'], 'the erasure, and the two refused approvals, are in the trail');
  // the approved one was recorded before its ledger line and keys, with the same request id
  const started = await req('GET', `/fhir/AuditEvent?patient=${p.id}&subtype=patient-erasure-started`);
  assert.equal(started.json.entry?.length, 1, 'one start, for the approval that went ahead');
  const done = trail.json.entry.find((e) => e.resource.outcome === '0').resource;
  assert.ok(Date.parse(started.json.entry[0].resource.recorded) <= Date.parse(done.recorded), 'the start comes first');
  assert.ok(facts(done).requestId, 'the erasure record carries its request id');
  assert.equal(facts(started.json.entry[0].resource).requestId, facts(done).requestId, 'both are the approval request\'s');
});
