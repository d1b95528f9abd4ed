// The audit trail, end to end (issue 6; src/audit/audit.h): every request
// leaves a record — allowed or refused, FHIR or login, token or administration
// — before it is answered; a write's record commits with it; auditors search
// the trail as AuditEvents and nobody changes it through the API; a patient
// reads who accessed their record ($access-report); `carevault audit verify`
// finds every kind of tampering (edited, deleted, inserted, swapped, cut off,
// search-key rows deleted or added,
// rewritten) and names the first bad record; records survive kill -9; alerts
// reach the trail, the log and a webhook; checkpoints reach an https sink; and
// nothing of the patients is written in the clear.
//
// Four servers: the main one (the walk, searches, the access report, PHI), one
// to tamper with, one to crash, and one with low alert thresholds whose
// webhook and checkpoint sink is a local https server. With CV_PG_BASE each
// has its own PostgreSQL database (tampering then edits copies made with
// CREATE DATABASE ... TEMPLATE); without it, SQLite files (copies of the data
// directory).
//
// No PHI in messages: ids, request ids, statuses and codes only.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { httpsRequest, start } from './lib/server.mjs';
import { addAccount, login, principal, PASSWORD, CB_URI, sleep, diag } from './lib/access.mjs';
import { totp } from './lib/totp.mjs';
import {
  DCM, DISCLOSURE_URL, FORM, J, addBackend, backendTokenRes, chainHash, cli, facts, findRecord, httpsSink, rawContains,
  rawStore, rid, searchTrail, smartCodeFlow, storeHandle, verify,
} from './lib/audit.mjs';

const TAG = crypto.randomBytes(4).toString('hex');
// synthetic PHI: a family name and a break-glass reason that must never be stored or logged in the clear
const FAMILY = `Qzorvathine${crypto.randomBytes(4).toString('hex').replace(/[0-9]/g, (d) => 'abcdefghij'[d])}`;
const REASON = `unresponsive on arrival, relatives unreachable ${TAG}`;
const ID = {
  P1: `au-p1-${TAG}`, P2: `au-p2-${TAG}`, DR: `au-dr-${TAG}`, DR2: `au-dr2-${TAG}`, CT: `au-ct-${TAG}`,
  O1: `au-o1-${TAG}`, O2: `au-o2-${TAG}`, OSH: `au-osh-${TAG}`,
};
const DR_NAME = 'Ada Testwell'; // the practitioner's name the patient's report shows
const APP_SCOPE = 'launch/patient openid fhirUser offline_access patient/*.rs';
const pref = (id) => `Patient/${id}`;

const servers = {};
let W; // the main world: {server, boot, acct, p (principals), backend, app, t0}
const walked = new Map(); // step name → {rid, record (facts), ae}

function bootCaller(server) {
  return { name: 'bootstrap', call: (m, p, o = {}) => server.req(m, p, o) };
}

const obs = (id, subject, extra = {}) => ({
  resourceType: 'Observation', ...(id ? { id } : {}), status: 'final', code: { text: 'audit test' },
  subject: { reference: subject }, valueInteger: 1, ...extra,
});

/** The main server's world: patients, practitioners, a care team, accounts, sessions, clients. */
async function setupMain() {
  const server = await start({ name: 'audit' });
  servers.main = server;
  const boot = bootCaller(server);
  const put = async (r) => {
    const res = await server.req('PUT', `/fhir/${r.resourceType}/${r.id}`, { body: r });
    assert.equal(res.status, 201, `PUT ${r.resourceType}/${r.id}: ${res.status} ${diag(res)}`);
  };
  await put({ resourceType: 'Patient', id: ID.P1, active: true, name: [{ family: FAMILY, given: ['Wren'] }], birthDate: '1970-01-01' });
  await put({ resourceType: 'Patient', id: ID.P2, active: true, name: [{ family: `${FAMILY}b` }] });
  await put({ resourceType: 'Practitioner', id: ID.DR, active: true, name: [{ given: ['Ada'], family: 'Testwell' }] });
  await put({ resourceType: 'Practitioner', id: ID.DR2, active: true, name: [{ given: ['Bo'], family: 'Glasswell' }] });
  await put({ resourceType: 'CareTeam', id: ID.CT, status: 'active', subject: { reference: pref(ID.P1) },
    participant: [{ member: { reference: `Practitioner/${ID.DR}` } }] });
  await put(obs(ID.O1, pref(ID.P1)));
  await put(obs(ID.O2, pref(ID.P2)));
  await put(obs(ID.OSH, pref(ID.P1), { performer: [{ reference: pref(ID.P2) }] }));
  const fx = { sym: new Map([['p1', { type: 'Patient', id: ID.P1 }], ['p2', { type: 'Patient', id: ID.P2 }],
    ['dr', { type: 'Practitioner', id: ID.DR }], ['dr2', { type: 'Practitioner', id: ID.DR2 }]]) };
  const acct = {};
  for (const [n, spec] of Object.entries({ patient1: { role: 'patient', link: 'p1' }, patient2: { role: 'patient', link: 'p2' },
    doctor: { role: 'doctor', link: 'dr' }, doctor_bg: { role: 'doctor', link: 'dr2' }, auditor: { role: 'auditor' } })) {
    acct[n] = await addAccount(server, fx, `au_${n}_${TAG}`, spec);
  }
  const p = {};
  for (const n of Object.keys(acct)) p[n] = principal(server, n, await login(server, acct[n]));
  const backend = await addBackend(server, boot.call, `audit backend ${TAG}`, 'system/*.cruds');
  const backendTok = await backendTokenRes(server, backend);
  p.backend = principal(server, 'backend', { token: backendTok.token });
  const appRes = await server.req('POST', '/admin/clients', { headers: J,
    body: { name: `audit app ${TAG}`, type: 'public', redirect_uris: [CB_URI], scope: APP_SCOPE } });
  assert.equal(appRes.status, 201, `app client: ${appRes.status}`);
  const app = { id: appRes.json.client_id ?? appRes.json.id };
  W = { server, boot, acct, p, backend, app, fx };
}

/** A server, its tampering: two bursts of records with a checkpoint in between, then stopped. */
async function setupTamper() {
  const s = await start({ name: 'audit-tamper', env: { CAREVAULT_AUDIT_CHECKPOINT_RECORDS: '5' } });
  servers.tamper = s;
  const r = await s.req('PUT', '/fhir/Patient/t1', { body: { resourceType: 'Patient', id: 't1', active: true } });
  assert.equal(r.status, 201);
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < 8; i++) {
      await s.req('GET', '/fhir/Patient/t1');
      await s.req('POST', '/fhir/Observation', { body: obs(null, 'Patient/t1') });
    }
    await sleep(1300); // the trail's thread signs a checkpoint (every 5 records, looked at each second)
  }
  await s.stop();
}

before(async () => {
  const results = await Promise.allSettled([setupMain(), setupTamper()]);
  for (const r of results) if (r.status === 'rejected') throw r.reason;
}, { timeout: 120_000 });

after(async () => {
  const errors = [];
  for (const s of Object.values(servers)) {
    try { if (s.child && s.exit === null) await s.stop(); } catch (e) { errors.push(e); }
    try { await s.cleanup(); } catch (e) { errors.push(e); }
  }
  if (errors.length) throw errors[0];
});

// ---------------------------------------------------------------- 1. every interaction has its record

/** The auditor finds the record(s) of a response. */
async function recordsOf(res, agent, since) {
  return findRecord(W.p.auditor, rid(res), { agent, since });
}

test('every interaction produces its record, refused ones included', async (t) => {
  const { server, p, acct, backend, app } = W;
  const since = Date.now() - 2000;
  const steps = [];
  const step = (name, agent, run, want) => steps.push({ name, agent, run, want });
  const doc = p.doctor;
  const dr = acct.doctor.id;
  const P1 = pref(ID.P1);
  let made;

  let appTok;
  let loginSession;
  let newUser;
  const ident = `cc-${TAG}`;
  step('read', dr, () => doc.call('GET', `/fhir/Patient/${ID.P1}`),
    { type: 'rest', subtype: 'read', action: 'R', outcome: '0', role: 'doctor', patient: P1, purpose: 'TREAT', entity: P1 });
  step('vread', dr, () => doc.call('GET', `/fhir/Observation/${ID.O1}/_history/1`),
    { type: 'rest', subtype: 'vread', action: 'R', outcome: '0', role: 'doctor', patient: P1, entity: `Observation/${ID.O1}` });
  step('history', dr, () => doc.call('GET', `/fhir/Observation/${ID.O1}/_history`),
    { type: 'rest', subtype: 'history-instance', action: 'R', outcome: '0', role: 'doctor', patient: P1 });
  step('search', dr, () => doc.call('GET', `/fhir/Observation?subject=${P1}`),
    { type: 'rest', subtype: 'search-type', action: 'E', outcome: '0', role: 'doctor', patient: P1 });
  step('search by POST', dr, () => doc.call('POST', '/fhir/Observation/_search', { headers: FORM, body: `subject=${encodeURIComponent(P1)}` }),
    { type: 'rest', subtype: 'search-type', action: 'E', outcome: '0', role: 'doctor', patient: P1 });
  step('create', dr, async () => {
    const r = await doc.call('POST', '/fhir/Observation', { body: obs(null, P1, { performer: [{ reference: `Practitioner/${ID.DR}` }] }) });
    made = r.json?.id;
    return r;
  }, { status: 201, type: 'rest', subtype: 'create', action: 'C', outcome: '0', role: 'doctor', patient: P1, entityOf: () => `Observation/${made}/_history/1` });
  step('update', dr, () => doc.call('PUT', `/fhir/Observation/${made}`, { body: obs(made, P1, { performer: [{ reference: `Practitioner/${ID.DR}` }], valueInteger: 2 }) }),
    { status: 200, type: 'rest', subtype: 'update', action: 'U', outcome: '0', role: 'doctor', patient: P1, entityOf: () => `Observation/${made}/_history/2` });
  step('delete', dr, () => doc.call('DELETE', `/fhir/Observation/${made}`),
    { status: [200, 204], type: 'rest', subtype: 'delete', action: 'D', outcome: '0', role: 'doctor', patient: P1 });
  step('conditional create', dr, () => doc.call('POST', '/fhir/Observation', {
    headers: { 'If-None-Exist': `identifier=urn:au|${ident}` },
    body: obs(null, P1, { identifier: [{ system: 'urn:au', value: ident }], performer: [{ reference: `Practitioner/${ID.DR}` }] }) }),
  { status: 201, type: 'rest', subtype: 'create', action: 'C', outcome: '0', patient: P1 });
  step('conditional update', dr, async () => {
    const r = await doc.call('PUT', `/fhir/Observation?identifier=urn:au|${ident}`, {
      body: obs(null, P1, { identifier: [{ system: 'urn:au', value: ident }], performer: [{ reference: `Practitioner/${ID.DR}` }], valueInteger: 5 }) });

    return r;
  }, { status: 200, type: 'rest', subtype: 'update', action: 'U', outcome: '0', patient: P1 });
  step('conditional delete', dr, () => doc.call('DELETE', `/fhir/Observation?identifier=urn:au|${ident}`),
    { status: [200, 204], type: 'rest', subtype: 'delete', action: 'D', outcome: '0', patient: P1 });
  const post = (r) => ({ fullUrl: `urn:uuid:${crypto.randomUUID()}`, resource: r, request: { method: 'POST', url: r.resourceType } });
  const mine = () => obs(null, P1, { performer: [{ reference: `Practitioner/${ID.DR}` }] });
  step('transaction', dr, () => doc.call('POST', '/fhir', { body: { resourceType: 'Bundle', type: 'transaction', entry: [post(mine()), post(mine())] } }),
    { status: 200, type: 'rest', subtype: 'transaction', action: 'E', outcome: '0', patient: P1 });
  step('batch', dr, () => doc.call('POST', '/fhir', { body: { resourceType: 'Bundle', type: 'batch', entry: [post(mine())] } }),
    { status: 200, type: 'rest', subtype: 'batch', action: 'E', outcome: '0' });
  step('$everything', dr, () => doc.call('GET', `/fhir/Patient/${ID.P1}/$everything`),
    { type: 'rest', subtype: 'operation', action: 'E', outcome: '0', patient: P1 });
  step('$break-glass', acct.doctor_bg.id, () => p.doctor_bg.call('POST', `/fhir/Patient/${ID.P2}/$break-glass`, {
    headers: FORM, body: new URLSearchParams({ reason: REASON }).toString() }),
  { type: '110113', subtype: 'break-glass', action: 'E', outcome: '0', role: 'doctor', patient: pref(ID.P2), btg: true, purpose: 'ETREAT' });
  step('read under break-glass', acct.doctor_bg.id, () => p.doctor_bg.call('GET', `/fhir/Observation/${ID.O2}`),
    { type: 'rest', subtype: 'read', action: 'R', outcome: '0', patient: pref(ID.P2), btg: true, purpose: 'ETREAT' });
  step('patient reads own record', acct.patient1.id, () => p.patient1.call('GET', `/fhir/Patient/${ID.P1}`),
    { type: 'rest', subtype: 'read', action: 'R', outcome: '0', role: 'patient', patient: P1, purpose: 'PATRQT' });
  step('backend read', backend.id, () => p.backend.call('GET', `/fhir/Observation/${ID.O1}`),
    { type: 'rest', subtype: 'read', action: 'R', outcome: '0', patient: P1, client: true });
  step('login', acct.patient1.id, async () => {
    const r = await server.req('POST', '/auth/login', { token: '', headers: J, body: { username: acct.patient1.username, password: PASSWORD } });
    const sc = [].concat(r.headers['set-cookie'] ?? []).find((c) => c.startsWith('__Host-'));
    loginSession = principal(server, 'patient1-2', { cookie: sc?.split(';')[0], csrf: r.json?.csrf_token });
    return r;
  }, { type: '110114', subtype: 'login', action: 'E', outcome: '0', role: 'patient', typeSystem: DCM });
  step('login failed', acct.patient2.id, () => server.req('POST', '/auth/login', { token: '', headers: J,
    body: { username: acct.patient2.username, password: 'not the password at all 42' } }),
  { status: 401, type: '110114', subtype: 'login-failed', action: 'E', outcome: '4', role: 'patient' });
  step('MFA failure', dr, () => {
    const step30 = Math.floor(Date.now() / 30000);
    const good = new Set([-1, 0, 1].map((d) => totp(acct.doctor.seed, (step30 + d) * 30 + 1)));
    let wrong = '000000';
    while (good.has(wrong)) wrong = String(Number(wrong) + 1).padStart(6, '0');
    return server.req('POST', '/auth/login', { token: '', headers: J, body: { username: acct.doctor.username, password: PASSWORD, code: wrong } });
  }, { status: 401, type: '110114', subtype: 'mfa-failed', action: 'E', outcome: '4', role: 'doctor' });
  step('logout', acct.patient1.id, () => loginSession.call('POST', '/auth/logout'),
    { status: [200, 204], type: '110114', subtype: 'logout', action: 'E', outcome: '0' });
  step('token (client_credentials)', backend.id, async () => (await backendTokenRes(server, backend)).res,
    { type: '110114', subtype: 'token-issued', action: 'E', outcome: '0', clientAgent: true });
  // the code flow's three requests: the sign-in on the authorization page (its session commits with
  // its record), the consent (the code commits with its record), the token
  let flow;
  let flowStart;
  step('sign-in on the authorization page', acct.patient1.id, async () => {
    flowStart = Date.now();
    flow = await smartCodeFlow(server, app.id, acct.patient1, APP_SCOPE);
    appTok = flow.tok;
    return flow.signIn;
  }, { type: '110114', subtype: 'login', action: 'E', outcome: '0', role: 'patient' });
  step('app authorized (the code)', acct.patient1.id, async () => flow.consent,
    { status: 302, subtype: 'app-authorized', action: 'E', outcome: '0', sinceOf: () => flowStart });
  step('token (SMART code flow)', app.id, async () => flow.res,
    { type: '110114', subtype: 'token-issued', action: 'E', outcome: '0', clientAgent: true, sinceOf: () => flowStart });
  step('token refresh', app.id, async () => {
    assert.ok(appTok?.refresh_token, 'the SMART flow gave a refresh token');
    const r = await server.req('POST', '/auth/token', { token: '', headers: FORM, body: new URLSearchParams({
      grant_type: 'refresh_token', refresh_token: appTok.refresh_token, client_id: app.id }).toString() });
    if (r.json?.access_token) appTok = r.json;
    return r;
  }, { type: '110114', subtype: 'token-refreshed', action: 'E', outcome: '0', clientAgent: true });
  step('token revoke', app.id, () => server.req('POST', '/auth/revoke', { token: '', headers: FORM,
    body: new URLSearchParams({ token: appTok.access_token, client_id: app.id }).toString() }),
  { type: '110114', subtype: 'token-revoked', action: 'E', outcome: '0', clientAgent: true });
  // a refresh token's revocation revokes its grant, which commits with the record
  step('token revoke (refresh token)', app.id, () => server.req('POST', '/auth/revoke', { token: '', headers: FORM,
    body: new URLSearchParams({ token: appTok.refresh_token, client_id: app.id }).toString() }),
  { type: '110114', subtype: 'token-revoked', action: 'E', outcome: '0', clientAgent: true });
  step('refresh after its revocation', app.id, () => server.req('POST', '/auth/token', { token: '', headers: FORM,
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: appTok.refresh_token, client_id: app.id }).toString() }),
  { status: 400, type: '110114', subtype: 'token-refreshed', action: 'E', outcome: '4', clientAgent: true });
  // logout everywhere: the account's new epoch commits with its record (patient2 signs in again after)
  step('logout everywhere', acct.patient2.id, async () => {
    const r = await p.patient2.call('POST', '/auth/logout-all');
    Object.assign(p.patient2, await login(server, acct.patient2));
    return r;
  }, { status: [200, 204], type: '110114', subtype: 'logout-all', action: 'E', outcome: '0' });
  step('admin user create', 'bootstrap-admin', async () => {
    const r = await server.req('POST', '/admin/users', { headers: J, body: { username: `au.made.${TAG}`, role: 'billing', password: PASSWORD } });
    newUser = r.json?.id;
    return r;
  }, { status: 201, type: '110137', subtype: 'user-created', action: 'C', outcome: '0', targetOf: () => newUser });
  step('admin user disable', 'bootstrap-admin', () => server.req('POST', `/admin/users/${newUser}/disable`, { headers: J, body: {} }),
    { status: 200, type: '110137', subtype: 'user-disable', action: 'U', outcome: '0', targetOf: () => newUser });
  let newClient;
  step('admin client create', 'bootstrap-admin', async () => {
    const r = await server.req('POST', '/admin/clients', { headers: J,
      body: { name: `audit made ${TAG}`, type: 'public', redirect_uris: [CB_URI], scope: 'launch/patient openid patient/*.rs' } });
    newClient = r.json?.client_id ?? r.json?.id;
    return r;
  }, { status: 201, type: '110137', subtype: 'client-created', action: 'C', outcome: '0', targetOf: () => newClient });
  // administration writes commit with their records (one each: the walk counts them); a refused one
  // leaves the record of its refusal only
  step('admin client disable', 'bootstrap-admin', () => server.req('POST', `/admin/clients/${newClient}/disable`, { headers: J, body: {} }),
    { status: 200, type: '110137', subtype: 'client-disable', action: 'U', outcome: '0', targetOf: () => newClient });
  step('admin user create, name taken', 'bootstrap-admin', () => server.req('POST', '/admin/users', { headers: J,
    body: { username: `au.made.${TAG}`, role: 'billing', password: PASSWORD } }),
  { status: 409, type: '110137', subtype: 'user-created', action: 'C', outcome: '4' });
  step('AuditEvent search', acct.auditor.id, () => p.auditor.call('GET', `/fhir/AuditEvent?agent=${dr}&_count=1`),
    { type: 'rest', subtype: 'search-type', action: 'E', outcome: '0', role: 'auditor', purpose: 'HOPERAT' });
  // a refusal names what was asked for (the resource and its patients): patient=...&denied=true finds it
  step('refused: another patient\'s id (404)', acct.patient1.id, () => p.patient1.call('GET', `/fhir/Patient/${ID.P2}`),
    { status: 404, type: 'rest', subtype: 'read', action: 'R', outcome: '4', role: 'patient', denied: true, patient: pref(ID.P2), entity: pref(ID.P2) });
  step('refused: role without the interaction (403)', acct.auditor.id, () => p.auditor.call('GET', `/fhir/Patient/${ID.P1}`),
    { status: 403, type: 'rest', subtype: 'read', action: 'R', outcome: '4', role: 'auditor', denied: true, patient: P1, entity: P1 });
  step('refused: another patient\'s Observation (404)', acct.patient2.id, () => p.patient2.call('GET', `/fhir/Observation/${ID.O1}`),
    { status: 404, type: 'rest', subtype: 'read', action: 'R', outcome: '4', role: 'patient', denied: true, patient: P1, entity: `Observation/${ID.O1}` });
  step('refused: an update of another patient\'s Observation (404)', acct.patient2.id, () => p.patient2.call('PUT', `/fhir/Observation/${ID.O1}`,
    { body: obs(ID.O1, P1) }),
  { status: 404, type: 'rest', subtype: 'update', action: 'U', outcome: '4', role: 'patient', denied: true, patient: P1, entity: `Observation/${ID.O1}` });
  step('refused: no credential (401)', 'anonymous', () => server.req('GET', `/fhir/Patient/${ID.P1}`, { token: '' }),
    { status: 401, type: 'rest', subtype: 'read', action: 'R', outcome: '4', denied: true, patient: P1, entity: P1 });

  const problems = [];
  const slow = [];
  for (const s of steps) {
    let res;
    const t1 = Date.now();
    try {
      res = await s.run();
      slow.push([s.name, Date.now() - t1]);
    } catch (e) {
      problems.push(`${s.name}: the request failed: ${e.message.split('\n')[0]}`);
      continue;
    }
    const statuses = [].concat(s.want.status ?? 200);
    if (!statuses.includes(res.status)) {
      problems.push(`${s.name}: status ${res.status}, expected ${statuses.join('/')} ${diag(res)}`);
      if (!res.headers?.['x-request-id']) continue;
    }
    const hits = await recordsOf(res, s.agent, (s.want.sinceOf?.() ?? t1) - 1500);
    const rec = hits.map((ae) => ({ ae, f: facts(ae) })).find((h) => h.f.subtype === s.want.subtype) ?? (hits[0] && { ae: hits[0], f: facts(hits[0]) });
    if (!rec) { problems.push(`${s.name}: no record with X-Request-Id ${rid(res)} for agent ${s.agent}`); continue; }
    if (s.name !== 'batch' && hits.length !== 1) problems.push(`${s.name}: ${hits.length} records carry its X-Request-Id, expected 1`);
    walked.set(s.name, { rid: rid(res), f: rec.f, ae: rec.ae, status: res.status });
    const f = rec.f;
    const w = s.want;
    const bad = (what, got, want) => problems.push(`${s.name}: ${what} is ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
    for (const k of ['type', 'subtype', 'action', 'outcome', 'role', 'purpose', 'typeSystem']) {
      if (w[k] !== undefined && f[k] !== w[k]) bad(k, f[k], w[k]);
    }
    if (f.agent !== s.agent) bad('agent', f.agent, s.agent);
    if (w.patient && !f.patients.includes(w.patient)) bad('patients', f.patients, `to include ${w.patient}`);
    if (w.entity && !f.entities.some((e) => e === w.entity || e.startsWith(`${w.entity}/_history/`))) bad('entities', f.entities, `to include ${w.entity}`);
    if (w.entityOf && !f.entities.includes(w.entityOf())) bad('entities', f.entities, `to include ${w.entityOf()}`);
    if (w.targetOf && f.target !== w.targetOf()) bad('target', f.target, w.targetOf());
    if (w.btg !== undefined && f.btg !== w.btg) bad('break-glass label', f.btg, w.btg);
    if (w.clientAgent && !/\/client$/.test(f.agentSystem ?? '')) bad('agent identifier system', f.agentSystem, '.../client');
    if (w.client && !/\/client$/.test(f.agentSystem ?? '')) bad('agent identifier system', f.agentSystem, '.../client');
    if (s.agent === dr && w.type === 'rest' && f.link !== `Practitioner/${ID.DR}`) bad('agent who.reference', f.link, `Practitioner/${ID.DR}`);
    if (!f.recorded || Number.isNaN(Date.parse(f.recorded))) bad('recorded', f.recorded, 'an instant');
  }
  t.diagnostic(`slowest steps: ${slow.sort((a, b) => b[1] - a[1]).slice(0, 4).map(([n, ms]) => `${n} ${ms} ms`).join(', ')}`);
  // the refusals carry the denied flag: denied=true finds them, and none of the allowed accesses
  const denied = await searchTrail(W.p.auditor, `denied=true&date=ge${new Date(since).toISOString()}&_count=1000`);
  const deniedIds = new Set(denied.records.map((ae) => facts(ae).requestId));
  for (const s of steps) {
    const w = walked.get(s.name);
    if (!w) continue;
    if (s.want.denied && !deniedIds.has(w.rid)) problems.push(`${s.name}: denied=true does not find its record`);
    if (!s.want.denied && deniedIds.has(w.rid)) problems.push(`${s.name}: an allowed access is found by denied=true`);
  }
  // a search's query names what was searched, the type with the parameters (BALP's query entity)
  const sq = walked.get('search')?.ae.entity?.find((e) => e.query !== undefined)?.query;
  if (!sq || Buffer.from(sq, 'base64').toString('utf8') !== `Observation?subject=${encodeURIComponent(P1)}`) {
    problems.push(`search: the query entity is ${sq && Buffer.from(sq, 'base64').toString('utf8')}, expected Observation?subject=...`);
  }
  const pq = walked.get('search by POST')?.ae.entity?.find((e) => e.query !== undefined)?.query;
  if (!pq || Buffer.from(pq, 'base64').toString('utf8') !== `Observation/_search?subject=${encodeURIComponent(P1)}`) {
    problems.push(`search by POST: the query entity is ${pq && Buffer.from(pq, 'base64').toString('utf8')}, expected Observation/_search?subject=...`);
  }
  // an auditor asking who was refused a patient's record finds them
  const refusedP1 = await searchTrail(W.p.auditor, `patient=${P1}&denied=true&date=ge${new Date(since).toISOString()}&_count=1000`);
  const refusedIds = new Set(refusedP1.records.map((ae) => facts(ae).requestId));
  for (const name of ['refused: role without the interaction (403)', 'refused: another patient\'s Observation (404)', 'refused: no credential (401)']) {
    if (walked.get(name) && !refusedIds.has(walked.get(name).rid)) problems.push(`${name}: patient=...&denied=true does not find its record`);
  }
  if (walked.get('refused: another patient\'s id (404)') && refusedIds.has(walked.get('refused: another patient\'s id (404)').rid)) {
    problems.push('a refusal about another patient is found under this one');
  }
  assert.deepEqual(problems, [], `${problems.length} problems:\n${problems.join('\n')}`);
});

// ---------------------------------------------------------------- 2. writes and their records

test('a write\'s record commits with it: create, failed create, transaction, batch', async () => {
  const { p, acct } = W;
  const doc = p.doctor;
  const P1 = pref(ID.P1);
  const since = Date.now() - 2000;
  const mine = (extra = {}) => obs(null, P1, { performer: [{ reference: `Practitioner/${ID.DR}` }], ...extra });
  // a create: its record is there as soon as the 201 is, names the new resource and its Patient
  const c = await doc.call('POST', '/fhir/Observation', { body: mine() });
  assert.equal(c.status, 201, `create: ${diag(c)}`);
  const byEntity = await searchTrail(p.auditor, `entity=Observation/${c.json.id}`);
  assert.equal(byEntity.records.length, 1, `one record names the new Observation (${byEntity.records.length})`);
  const cf = facts(byEntity.records[0]);
  assert.equal(cf.requestId, rid(c), 'it is the create\'s record');
  assert.equal(cf.subtype, 'create');
  assert.deepEqual(cf.patients, [P1], 'it names the new resource\'s Patient');
  assert.ok(cf.entities.includes(`Observation/${c.json.id}/_history/1`), `it names the version created: ${cf.entities}`);
  // a create that fails leaves a record of the failure and names no new resource
  const bad = await doc.call('POST', '/fhir/Observation', { body: { resourceType: 'Observation', subject: { reference: P1 } } });
  assert.ok(bad.status >= 400 && bad.status < 500, `an invalid Observation is refused: ${bad.status}`);
  const badRec = await findRecord(p.auditor, rid(bad), { agent: acct.doctor.id, since });
  assert.equal(badRec.length, 1, 'the refused create has one record');
  assert.equal(facts(badRec[0]).outcome, '4');
  assert.deepEqual(facts(badRec[0]).entities, [], 'it names no resource');
  // a transaction: one record naming every entry
  const post = (r) => ({ fullUrl: `urn:uuid:${crypto.randomUUID()}`, resource: r, request: { method: 'POST', url: r.resourceType } });
  const tx = await doc.call('POST', '/fhir', { body: { resourceType: 'Bundle', type: 'transaction',
    entry: [post(mine()), post(mine({ valueInteger: 7 })), post(mine({ valueInteger: 8 }))] } });
  assert.equal(tx.status, 200, `transaction: ${diag(tx)}`);
  const txIds = tx.json.entry.map((e) => /Observation\/([^/]+)\/_history\/1/.exec(e.response.location)?.[1]);
  const txRecs = await findRecord(p.auditor, rid(tx), { agent: acct.doctor.id, since });
  assert.equal(txRecs.length, 1, `a transaction has one record (${txRecs.map((r) => facts(r).subtype)})`);
  const tf = facts(txRecs[0]);
  assert.equal(tf.subtype, 'transaction');
  for (const id of txIds) assert.ok(tf.entities.some((e) => e.startsWith(`Observation/${id}`)), `the transaction's record names entry ${id}`);
  assert.ok(tf.patients.includes(P1));
  for (const id of txIds) {
    const r = await searchTrail(p.auditor, `entity=Observation/${id}`);
    assert.deepEqual(r.records.map((x) => facts(x).requestId), [rid(tx)], `Observation ${id}: found through the transaction's record`);
  }
  // a failed transaction: no entry was written, its record says so
  const txBad = await doc.call('POST', '/fhir', { body: { resourceType: 'Bundle', type: 'transaction',
    entry: [post(mine()), post({ resourceType: 'Observation', subject: { reference: P1 } })] } });
  assert.ok(txBad.status >= 400, `an invalid transaction fails: ${txBad.status}`);
  const txBadRecs = await findRecord(p.auditor, rid(txBad), { agent: acct.doctor.id, since });
  assert.equal(txBadRecs.length, 1, 'the failed transaction has one record');
  assert.equal(facts(txBadRecs[0]).outcome, '4');
  assert.ok(!facts(txBadRecs[0]).entities.some((e) => /_history\/1$/.test(e)), 'it names no created version');
  // a batch: each written entry has its own record, and the batch one
  const batch = await doc.call('POST', '/fhir', { body: { resourceType: 'Bundle', type: 'batch',
    entry: [post(mine()), post(obs(null, pref(ID.P2))), post(mine({ valueInteger: 9 }))] } });
  assert.equal(batch.status, 200, `batch: ${diag(batch)}`);
  const st = batch.json.entry.map((e) => e.response?.status ?? '');
  assert.match(st[0], /^201/);
  assert.match(st[1], /^40[34]/, 'an entry for a patient the doctor does not treat is refused');
  assert.match(st[2], /^201/);
  const bIds = [0, 2].map((i) => /Observation\/([^/]+)\/_history\/1/.exec(batch.json.entry[i].response.location)[1]);
  const bRecs = (await findRecord(p.auditor, rid(batch), { agent: acct.doctor.id, since })).map(facts);
  assert.equal(bRecs.filter((f) => f.subtype === 'batch').length, 1, `one record of the batch (${bRecs.map((f) => f.subtype)})`);
  for (const id of bIds) {
    const own = bRecs.filter((f) => f.subtype === 'create' && f.entities.some((e) => e.startsWith(`Observation/${id}/`)));
    assert.equal(own.length, 1, `batch entry ${id} has its own create record`);
    assert.deepEqual(own[0].patients, [P1], `batch entry ${id}'s record names its Patient`);
    assert.equal(own[0].entities.length, 1, `batch entry ${id}'s record names that entry only`);
  }
});

// ---------------------------------------------------------------- 3. the auditor's search

test('AuditEvent search and read for the auditor; nobody writes the trail', async () => {
  const { p, acct, server } = W;
  const aud = p.auditor;
  assert.ok(walked.size > 0, 'the walk ran');
  const w = (n) => { const x = walked.get(n); assert.ok(x, `walk step ${n}`); return x; };
  const since = new Date(Date.now() - 10 * 60_000).toISOString();
  const find = async (q) => (await searchTrail(aud, q)).records.map(facts);
  const has = (list, step) => list.some((f) => f.requestId === w(step).rid);
  // patient
  for (const v of [ID.P1, pref(ID.P1)]) {
    const l = await find(`patient=${encodeURIComponent(v)}&_count=1000`);
    assert.ok(has(l, 'read'), `patient=${v === ID.P1 ? 'id' : 'Patient/id'} finds the doctor's read`);
    assert.ok(l.every((f) => f.patients.includes(pref(ID.P1))), 'every record found names the patient');
  }
  assert.ok(!has(await find(`patient=${ID.P2}&_count=1000`), 'read'), 'patient=P2 does not find a read of P1');
  // entity
  assert.ok(has(await find(`entity=Observation/${ID.O1}&_count=1000`), 'vread'), 'entity= finds the vread');
  // agent
  const byAgent = await find(`agent=${acct.doctor.id}&_count=1000`);
  assert.ok(has(byAgent, 'read') && byAgent.every((f) => f.agent === acct.doctor.id), 'agent= finds the doctor\'s records only');
  // date range
  const rec = w('read').f;
  const t = Date.parse(rec.recorded);
  const at = new Date(t).toISOString();
  const inRange = await find(`date=ge${at}&date=le${at}&_count=1000`);
  assert.ok(has(inRange, 'read'), 'date=ge&le around the record finds it');
  assert.ok(inRange.every((f) => Math.abs(Date.parse(f.recorded) - t) <= 1), 'every record found lies in the range');
  const before = await find(`date=le${new Date(t - 1).toISOString()}&agent=${acct.doctor.id}&_count=1000`);
  assert.ok(!has(before, 'read') && before.every((f) => Date.parse(f.recorded) <= t - 1), 'date=le before it does not');
  const afterIt = await find(`date=gt${at}&agent=${acct.doctor.id}&_count=1000`);
  assert.ok(!has(afterIt, 'read') && afterIt.every((f) => Date.parse(f.recorded) >= t), 'date=gt after it does not');
  const empty = await aud.call('GET', `/fhir/AuditEvent?date=ge${new Date(t + 60_000).toISOString()}&date=le${at}`);
  assert.equal(empty.status, 400, 'an empty date range is refused');
  // action, outcome
  const creates = await find(`action=C&date=ge${since}&_count=1000`);
  assert.ok(has(creates, 'create') && creates.every((f) => f.action === 'C'), 'action=C');
  const failed = await find(`outcome=4&date=ge${since}&_count=1000`);
  assert.ok(has(failed, 'refused: no credential (401)') && failed.every((f) => f.outcome === '4'), 'outcome=4');
  assert.ok(!has(failed, 'read'), 'outcome=4 leaves out a successful read');
  // type and subtype
  for (const q of ['type=110114', `type=${encodeURIComponent(`${DCM}|110114`)}`]) {
    const logins = await find(`${q}&date=ge${since}&_count=1000`);
    assert.ok(has(logins, 'login') && has(logins, 'login failed') && logins.every((f) => f.type === '110114'), q);
  }
  const lf = await find(`subtype=login-failed&date=ge${since}&_count=1000`);
  assert.ok(has(lf, 'login failed') && lf.every((f) => f.subtype === 'login-failed'), 'subtype=login-failed');
  const vr = await find(`subtype=${encodeURIComponent('http://hl7.org/fhir/restful-interaction|vread')}&date=ge${since}`);
  assert.ok(has(vr, 'vread') && vr.every((f) => f.subtype === 'vread'), 'subtype=system|vread');
  // repeated paging parameters are refused; an upper bound at the epoch matches nothing (0 is not "no bound")
  assert.equal((await aud.call('GET', '/fhir/AuditEvent?_count=1&_count=2')).status, 400, 'a repeated _count');
  assert.equal((await aud.call('GET', '/fhir/AuditEvent?_cursor=5&_cursor=6')).status, 400, 'a repeated _cursor');
  assert.equal((await find('date=lt1970-01-01T00:00:00.000001Z')).length, 0, 'date=lt just after the epoch');
  // a system other than the code's matches nothing
  for (const q of [`type=${encodeURIComponent('http://example.org/wrong|110114')}`, `type=${encodeURIComponent(`${DCM}|rest`)}`,
    `subtype=${encodeURIComponent('http://hl7.org/fhir/restful-interaction|login-failed')}`]) {
    assert.equal((await find(`${q}&date=ge${since}&_count=1000`)).length, 0, `${q} matches nothing`);
  }
  // break-glass: the declaration and the access that relied on it
  const problems = [];
  const bg = await find(`break-glass=true&date=ge${since}&_count=1000`);
  if (!has(bg, '$break-glass')) problems.push('break-glass=true does not find the declaration');
  if (!has(bg, 'read under break-glass')) problems.push('break-glass=true does not find the read that relied on break-glass');
  if (has(bg, 'read')) problems.push('break-glass=true finds an ordinary read');
  if (!bg.every((f) => f.btg)) problems.push('a record found by break-glass=true lacks the BTG label');
  const alerts = await find(`alert=true&date=ge${since}&_count=1000`);
  if (!has(alerts, '$break-glass')) problems.push('alert=true does not find the break-glass declaration');
  // paging: _count=2 then the next link, against _count=4
  const four = await aud.call('GET', `/fhir/AuditEvent?agent=${acct.doctor.id}&_count=4`);
  assert.equal(four.status, 200);
  const p1 = await aud.call('GET', `/fhir/AuditEvent?agent=${acct.doctor.id}&_count=2`);
  assert.equal(p1.json.entry.length, 2, 'the first page holds 2');
  const next = p1.json.link?.find((l) => l.relation === 'next')?.url;
  assert.ok(next, 'a next link');
  assert.equal(new URL(next).origin, server.origin, 'the next link points at this server');
  const p2 = await aud.call('GET', new URL(next).pathname + new URL(next).search);
  assert.equal(p2.status, 200, `the next page: ${diag(p2)}`);
  assert.equal(p2.json.entry.length, 2, 'the second page holds 2');
  assert.deepEqual([...p1.json.entry, ...p2.json.entry].map((e) => e.resource.id), four.json.entry.map((e) => e.resource.id),
    'two pages of 2 are the first 4, in order, without overlap');
  const times = four.json.entry.map((e) => Date.parse(e.resource.recorded));
  assert.ok(times.every((x, i) => i === 0 || times[i - 1] >= x), 'newest first');
  // bad parameters: 400 OperationOutcome, the value not echoed
  for (const q of ['frobnicate=1', 'outcome=3', 'action=X', 'date=yesterday', 'agent=a%20b', '_count=0', 'break-glass=yes']) {
    const r = await aud.call('GET', `/fhir/AuditEvent?${q}`);
    assert.equal(r.status, 400, `${q}: ${r.status}`);
    assert.equal(r.json?.resourceType, 'OperationOutcome', `${q}: an OperationOutcome`);
    assert.ok(!/frobnicate=1|yesterday/.test(r.body.replace(/'frobnicate'/, '')), `${q}: the value is not echoed`);
  }
  // read by id, vread 1; no other version, no such id
  const one = w('read');
  const r = await aud.call('GET', `/fhir/AuditEvent/${one.f.id}`);
  assert.equal(r.status, 200, `read by id: ${diag(r)}`);
  assert.deepEqual(r.json, one.ae, 'the read answers the record the search found');
  assert.match(String(r.headers['cache-control'] ?? ''), /no-store/);
  assert.equal((await aud.call('GET', `/fhir/AuditEvent/${one.f.id}/_history/1`)).status, 200, 'vread 1');
  assert.equal((await aud.call('GET', `/fhir/AuditEvent/${one.f.id}/_history/2`)).status, 404, 'vread 2');
  assert.equal((await aud.call('GET', `/fhir/AuditEvent/${crypto.randomUUID()}`)).status, 404, 'an unknown id');
  // nobody changes the trail: 405 for every write, whoever asks (the method is refused, not the caller)
  const ae = { ...one.ae, outcome: '0', action: 'C' };
  const writes = [['POST', '/fhir/AuditEvent', ae], ['PUT', `/fhir/AuditEvent/${one.f.id}`, ae], ['DELETE', `/fhir/AuditEvent/${one.f.id}`],
    ['PUT', `/fhir/AuditEvent?agent=${acct.doctor.id}`, ae], ['DELETE', `/fhir/AuditEvent?agent=${acct.doctor.id}`]];
  for (const [m, u, body] of writes) {
    const rb = await server.req(m, u, body ? { body } : {});
    if (rb.status !== 405) problems.push(`bootstrap ${m} ${u.replace(/\?.*/, '?...')}: ${rb.status}, expected 405`);
    for (const who of ['auditor', 'doctor', 'patient1', 'backend']) {
      const ro = await p[who].call(m, u, body ? { body } : {});
      if (ro.status !== 405) problems.push(`${who} ${m} ${u.replace(/\?.*/, '?...')}: ${ro.status}, expected 405`);
    }
  }
  const again = await aud.call('GET', `/fhir/AuditEvent/${one.f.id}`);
  assert.deepEqual(again.json, one.ae, 'the record is unchanged');
  // a backend client reaches the trail only with a scope that names AuditEvent: system/*.cruds does not
  for (const u of [`/fhir/AuditEvent?patient=${ID.P1}`, `/fhir/AuditEvent/${one.f.id}`, `/fhir/Patient/${ID.P1}/$access-report`]) {
    const wild = await p.backend.call('GET', u);
    if (wild.status !== 403) problems.push(`a system/*.cruds backend GET ${u.replace(/\?.*/, '?...')}: ${wild.status}, expected 403`);
  }
  const named = await addBackend(server, W.boot.call, `audit reader ${TAG}`, 'system/AuditEvent.rs');
  const reader = principal(server, 'reader', { token: (await backendTokenRes(server, named)).token });
  const rs = await reader.call('GET', `/fhir/AuditEvent?patient=${ID.P1}&_count=1`);
  if (rs.status !== 200) problems.push(`a system/AuditEvent.rs backend searching the trail: ${rs.status}, expected 200`);
  // a patient and a doctor may not search the trail
  for (const who of ['patient1', 'doctor']) {
    const s = await p[who].call('GET', `/fhir/AuditEvent?patient=${ID.P1}`);
    if (s.status !== 403) problems.push(`${who} searching AuditEvent: ${s.status}, expected 403`);
    const rd = await p[who].call('GET', `/fhir/AuditEvent/${one.f.id}`);
    if (rd.status !== 403) problems.push(`${who} reading an AuditEvent: ${rd.status}, expected 403`);
  }
  assert.deepEqual(problems, [], problems.join('\n'));
});

// ---------------------------------------------------------------- 4. the patient's access report

test('Patient/$access-report: who read the record, when, how and why; disclosures marked; only for the patient and auditors', async () => {
  const { p, acct, server, app } = W;
  const w = (n) => { const x = walked.get(n); assert.ok(x, `walk step ${n}`); return x; };
  // a record naming two patients: the backend reads an Observation of P1 performed by P2, and a search over both
  const shared = await p.backend.call('GET', `/fhir/Observation/${ID.OSH}`);
  assert.equal(shared.status, 200);
  const both = await server.req('GET', `/fhir/Patient?_id=${ID.P1},${ID.P2}`);
  assert.equal(both.status, 200);
  const sharedRec = (await findRecord(p.auditor, rid(shared), { agent: W.backend.id, since: Date.now() - 60_000 }))[0];
  assert.ok(sharedRec && facts(sharedRec).patients.includes(pref(ID.P2)), 'the shared read names both patients in the trail');
  const url = `/fhir/Patient/${ID.P1}/$access-report?_count=1000`;
  const rep = await p.patient1.call('GET', url);
  assert.equal(rep.status, 200, `the patient's report: ${diag(rep)}`);
  assert.equal(rep.json?.resourceType, 'Bundle');
  const entries = rep.json.entry.map((e) => e.resource);
  const byId = new Map(entries.map((e) => [e.id, e]));
  // a search over several patients shows each resource type once, not how many of each came back
  const repeated = entries.filter((e) => {
    const types = (e.entity ?? []).map((x) => x.what?.type).filter(Boolean);
    return new Set(types).size !== types.length;
  });
  assert.equal(repeated.length, 0, `records listing a type more than once: ${JSON.stringify(repeated.slice(0, 1).map((e) => e.entity))}`);
  // every agent is named somehow (a who without display or reference is empty, invalid FHIR)
  const unnamed = entries.filter((e) => (e.agent ?? []).some((a) => !a.who?.display));
  assert.equal(unnamed.length, 0, `agents without a display: ${JSON.stringify(unnamed.slice(0, 2).map((e) => e.agent))}`);
  // the doctor's read
  const read = byId.get(w('read').f.id);
  assert.ok(read, 'the doctor\'s read is listed');
  assert.equal(read.agent?.[0]?.role?.[0]?.text, 'doctor', 'with the role');
  assert.equal(read.agent?.[0]?.who?.display, DR_NAME, 'with the practitioner\'s name');
  assert.equal(read.subtype?.[0]?.code, 'read', 'the kind of access');
  assert.ok(!Number.isNaN(Date.parse(read.recorded)), 'when');
  assert.equal(read.purposeOfEvent?.[0]?.coding?.[0]?.code, 'TREAT', 'why');
  assert.ok(!(read.extension ?? []).some((x) => x.url === DISCLOSURE_URL), 'a staff read is no disclosure');
  assert.ok((read.meta?.tag ?? []).some((x) => x.code === 'SUBSETTED'), 'marked SUBSETTED');
  assert.ok(!JSON.stringify(read).includes('network'), 'no network address');
  // the backend client's read: a disclosure
  const disc = byId.get(w('backend read').f.id);
  assert.ok(disc, 'the backend client\'s read is listed');
  assert.ok((disc.extension ?? []).some((x) => x.url === DISCLOSURE_URL && x.valueBoolean === true), 'marked as a disclosure');
  // the other patient never shows
  assert.ok(byId.has(sharedRec.id), 'the read naming both patients is listed');
  assert.ok(!rep.body.includes(ID.P2), 'the other patient\'s id appears nowhere in the report');
  // only what took place: a refused access is not listed
  assert.ok(entries.every((e) => e.outcome === '0'), 'only accesses that took place');
  // filters of the report
  const reads = await p.patient1.call('GET', `/fhir/Patient/${ID.P1}/$access-report?subtype=read&_count=1000`);
  assert.equal(reads.status, 200);
  assert.ok(reads.json.entry.every((e) => e.resource.subtype?.[0]?.code === 'read'));
  assert.equal((await p.patient1.call('GET', `/fhir/Patient/${ID.P1}/$access-report?agent=${acct.doctor.id}`)).status, 400, 'no agent= in the report');
  assert.equal((await p.patient1.call('GET', `/fhir/Patient/${ID.P1}/$access-report?patient=${ID.P2}`)).status, 400, 'no patient= in the report');
  const foo = await p.patient1.call('GET', `/fhir/Patient/${ID.P1}/$access-report?foo=1`);
  assert.equal(foo.status, 400, 'an unknown parameter');
  assert.match(foo.body, /\$access-report takes date, action, type, subtype, _count and _cursor \(not 'foo'\)/);
  // through a SMART patient app
  const f = await smartCodeFlow(server, app.id, acct.patient1, 'launch/patient openid fhirUser patient/*.rs');
  const viaApp = await server.req('GET', url, { token: f.tok.access_token });
  assert.equal(viaApp.status, 200, `the report through the patient's app: ${diag(viaApp)}`);
  assert.ok(viaApp.json.entry.some((e) => e.resource.id === w('read').f.id), 'the app sees the doctor\'s read');
  // agent= finds what an app did for a person, as well as the person
  const since = new Date(Date.now() - 120_000).toISOString();
  const byApp = (await searchTrail(p.auditor, `agent=${app.id}&date=ge${since}&_count=1000`)).records.map(facts);
  assert.ok(byApp.some((f) => f.requestId === rid(viaApp) && f.agent === acct.patient1.id && f.client === app.id),
    'agent=<the app> finds the report it read for the patient');
  const byPerson = (await searchTrail(p.auditor, `agent=${acct.patient1.id}&date=ge${since}&_count=1000`)).records.map(facts);
  assert.ok(byPerson.some((f) => f.requestId === rid(viaApp)), 'agent=<the patient> finds it too');
  // who else may ask
  assert.equal((await p.patient2.call('GET', url)).status, 403, 'another patient');
  assert.equal((await p.doctor.call('GET', url)).status, 403, 'the doctor');
  const byAuditor = await p.auditor.call('GET', url);
  assert.equal(byAuditor.status, 200, 'an auditor');
  assert.ok(byAuditor.json.entry.some((e) => e.resource.id === w('read').f.id));
  // a search over two patients, one reached through break-glass (the walk declared it on P2 for the
  // second doctor), the other through a care team: only P2 is told of an emergency
  const ct2 = { resourceType: 'CareTeam', id: `${ID.CT}-2`, status: 'active', subject: { reference: pref(ID.P1) },
    participant: [{ member: { reference: `Practitioner/${ID.DR2}` } }] };
  assert.equal((await server.req('PUT', `/fhir/CareTeam/${ct2.id}`, { body: ct2 })).status, 201);
  const two = await p.doctor_bg.call('GET', `/fhir/Observation?_id=${ID.O1},${ID.O2}`);
  assert.equal(two.status, 200, `the search over both: ${diag(two)}`);
  assert.equal(two.json.entry?.length, 2, 'both Observations');
  const [rec] = await findRecord(p.auditor, rid(two), { agent: acct.doctor_bg.id, since: Date.now() - 60_000 });
  assert.ok(rec, 'the search has its record');
  const label = (ref) => (rec.entity ?? []).find((e) => e.what?.reference === ref)?.securityLabel?.some((l) => l.code === 'BTG') ?? false;
  assert.equal(label(pref(ID.P2)), true, 'the record marks P2, reached through break-glass, with BTG');
  assert.equal(label(pref(ID.P1)), false, 'and not P1, reached through the care team');
  const seen = async (who, pid) => (await p[who].call('GET', `/fhir/Patient/${pid}/$access-report?_count=1000`)).json.entry
    .map((e) => e.resource).find((e) => e.id === rec.id);
  const forP1 = await seen('patient1', ID.P1);
  const forP2 = await seen('patient2', ID.P2);
  assert.ok(forP1 && forP2, 'the search is in both reports');
  assert.equal(forP1.purposeOfEvent?.[0]?.coding?.[0]?.code, 'TREAT', 'P1 is told of treatment');
  assert.ok(!(forP1.meta?.security ?? []).some((x) => x.code === 'BTG'), 'P1 is not told of an emergency');
  assert.equal(forP2.purposeOfEvent?.[0]?.coding?.[0]?.code, 'ETREAT', 'P2 is told of an emergency');
  assert.ok((forP2.meta?.security ?? []).some((x) => x.code === 'BTG'), 'with the BTG label');
  const p2read = (await p.patient2.call('GET', `/fhir/Patient/${ID.P2}/$access-report?_count=1000`)).json.entry
    .map((e) => e.resource).find((e) => e.id === w('read under break-glass').f.id);
  assert.ok(p2read && (p2read.meta?.security ?? []).some((x) => x.code === 'BTG'), 'P2\'s own break-glass read carries BTG');
});

// ---------------------------------------------------------------- 5. tampering

test('carevault audit verify: whole trail passes; every kind of tampering is named at its record', async (t) => {
  const s = servers.tamper;
  assert.ok(s && s.exit !== null, 'the tamper server ran and stopped');
  const orig = storeHandle(s);
  const chain = orig.chain();
  const H = chain.length;
  const cps = orig.checkpoints();
  assert.ok(H >= 30, `a trail of ${H} records`);
  assert.equal(orig.head().pos, H, 'the head is the last record');
  assert.ok(cps.length >= 2 && cps.at(-1) === H, `checkpoints at ${cps.join(',')}`);
  t.diagnostic(`${H} records, checkpoints at ${cps.join(', ')}`);
  const cpFile = path.join(s.dataDir, 'audit-checkpoints.jsonl');
  assert.ok(fs.existsSync(cpFile), 'the checkpoint file');
  const ok = verify(s);
  assert.equal(ok.status, 0, `untouched: ${ok.out.slice(0, 400)}`);
  assert.ok(ok.whole);
  const okFile = verify(s, { checkpoints: cpFile });
  assert.equal(okFile.status, 0, `untouched, with the checkpoint file: ${okFile.out.slice(0, 400)}`);
  const lit = (v) => `'${String(v).replace(/'/g, "''")}'`;
  const row = (h, r) => `(${r.pos}, ${r.at_us}, ${lit(r.action)}, ${r.outcome}, ${r.flags}, ${lit(r.kind)}, ${lit(r.subtype)}, ${lit(r.agent)}, `
    + `${lit(r.id)}, ${r.nres}, ${h.blob(r.keys)}, ${h.blob(r.body)}, ${h.blob(r.prev)}, ${h.blob(r.hash)}, ${r.npat})`;
  const COLS = '(pos, at_us, action, outcome, flags, kind, subtype, agent, id, nres, keys, body, prev, hash, npat)';
  const k = Math.floor(H / 2);
  const cases = [
    ['a byte of a record\'s body edited', k, (h) => {
      const body = Buffer.from(chain[k - 1].body, 'hex');
      body[Math.floor(body.length / 2)] ^= 0x01;
      h.sql(`UPDATE cv_audit SET body = ${h.blob(body.toString('hex'))} WHERE pos = ${k};`);
    }],
    ['a record deleted', k, (h) => h.sql(`DELETE FROM cv_audit WHERE pos = ${k};`)],
    ['a forged record inserted', k + 1, (h) => h.sql(
      `UPDATE cv_audit SET pos = pos + 1000000 WHERE pos > ${k};\n`
      + `UPDATE cv_audit SET pos = pos - 999999 WHERE pos > 1000000;\n`
      + `INSERT INTO cv_audit ${COLS} SELECT ${k + 1}, at_us, action, outcome, flags, kind, subtype, agent, 'forged-${TAG}', nres, keys, body, hash, hash, npat FROM cv_audit WHERE pos = ${k};`)],
    ['a well-formed record appended without moving the head', H + 1, (h) => {
      const f = { ...chain[H - 1], pos: H + 1, id: `forged-${TAG}`, prev: chain[H - 1].hash };
      f.hash = chainHash(f);
      h.sql(`INSERT INTO cv_audit ${COLS} VALUES ${row(h, f)};`);
    }],
    ['two records swapped', k, (h) => h.sql(
      `UPDATE cv_audit SET pos = -1 WHERE pos = ${k};\nUPDATE cv_audit SET pos = ${k} WHERE pos = ${k + 3};\nUPDATE cv_audit SET pos = ${k + 3} WHERE pos = -1;`)],
    ['the tail cut off', k + 1, (h) => h.sql(`DELETE FROM cv_audit WHERE pos > ${k};`)],
  ];
  // the search-key table (what patient searches and access reports read): a record named by a key
  const kk = chain.find((r) => r.pos > 1 && r.keys && r.keys.length > 0).pos;
  cases.push(['a record\'s search-key rows deleted (hidden from its patient\'s access report)', kk,
    (h) => h.sql(`DELETE FROM cv_audit_key WHERE pos = ${kk};`), /search-key table/]);
  cases.push(['a search-key row added (a record tied to a patient it is not about)', kk,
    (h) => h.sql(`INSERT INTO cv_audit_key (k, pos) VALUES (${h.blob(`c0ffee${'00'.repeat(13)}`)}, ${kk});`), /does not name/]);
  // self-check of the JS chain hash: it reproduces the stored hashes
  for (const r of chain.slice(0, 3)) assert.equal(chainHash(r), r.hash, `the chain hash of record ${r.pos} is reproduced`);
  const rewriteFrom = H - 2;
  const lastGood = Math.max(0, ...cps.filter((c) => c < rewriteFrom));
  cases.push(['a body edited and the chain and head recomputed after it', lastGood + 1, (h) => {
    const rows = chain.map((r) => ({ ...r }));
    const b = Buffer.from(rows[rewriteFrom - 1].body, 'hex');
    b[3] ^= 0x20;
    rows[rewriteFrom - 1].body = b.toString('hex');
    let sql = '';
    for (let i = rewriteFrom - 1; i < H; i++) {
      rows[i].prev = i ? rows[i - 1].hash : '00'.repeat(32);
      rows[i].hash = chainHash(rows[i]);
      sql += `UPDATE cv_audit SET body = ${h.blob(rows[i].body)}, prev = ${h.blob(rows[i].prev)}, hash = ${h.blob(rows[i].hash)} WHERE pos = ${rows[i].pos};\n`;
    }
    sql += `UPDATE cv_audit_head SET hash = ${h.blob(rows[H - 1].hash)} WHERE one = 1;\n`;
    h.sql(sql);
  }, /checkpoint/]);
  const problems = [];
  for (const [what, want, edit, text] of cases) {
    const c = orig.copy('t');
    try {
      edit(c);
      const v = verify(s, { dataDir: c.dataDir, store: c.store });
      if (v.status !== 1) problems.push(`${what}: exit ${v.status}, expected 1 (${v.out.trim().slice(0, 200)})`);
      if (v.bad !== want) problems.push(`${what}: first bad record ${v.bad}, expected ${want} (${v.stdout.trim().slice(0, 300)})`);
      if (text && !text.test(v.stdout)) problems.push(`${what}: the output does not mention ${text}`);
    } finally {
      c.drop();
    }
  }
  // the tail, the head and the store's checkpoints cut together (after the first checkpoint, which
  // stays): the cut records' search keys, if left behind, give it away; cut too, only the exported
  // checkpoints tell
  const kc = cps[0] + 2;
  assert.ok(kc < H, `a cut after the first checkpoint (${cps[0]}) and before the end (${H})`);
  const c = orig.copy('t');
  try {
    c.sql(`DELETE FROM cv_audit WHERE pos > ${kc};\nUPDATE cv_audit_head SET pos = ${kc}, hash = ${c.blob(chain[kc - 1].hash)} WHERE one = 1;\n`
      + `DELETE FROM cv_audit_checkpoint WHERE pos > ${kc};`);
    const keysLeft = verify(s, { dataDir: c.dataDir, store: c.store });
    if (keysLeft.status !== 1 || !/past its last record/.test(keysLeft.stdout)) problems.push(`tail+head+checkpoints cut, search keys left: exit ${keysLeft.status}, expected 1 naming the keys past the last record: ${keysLeft.out.trim().slice(0, 300)}`);
    c.sql(`DELETE FROM cv_audit_key WHERE pos > ${kc};`);
    const blind = verify(s, { dataDir: c.dataDir, store: c.store });
    if (blind.status !== 0) problems.push(`tail+head+checkpoints cut, without --checkpoints: exit ${blind.status} (the store alone cannot tell; expected 0): ${blind.out.trim().slice(0, 200)}`);
    const file = c.pg ? cpFile : path.join(c.dataDir, 'audit-checkpoints.jsonl');
    const seen = verify(s, { dataDir: c.dataDir, store: c.store, checkpoints: file });
    if (seen.status !== 1 || seen.bad !== kc + 1) problems.push(`tail+head+checkpoints cut, with --checkpoints: exit ${seen.status}, first bad ${seen.bad}, expected 1 and ${kc + 1}: ${seen.out.trim().slice(0, 300)}`);
  } finally {
    c.drop();
  }
  // a store without any checkpoint (all removed): the chain alone still verifies
  const n = orig.copy('t');
  try {
    n.sql('DELETE FROM cv_audit_checkpoint;');
    const v = verify(s, { dataDir: n.dataDir, store: n.store });
    if (v.status !== 0 || !v.whole) problems.push(`a store without checkpoints: exit ${v.status}, expected 0 (whole): ${v.out.trim().slice(0, 300)}`);
    const cut = verify(s, { dataDir: n.dataDir, store: n.store, checkpoints: n.pg ? cpFile : path.join(n.dataDir, 'audit-checkpoints.jsonl') });
    if (cut.status !== 0) problems.push(`a store without checkpoints, with the checkpoint file: exit ${cut.status}, expected 0: ${cut.out.trim().slice(0, 300)}`);
  } finally {
    n.drop();
  }
  // a checkpoint line altered in the exported file: a bad signature
  const lines = fs.readFileSync(cpFile, 'utf8').trim().split('\n');
  const forged = JSON.parse(lines[0]);
  forged.hash = forged.hash.replace(/^./, (ch) => (ch === '0' ? '1' : '0'));
  const alt = path.join(s.tmpDir, `altered-${TAG}.jsonl`);
  fs.writeFileSync(alt, [JSON.stringify(forged), ...lines.slice(1)].join('\n'));
  const altered = verify(s, { checkpoints: alt });
  if (altered.status !== 1) problems.push(`an altered checkpoint line: exit ${altered.status}, expected 1`);
  assert.deepEqual(problems, [], problems.join('\n'));
  // the original is untouched by all this
  assert.equal(verify(s).status, 0, 'the original trail still verifies');
});

test('retention: an archive verifies against its store; records cut from either end of it, or put below the base, are found', () => {
  const s = servers.tamper;
  assert.ok(s && s.exit !== null, 'the tamper server ran and stopped');
  const c = storeHandle(s).copy('r');
  const file = path.join(s.tmpDir, `retained-${TAG}.jsonl`);
  const env = c.store ? { CAREVAULT_STORE: c.store } : {};
  try {
    const arch = cli(s, ['audit', 'archive', '--data', c.dataDir, '--out', file, '--before', '2100-01-01'], { env });
    assert.equal(arch.status, 0, `archive: ${arch.out.slice(0, 300)}`);
    const good = cli(s, ['audit', 'verify', '--archive', file, '--data', c.dataDir], { env });
    assert.equal(good.status, 0, `the archive against its store: ${good.out.slice(0, 300)}`);
    assert.match(good.stdout, /the archive is whole: records 1 to \d+, signed\n/);
    assert.match(good.stdout, /starts right after this archive's last record/);
    const rest = verify(s, { dataDir: c.dataDir, store: c.store });
    assert.equal(rest.status, 0, `the store after the archive: ${rest.out.slice(0, 300)}`);
    // the archive's lines: header, records, signed end
    const lines = fs.readFileSync(file, 'utf8').trim().split('\n');
    const recs = lines.slice(1, -1).map((l) => JSON.parse(l));
    const last = recs.at(-1).pos;
    const cut = path.join(s.tmpDir, `cut-${TAG}.jsonl`);
    const checkCut = (what, text) => {
      fs.writeFileSync(cut, `${text}\n`);
      const v = cli(s, ['audit', 'verify', '--archive', cut, '--data', c.dataDir], { env });
      assert.equal(v.status, 1, `${what}: ${v.out.slice(0, 300)}`);
      assert.match(v.stdout, /AUDIT ARCHIVE NOT WHOLE: .*first and last/, what);
    };
    // records cut from its start: the header follows record 2
    checkCut('the start cut', [JSON.stringify({ format: 'carevault-audit-archive-2', first: 3, prev: recs[1].hash }),
      ...lines.slice(3)].join('\n'));
    // records cut from its end: an earlier record's signed checkpoint as the end
    const cps = fs.readFileSync(path.join(s.dataDir, 'audit-checkpoints.jsonl'), 'utf8').trim().split('\n')
      .map((l) => JSON.parse(l)).filter((cp) => cp.pos < last);
    assert.ok(cps.length > 0, 'a checkpoint inside the archive');
    const cp = cps.at(-1);
    checkCut('the end cut', [...lines.slice(0, 1 + cp.pos), JSON.stringify(cp)].join('\n'));
    // a record put below the base (a copy of a later one, under another agent): served by searches,
    // so verify names it
    c.sql(`INSERT INTO cv_audit (pos, at_us, action, outcome, flags, kind, subtype, agent, id, nres, keys, body, prev, hash, npat) `
      + `SELECT 2, at_us, action, outcome, flags, kind, subtype, 'framed-${TAG}', id, nres, keys, body, prev, hash, npat `
      + `FROM cv_audit WHERE pos = (SELECT max(pos) FROM cv_audit);`);
    const below = verify(s, { dataDir: c.dataDir, store: c.store });
    assert.equal(below.status, 1, `a record below the base: ${below.out.slice(0, 300)}`);
    assert.equal(below.bad, 2);
    assert.match(below.stdout, /at or before the trail's start/);
  } finally {
    c.drop();
    fs.rmSync(file, { force: true });
  }
});

// ---------------------------------------------------------------- 6. crash

test('kill -9 under load: the trail verifies and every answered request has its record', async (t) => {
  const s = await start({ name: 'audit-crash' });
  servers.crash = s;
  const seed = await s.req('PUT', '/fhir/Patient/c1', { body: { resourceType: 'Patient', id: 'c1', active: true } });
  assert.equal(seed.status, 201);
  const answered = [];
  let networkErrors = 0;
  let stopped = false;
  const t0 = Date.now();
  const WORKERS = 6;
  const workers = Array.from({ length: WORKERS }, async (_, wk) => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: s.ca });
    let last = null;
    let n = 0;
    try {
      while (!stopped && Date.now() - t0 < 6000) {
        const op = (n++ + wk) % 4;
        const [m, u, o] = op === 0 ? ['POST', '/fhir/Observation', { body: obs(null, 'Patient/c1') }]
          : op === 1 ? ['GET', `/fhir/Observation/${last ?? 'none'}`, {}]
            : op === 2 ? ['GET', '/fhir/Observation?subject=Patient/c1&_count=3', {}]
              : ['GET', '/fhir/Patient/c1', { token: '' }];
        try {
          const r = await httpsRequest(s.origin, m, u, { ca: s.ca, token: o.token ?? s.token, body: o.body, agent, timeout: 5000 });
          answered.push({ rid: r.headers['x-request-id'], status: r.status, op });
          if (r.status === 201) last = r.json?.id ?? last;
        } catch {
          networkErrors++;
          await sleep(30);
        }
      }
    } finally {
      agent.destroy();
    }
  });
  await sleep(1500);
  await s.kill9();
  await sleep(300);
  stopped = true;
  await Promise.all(workers);
  assert.ok(answered.length >= 30, `only ${answered.length} requests answered before the kill`);
  const unrecorded = answered.filter((a) => a.status === 503);
  const must = answered.filter((a) => a.status !== 503);
  assert.ok(must.every((a) => a.rid), 'every answer carries X-Request-Id');
  // straight after the crash, then after a restart and a clean stop
  const v1 = verify(s);
  assert.equal(v1.status, 0, `verify after kill -9: ${v1.out.slice(0, 400)}`);
  await s.restart();
  await s.stop();
  const v2 = verify(s);
  assert.equal(v2.status, 0, `verify after restart: ${v2.out.slice(0, 400)}`);
  const out = path.join(s.tmpDir, `export-${TAG}.ndjson`);
  const ex = cli(s, ['audit', 'export', '--data', s.dataDir, '--out', out]);
  assert.equal(ex.status, 0, `export: ${ex.stderr.slice(0, 300)}`);
  const ids = new Set(fs.readFileSync(out, 'utf8').split('\n').filter(Boolean).map((l) => facts(JSON.parse(l)).requestId));
  const missing = must.filter((a) => !ids.has(a.rid));
  assert.deepEqual(missing.map((a) => `${a.rid} (op ${a.op}, status ${a.status})`), [],
    `${missing.length}/${must.length} answered requests have no record (${unrecorded.length} answered 503, ${networkErrors} network errors)`);
  t.diagnostic(`${must.length} answered requests (${['writes', 'reads', 'searches', 'refusals'].map((n, i) => `${must.filter((a) => a.op === i).length} ${n}`).join(', ')}), all in the ${ids.size} exported records; ${networkErrors} network errors after the kill`);
  assert.equal(fs.statSync(out).mode & 0o777, 0o600, 'the export file is 0600');
  const v3 = verify(s);
  assert.equal(v3.status, 0, `verify after the export (which records itself): ${v3.out.slice(0, 300)}`);
});

// ---------------------------------------------------------------- 7. alerts and sinks

test('alerts: failed logins, many patients, outside relationships, break-glass; checkpoints to an https sink', async () => {
  const sinkDir = fs.mkdtempSync(path.join(servers.main.tmpDir, 'sink-'));
  const sink = await httpsSink(sinkDir);
  let s;
  try {
    s = await start({ name: 'audit-alerts', env: {
      CAREVAULT_ALERT_FAILED_LOGINS: '3', CAREVAULT_ALERT_DENIED_PER_HOUR: '3', CAREVAULT_ALERT_PATIENTS_PER_HOUR: '3',
      CAREVAULT_ALERT_WEBHOOK_URL: `${sink.url}/alerts`, CAREVAULT_OUTBOUND_CA_FILE: sink.caFile,
      CAREVAULT_AUDIT_CHECKPOINT_URL: `${sink.url}/checkpoints`, CAREVAULT_AUDIT_CHECKPOINT_RECORDS: '5',
    } });
    servers.alerts = s;
    const pat = Array.from({ length: 7 }, (_, i) => `al-p${i + 1}-${TAG}`);
    for (const id of pat) {
      const r = await s.req('PUT', `/fhir/Patient/${id}`, { body: { resourceType: 'Patient', id, active: true } });
      assert.equal(r.status, 201);
    }
    const drId = `al-dr-${TAG}`;
    assert.equal((await s.req('PUT', `/fhir/Practitioner/${drId}`, { body: { resourceType: 'Practitioner', id: drId, active: true } })).status, 201);
    for (const id of pat.slice(0, 4)) {
      const ct = { resourceType: 'CareTeam', id: `al-ct-${id}`, status: 'active', subject: { reference: pref(id) },
        participant: [{ member: { reference: `Practitioner/${drId}` } }] };
      assert.equal((await s.req('PUT', `/fhir/CareTeam/${ct.id}`, { body: ct })).status, 201);
    }
    const fx = { sym: new Map([['dr', { type: 'Practitioner', id: drId }], ['p5', { type: 'Patient', id: pat[4] }], ['p6', { type: 'Patient', id: pat[5] }]]) };
    const doctor = await addAccount(s, fx, `al_doctor_${TAG}`, { role: 'doctor', link: 'dr' });
    const prober = await addAccount(s, fx, `al_prober_${TAG}`, { role: 'patient', link: 'p5' });
    const victim = await addAccount(s, fx, `al_victim_${TAG}`, { role: 'patient', link: 'p6' });
    const doc = principal(s, 'doctor', await login(s, doctor));
    const probe = principal(s, 'prober', await login(s, prober));
    // three failed logins of one account
    for (let i = 0; i < 3; i++) {
      const r = await s.req('POST', '/auth/login', { token: '', headers: J, body: { username: victim.username, password: `wrong password number ${i}` } });
      assert.equal(r.status, 401, `failed login ${i}`);
    }
    // a doctor reading four patients they treat
    for (const id of pat.slice(0, 4)) assert.equal((await doc.call('GET', `/fhir/Patient/${id}`)).status, 200, `the doctor reads ${id}`);
    // a patient probing other patients' ids
    for (const id of pat.slice(0, 3)) assert.equal((await probe.call('GET', `/fhir/Patient/${id}`)).status, 404, `the probe of ${id}`);
    // break-glass by the doctor on a patient they do not treat
    const bg = await doc.call('POST', `/fhir/Patient/${pat[6]}/$break-glass`, { headers: FORM, body: new URLSearchParams({ reason: REASON }).toString() });
    assert.equal(bg.status, 200, `break-glass: ${diag(bg)}`);
    const want = [['failed-logins', victim.id], ['many-patients', doctor.id], ['outside-relationships', prober.id]];
    const boot = bootCaller(s);
    let found = [];
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      found = (await searchTrail(boot, 'alert=true&_count=1000')).records.map(facts);
      if (want.every(([k, a]) => found.some((f) => f.subtype === k && f.agent === a))) break;
      await sleep(500);
    }
    await sink.until((posts) => want.every(([k, a]) => posts.some((x) => x.path === '/alerts' && x.json?.alert === k && x.json?.agent === a))
      && posts.some((x) => x.path === '/alerts' && x.json?.alert === 'break-glass'), 8000);
    const problems = [];
    for (const [kind, agent] of want) {
      const recs = (await searchTrail(boot, `alert=true&subtype=${kind}`)).records.map(facts);
      if (recs.length !== 1) problems.push(`${kind}: ${recs.length} alert records, expected 1`);
      else {
        if (recs[0].agent !== agent) problems.push(`${kind}: the alert is about ${recs[0].agent}, expected ${agent}`);
        if (recs[0].type !== '110113') problems.push(`${kind}: type ${recs[0].type}, expected 110113`);
      }
      const logLine = fs.readFileSync(s.logFile, 'utf8').split('\n').find((l) => l.includes('security alert') && l.includes(kind) && l.includes(agent));
      if (!logLine) problems.push(`${kind}: no "security alert" log line naming the kind and ${agent}`);
      const hooks = sink.posts.filter((x) => x.path === '/alerts' && x.json?.alert === kind);
      if (hooks.length !== 1) problems.push(`${kind}: ${hooks.length} webhook posts, expected 1`);
      else if (hooks[0].json.agent !== agent) problems.push(`${kind}: the webhook names ${hooks[0].json.agent}, expected ${agent}`);
    }
    const bgHook = sink.posts.filter((x) => x.path === '/alerts' && x.json?.alert === 'break-glass');
    if (bgHook.length !== 1 || bgHook[0]?.json?.agent !== doctor.id) problems.push(`break-glass: ${bgHook.length} webhook posts (agent ${bgHook[0]?.json?.agent})`);
    for (const x of sink.posts.filter((y) => y.path === '/alerts')) {
      if (!x.json || typeof x.json.alert !== 'string' || typeof x.json.agent !== 'string') problems.push(`a webhook body without alert and agent: ${x.body.slice(0, 100)}`);
      if (pat.some((id) => x.body.includes(id)) || x.body.includes(REASON)) problems.push(`a webhook body names a patient or the reason (alert ${x.json?.alert})`);
      if (!/application\/json/.test(x.type ?? '')) problems.push(`a webhook post of type ${x.type}`);
    }
    // the checkpoint sink: signed lines that verify accepts once saved to a file
    await sink.until((posts) => posts.some((x) => x.path === '/checkpoints'), 5000);
    await s.stop();
    const cps = sink.posts.filter((x) => x.path === '/checkpoints');
    assert.ok(cps.length >= 2, `${cps.length} checkpoint posts`);
    const pub = cli(s, ['audit', 'pubkey', '--data', s.dataDir]);
    if (pub.status !== 0) problems.push(`carevault audit pubkey: exit ${pub.status}, expected 0 (it printed ${/^[0-9a-f]{64}$/.test(pub.stdout.trim()) ? 'a key' : 'no key'})`);
    for (const x of cps) {
      assert.ok(x.json && Number.isInteger(x.json.pos) && /^[0-9a-f]{128}$/.test(x.json.sig), `a checkpoint line: ${x.body.slice(0, 80)}`);
      assert.equal(x.json.key, pub.stdout.trim(), 'signed by the store\'s audit key');
    }
    const file = path.join(s.tmpDir, `sink-checkpoints-${TAG}.jsonl`);
    fs.writeFileSync(file, `${cps.map((x) => x.body.trim()).join('\n')}\n`);
    const v = verify(s, { checkpoints: file });
    assert.equal(v.status, 0, `verify with the sink's checkpoints: ${v.out.slice(0, 300)}`);
    assert.match(v.stdout, new RegExp(`${cps.length + storeHandle(s).checkpoints().length} signed checkpoints`), 'the sink\'s checkpoints were checked');
    assert.deepEqual(problems, [], problems.join('\n'));
  } finally {
    await sink.close();
  }
});

// ---------------------------------------------------------------- 7b. no unrecorded change

test('an operator\'s change whose record cannot be stored does not happen: key rotation, erasure, backup, revoke-all, an export', async () => {
  const s = await start({ name: 'audit-refuse' });
  servers.refuse = s;
  assert.equal((await s.req('PUT', '/fhir/Patient/rf1', { body: { resourceType: 'Patient', id: 'rf1', active: true } })).status, 201);
  await s.stop();
  const h = storeHandle(s);
  const refuse = h.pg
    ? 'CREATE FUNCTION cv_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION \'the test refuses audit rows\'; END $$;'
      + ' CREATE TRIGGER cv_test_refuse BEFORE INSERT ON cv_audit FOR EACH ROW EXECUTE FUNCTION cv_test_refuse();'
    : 'CREATE TRIGGER cv_test_refuse BEFORE INSERT ON cv_audit BEGIN SELECT RAISE(ABORT, \'the test refuses audit rows\'); END;';
  const head = h.head();
  h.sql(refuse);
  const read = (f) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : null);
  const masterBefore = read(path.join(s.dataDir, 'master.key'));
  const ledgerBefore = read(path.join(s.dataDir, 'erasures'));
  const out = path.join(s.dataDir, '..', `refused-${TAG}.cvbak`);
  const runs = {
    'keys rotate-master': cli(s, ['keys', 'rotate-master', '--data', s.dataDir]),
    'keys rotate-data': cli(s, ['keys', 'rotate-data', '--data', s.dataDir]),
    'patient erase': cli(s, ['patient', 'erase', '--data', s.dataDir, '--id', 'rf1', '--yes']),
    backup: cli(s, ['backup', '--data', s.dataDir, '--out', out]),
    'user revoke-sessions --all': cli(s, ['user', 'revoke-sessions', '--all', '--data', s.dataDir]),
    'audit archive': cli(s, ['audit', 'archive', '--data', s.dataDir, '--out', `${out}.archive`, '--before', '2100-01-01']),
    // an export takes the trail away: recorded before anything is written, or not made
    'audit export': cli(s, ['audit', 'export', '--data', s.dataDir, '--patient', 'rf1', '--out', `${out}.ndjson`]),
  };
  for (const [what, r] of Object.entries(runs)) {
    assert.notEqual(r.status, 0, `${what} was refused: ${r.out.slice(0, 300)}`);
    assert.match(r.stderr, /could not be recorded in the audit trail/, `${what} says why`);
  }
  assert.equal(read(path.join(s.dataDir, 'master.key')), masterBefore, 'no master key version was added');
  assert.equal(read(path.join(s.dataDir, 'erasures')), ledgerBefore, 'no erasure ledger line');
  assert.equal(fs.existsSync(out), false, 'no backup file');
  assert.equal(fs.existsSync(`${out}.archive`), false, 'no archive file');
  assert.equal(fs.existsSync(`${out}.ndjson`), false, 'no export file');
  assert.deepEqual(h.head(), head, 'and nothing reached the trail');
  h.sql(h.pg ? 'DROP TRIGGER cv_test_refuse ON cv_audit; DROP FUNCTION cv_test_refuse();' : 'DROP TRIGGER cv_test_refuse;');
  // once it can be recorded, the export's records say whose trail was taken
  const exp = cli(s, ['audit', 'export', '--data', s.dataDir, '--patient', 'rf1', '--out', `${out}.ndjson`]);
  assert.equal(exp.status, 0, `the export: ${exp.out.slice(0, 300)}`);
  fs.rmSync(`${out}.ndjson`, { force: true });
  assert.equal(cli(s, ['audit', 'export', '--data', s.dataDir, '--patient', 'rf1', '--patient', 'x']).status, 2, 'a repeated --patient');
  await s.restart();
  assert.equal((await s.req('GET', '/fhir/Patient/rf1')).status, 200, 'the patient was not erased');
  const taken = (await searchTrail({ call: (m, u) => s.req(m, u) }, 'patient=Patient/rf1&type=110106&_count=100')).records.map(facts);
  assert.deepEqual(taken.map((f) => f.subtype).sort(), ['audit-export', 'audit-export-started'], 'the export\'s start and outcome name the patient');
  await s.stop();
  assert.ok(verify(s).whole, 'the trail is whole');
});

test('a request whose record cannot be stored fails closed: no data read, no session opened, nothing written', async () => {
  const s = await start({ name: 'audit-closed' });
  servers.closed = s;
  assert.equal((await s.req('PUT', '/fhir/Patient/fc1', { body: { resourceType: 'Patient', id: 'fc1', name: [{ family: FAMILY }] } })).status, 201);
  const fx = { sym: new Map([['fc1', { type: 'Patient', id: 'fc1' }]]) };
  const acct = await addAccount(s, fx, `closed.${TAG}`, { role: 'patient', link: 'fc1' });
  const h = storeHandle(s);
  const head = h.head();
  h.sql(h.pg // the server keeps serving: PostgreSQL and SQLite both take the trigger live
    ? 'CREATE FUNCTION cv_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION \'the test refuses audit rows\'; END $$;'
      + ' CREATE TRIGGER cv_test_refuse BEFORE INSERT ON cv_audit FOR EACH ROW EXECUTE FUNCTION cv_test_refuse();'
    : 'CREATE TRIGGER cv_test_refuse BEFORE INSERT ON cv_audit BEGIN SELECT RAISE(ABORT, \'the test refuses audit rows\'); END;');
  const read = await s.req('GET', '/fhir/Patient/fc1');
  assert.equal(read.status, 503, 'a read is not answered without its record');
  assert.ok(!read.body.toString().includes(FAMILY), 'and carries none of the resource');
  const li = await s.req('POST', '/auth/login', { token: '', headers: J, body: { username: acct.username, password: PASSWORD } });
  assert.equal(li.status, 503, `a login without its record: ${li.status}`);
  assert.equal([].concat(li.headers['set-cookie'] ?? []).length, 0, 'no session cookie');
  const put = await s.req('PUT', '/fhir/Patient/fc2', { body: { resourceType: 'Patient', id: 'fc2', active: true } });
  assert.equal(put.status, 503, 'a write without its record');
  assert.deepEqual(h.head(), head, 'nothing reached the trail');
  h.sql(h.pg ? 'DROP TRIGGER cv_test_refuse ON cv_audit; DROP FUNCTION cv_test_refuse();' : 'DROP TRIGGER cv_test_refuse;');
  assert.equal((await s.req('GET', '/fhir/Patient/fc2')).status, 404, 'the write did not happen');
  const p = principal(s, 'closed', await login(s, acct));
  const list = await p.call('GET', '/auth/sessions');
  assert.equal(list.status, 200);
  assert.equal(list.json.sessions.length, 1, 'the refused login opened no session: only this one is live');
  await s.stop();
  assert.ok(verify(s).whole, 'the trail is whole');
});

// ---------------------------------------------------------------- 8. no PHI in the clear

test('no PHI in the clear: the store has no family name or break-glass reason, the log no patient id', async () => {
  const s = W.server;
  assert.ok(walked.has('$break-glass'), 'the walk declared break-glass with the reason');
  const raw = rawStore(s);
  assert.ok(raw.length > 0 && raw.some((b) => b.length > 0), 'the store was read');
  assert.ok(rawContains(raw, 'search-type'), 'the raw store is readable (a record\'s plain subtype column is found)');
  assert.ok(!rawContains(raw, FAMILY), 'the patient\'s family name is not stored in the clear');
  assert.ok(!rawContains(raw, REASON), 'the break-glass reason is not stored in the clear');
  assert.ok(!rawContains(raw, 'unresponsive on arrival'), 'nor part of it');
  const log = fs.readFileSync(s.logFile, 'utf8');
  for (const [k, id] of Object.entries({ P1: ID.P1, P2: ID.P2 })) assert.ok(!log.includes(id), `the log names no patient id (${k})`);
  assert.ok(!log.includes(FAMILY), 'the log has no family name');
  assert.ok(!log.includes(REASON), 'the log has no break-glass reason');
  if (servers.alerts) {
    const alog = fs.readFileSync(servers.alerts.logFile, 'utf8');
    assert.ok(!/al-p\d-/.test(alog), 'the alert server\'s log names no patient id');
  }
});

// ---------------------------------------------------------------- the end

test('the main server stops cleanly (exit 0, no sanitizer report) and its whole trail verifies', async () => {
  const s = W.server;
  let stopError = null;
  try { await s.stop(); } catch (e) { stopError = e; }
  const v = verify(s, { checkpoints: path.join(s.dataDir, 'audit-checkpoints.jsonl') });
  assert.equal(v.status, 0, `verify: ${v.out.slice(0, 300)}`);
  assert.ok(v.whole);
  if (stopError) throw stopError;
});
