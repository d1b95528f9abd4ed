// Fixtures, principals and the matrix runner of the authorization suite
// (access.test.mjs, data/access-matrix.tsv).
//
// The fixture world (ids are server-assigned for the Synthea records, chosen
// `acc-...` ids for the hand-made ones) is reached through symbols:
//   A.patient, A.obs_vitals, B.claim, org_main, pr_dc, ...      (see SYMBOLS below)
// Principals ("actors") are portal sessions (cookie + CSRF token), SMART app
// tokens (the authorization-code flow with PKCE) and backend service tokens.
//
// Fixtures (loadFixtures):
//   A, B, C          three Synthea patients (A related, B unrelated, C consent-heavy) with
//                    X.patient, X.obs_vitals, X.obs_lab, X.condition, X.encounter, X.medreq,
//                    X.immunization, X.procedure, X.claim, X.eob (first of each in the bundle)
//   E.patient        a hand-made patient for the mid-session changes (E.obs,
//                    E.careteam_nurse, E.careteam_doctor, E.consent_toggle)
//   pr_<xx>          a Practitioner per staff account (pr_na nurse_assigned, pr_dc doctor_careteam, ...)
//   care teams       A.careteam (active: pr_na, pr_dc, pr_dd; pr_nx with an ended participant
//                    period), A.careteam_inactive (status inactive: pr_ni), A.careteam_ended
//                    (team period ended: pr_dp), A.careteam_spare, B.careteam (organization
//                    only), C.careteam (pr_dc)
//   encounters       A.enc_hand (finished: pr_de, pr_ne), A.enc_cancelled (pr_dx), C.enc_org (pr_do)
//   Observations     A.obs_psy / B.obs_psy (meta.security PSY), A.obs_self (performer A),
//                    A.obs_shared (subject A, performer B), A.obs_mut, A.obs_del1..4,
//                    B.obs_del, orphan_obs (no patient)
//   other record     A.docref, A.qr, A.comm, A.appt (proposed)
//   billing          A/B/C.coverage (plus the Synthea Claims and EOBs)
//   consents         A.consent_deny_dd (deny pr_dd), A.consent_psy (deny PSY, permit pr_dc),
//                    A.consent_expired (deny pr_dc, period 2001), A.consent_inactive (deny pr_na,
//                    inactive), B.consent_psy (deny PSY), B.consent_deny_db (deny pr_db),
//                    C.consent_research (deny HRESCH), C.consent_org (deny org_deny, pr_do's
//                    organization through prr_do), C.consent_billing (deny HPAYMT)
//   audit            audit_event: a record of the audit trail naming A (the server writes them all)
//   directory        org_main, org_deny, org_spare, loc_main, prr_do
//   reference        med_main, med_spare, q_main
//
// The Synthea records are synthetic but shaped like real PHI: nothing here
// prints a name, identifier, address or birth date; messages carry symbols,
// server ids, statuses and OperationOutcome diagnostics only.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Browser, parseForms } from './browser.mjs';
import { rsaKeyPair } from './keys.mjs';
import { E2E_DIR } from './server.mjs';
import { loadSyntheaBundles, parseLocation } from './synthea.mjs';
import { base32Decode, totp } from './totp.mjs';

// CV_ACCESS_MATRIX: another matrix file (a subset while debugging), relative to tests/e2e
export const MATRIX_FILE = path.resolve(E2E_DIR, process.env.CV_ACCESS_MATRIX || 'data/access-matrix.tsv');
export const PASSWORD = 'quiet violet harbour lantern 58';
export const CB_URI = 'http://localhost:9/callback'; // never followed: the code is read from the redirect
export const PSY = { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'PSY' };
export const LAB = 'http://terminology.hl7.org/CodeSystem/observation-category|laboratory';
const J = { 'content-type': 'application/json' };
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const PRCP = { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ParticipationType', code: 'PRCP' }] };
const ACT_REASON = 'http://terminology.hl7.org/CodeSystem/v3-ActReason';
const past = { start: '2001-01-01', end: '2002-01-01' };

// The Synthea patients: A is the related patient, B the unrelated one, C the
// consent-heavy one (three of the smallest bundles, to keep the suite fast).
export const SYNTHEA = { A: 'Liz_Conn_', B: 'Eddy_Fadel_', C: 'Fredrick_Kris_' };

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export const diag = (r) => (r?.json?.resourceType === 'OperationOutcome'
  ? r.json.issue?.map((i) => `${i.code}: ${i.diagnostics ?? ''}`).join(' | ').slice(0, 300)
  : `(${r?.json?.resourceType ?? 'no JSON'} body)`);

export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => { for (let i = next++; i < items.length; i = next++) out[i] = await fn(items[i], i); };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

// ---------------------------------------------------------------- principals

/** The accounts: actor → {role, link (symbol of the linked resource)}. */
export const ACCOUNTS = {
  patient_a: { role: 'patient', link: 'A.patient' },
  patient_b: { role: 'patient', link: 'B.patient' },
  patient_c: { role: 'patient', link: 'C.patient' },
  patient_e: { role: 'patient', link: 'E.patient' },
  nurse_assigned: { role: 'nurse', link: 'pr_na' },
  nurse_expired_membership: { role: 'nurse', link: 'pr_nx' },
  nurse_inactive_team: { role: 'nurse', link: 'pr_ni' },
  nurse_encounter: { role: 'nurse', link: 'pr_ne' },
  nurse_unrelated: { role: 'nurse', link: 'pr_nu' },
  nurse_breakglass: { role: 'nurse', link: 'pr_nb' },
  nurse_toggle: { role: 'nurse', link: 'pr_nt' },
  doctor_careteam: { role: 'doctor', link: 'pr_dc' },
  doctor_encounter: { role: 'doctor', link: 'pr_de' },
  doctor_cancelled_encounter: { role: 'doctor', link: 'pr_dx' },
  doctor_team_period_ended: { role: 'doctor', link: 'pr_dp' },
  doctor_unrelated: { role: 'doctor', link: 'pr_du' },
  doctor_breakglass: { role: 'doctor', link: 'pr_db' },
  doctor_denied_by_consent: { role: 'doctor', link: 'pr_dd' },
  doctor_denied_by_org: { role: 'doctor', link: 'pr_do' },
  doctor_toggle: { role: 'doctor', link: 'pr_dt' },
  billing: { role: 'billing' },
  auditor: { role: 'auditor' },
  researcher: { role: 'researcher' },
  // second accounts for the SMART launches (each staff login spends a TOTP step)
  app_doctor: { role: 'doctor', link: 'pr_dc', noSession: true },
  admin: { role: 'admin' }, // last: it retires the bootstrap token
};

/** SMART apps: actor → the account that launches it, its scopes, the patient picked (staff). */
export const APPS = {
  app_patient_obs_read: { account: 'patient_a', scope: 'launch/patient openid fhirUser patient/Observation.rs' },
  app_granular_lab: { account: 'patient_a', scope: `launch/patient openid fhirUser patient/Observation.rs?category=${LAB}` },
  app_user_scopes: { account: 'app_doctor', scope: 'openid fhirUser user/*.rs' },
  app_doctor_patient_scope: { account: 'app_doctor', scope: 'launch/patient openid fhirUser patient/*.rs', patient: 'A.patient' },
};
export const APP_CLIENT_SCOPE = `launch/patient openid fhirUser patient/*.rs user/*.rs patient/Observation.rs?category=${LAB}`;

/** Backend services: actor → registered scope. */
// the trail is given to a backend client only by name (system/*.cruds alone does not reach AuditEvent)
export const BACKENDS = { backend: 'system/*.cruds system/AuditEvent.rs', backend_obs_ro: 'system/Observation.rs' };

export const username = (actor) => `acc.${actor.replace(/_/g, '.')}`;

// ---------------------------------------------------------------- fixtures

const ref = (r) => ({ reference: r });
const obs = (id, subject, extra = {}) => ({
  resourceType: 'Observation', id, status: 'final',
  category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'survey' }] }],
  code: { coding: [{ system: 'http://loinc.org', code: '44249-1' }], text: 'screening' },
  ...(subject ? { subject: ref(subject) } : {}),
  identifier: [{ system: 'urn:acc:fixture', value: id }],
  valueInteger: 3, ...extra,
});
const consent = (id, patient, provision, extra = {}) => ({
  resourceType: 'Consent', id, status: 'active',
  scope: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/consentscope', code: 'patient-privacy' }] },
  category: [{ coding: [{ system: 'http://loinc.org', code: '59284-0' }] }],
  patient: ref(patient), dateTime: '2024-01-01',
  policyRule: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'OPTIN' }] },
  provision, ...extra,
});
const actor = (r) => [{ role: PRCP, reference: ref(r) }];
const careTeam = (id, subject, members, extra = {}) => ({
  resourceType: 'CareTeam', id, status: 'active', subject: ref(subject),
  participant: members.map((m) => (typeof m === 'string' ? { member: ref(m) } : m)), ...extra,
});
const encounter = (id, subject, status, who) => ({
  resourceType: 'Encounter', id, status,
  class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' },
  subject: ref(subject), participant: who.map((w) => ({ individual: ref(w) })),
  period: { start: '2024-01-02T10:00:00Z', end: '2024-01-02T11:00:00Z' },
});
const coverage = (id, patient) => ({
  resourceType: 'Coverage', id, status: 'active', beneficiary: ref(patient), payor: [ref('Organization/acc-org-main')],
});

const PRACTITIONERS = ['na', 'nx', 'ni', 'ne', 'nu', 'nb', 'nt', 'dc', 'de', 'dx', 'dp', 'du', 'db', 'dd', 'do', 'dt', 'spare'];

/**
 * The hand-made resources, given the Synthea patients' references
 * (P.A = "Patient/<id>", ...). [symbol, resource] pairs, in write order.
 */
function handMade(P) {
  const out = [];
  const add = (sym, r) => out.push([sym, r]);
  for (const p of PRACTITIONERS) add(`pr_${p}`, { resourceType: 'Practitioner', id: `acc-pr-${p}`, active: true });
  add('org_main', { resourceType: 'Organization', id: 'acc-org-main', active: true, name: 'Access Test Clinic' });
  add('org_deny', { resourceType: 'Organization', id: 'acc-org-deny', active: true, name: 'Access Test Denied Org' });
  add('org_spare', { resourceType: 'Organization', id: 'acc-org-spare', active: true, name: 'Access Test Spare Org' });
  add('loc_main', { resourceType: 'Location', id: 'acc-loc-main', status: 'active', name: 'Access Test Ward' });
  add('prr_do', { resourceType: 'PractitionerRole', id: 'acc-prr-do', active: true,
    practitioner: ref('Practitioner/acc-pr-do'), organization: ref('Organization/acc-org-deny') });
  add('med_main', { resourceType: 'Medication', id: 'acc-med-main', code: { text: 'test medication' } });
  add('med_spare', { resourceType: 'Medication', id: 'acc-med-spare', code: { text: 'spare medication' } });
  add('q_main', { resourceType: 'Questionnaire', id: 'acc-q-main', status: 'active', item: [{ linkId: '1', type: 'string', text: 'How are you?' }] });
  add('E.patient', { resourceType: 'Patient', id: 'acc-pat-e', active: true });

  // care teams: the relationships
  const now = new Date();
  const ended = { start: '2020-01-01', end: new Date(now.getTime() - 86400_000).toISOString().slice(0, 10) };
  add('A.careteam', careTeam('acc-ct-a', P.A, [
    'Practitioner/acc-pr-na', 'Practitioner/acc-pr-dc', 'Practitioner/acc-pr-dd',
    { member: ref('Practitioner/acc-pr-nx'), period: ended },
  ]));
  add('A.careteam_inactive', careTeam('acc-ct-a-inactive', P.A, ['Practitioner/acc-pr-ni'], { status: 'inactive' }));
  add('A.careteam_ended', careTeam('acc-ct-a-ended', P.A, ['Practitioner/acc-pr-dp'], { period: ended }));
  add('A.careteam_spare', careTeam('acc-ct-a-spare', P.A, ['Organization/acc-org-main']));
  add('B.careteam', careTeam('acc-ct-b', P.B, ['Organization/acc-org-main']));
  add('C.careteam', careTeam('acc-ct-c', P.C, ['Practitioner/acc-pr-dc']));
  add('E.careteam_nurse', careTeam('acc-ct-e-nurse', 'Patient/acc-pat-e', ['Practitioner/acc-pr-nt']));
  add('E.careteam_doctor', careTeam('acc-ct-e-doctor', 'Patient/acc-pat-e', ['Practitioner/acc-pr-dt']));
  add('A.enc_hand', encounter('acc-enc-a', P.A, 'finished', ['Practitioner/acc-pr-de', 'Practitioner/acc-pr-ne']));
  add('A.enc_cancelled', encounter('acc-enc-a-cancelled', P.A, 'cancelled', ['Practitioner/acc-pr-dx']));
  add('C.enc_org', encounter('acc-enc-c-org', P.C, 'finished', ['Practitioner/acc-pr-do']));

  // record resources
  add('A.obs_psy', obs('acc-obs-a-psy', P.A, { meta: { security: [PSY] } }));
  add('B.obs_psy', obs('acc-obs-b-psy', P.B, { meta: { security: [PSY] } }));
  add('A.obs_self', obs('acc-obs-a-self', P.A, { performer: [ref(P.A)] }));
  add('A.obs_shared', obs('acc-obs-a-shared', P.A, { performer: [ref(P.B)] }));
  add('A.obs_mut', obs('acc-obs-a-mut', P.A, { performer: [ref('Practitioner/acc-pr-na')] }));
  for (const n of [1, 2, 3, 4]) add(`A.obs_del${n}`, obs(`acc-obs-a-del${n}`, P.A));
  add('B.obs_del', obs('acc-obs-b-del', P.B));
  add('orphan_obs', obs('acc-obs-orphan', null));
  add('E.obs', obs('acc-obs-e', 'Patient/acc-pat-e'));
  add('A.docref', { resourceType: 'DocumentReference', id: 'acc-doc-a', status: 'current', subject: ref(P.A),
    content: [{ attachment: { contentType: 'text/plain', data: Buffer.from('note').toString('base64') } }] });
  add('A.qr', { resourceType: 'QuestionnaireResponse', id: 'acc-qr-a', status: 'completed', subject: ref(P.A), author: ref(P.A) });
  add('A.comm', { resourceType: 'Communication', id: 'acc-comm-a', status: 'completed', subject: ref(P.A), sender: ref(P.A),
    payload: [{ contentString: 'question' }] });
  add('A.appt', { resourceType: 'Appointment', id: 'acc-appt-a', status: 'proposed',
    participant: [{ actor: ref(P.A), status: 'needs-action' }] });

  // billing
  add('A.coverage', coverage('acc-cov-a', P.A));
  add('B.coverage', coverage('acc-cov-b', P.B));
  add('C.coverage', coverage('acc-cov-c', P.C));

  // consents
  add('A.consent_deny_dd', consent('acc-con-a-deny-dd', P.A, { type: 'deny', actor: actor('Practitioner/acc-pr-dd') }));
  add('A.consent_psy', consent('acc-con-a-psy', P.A, { type: 'deny', securityLabel: [PSY],
    provision: [{ type: 'permit', actor: actor('Practitioner/acc-pr-dc') }] }));
  add('A.consent_expired', consent('acc-con-a-expired', P.A, { type: 'deny', period: past, actor: actor('Practitioner/acc-pr-dc') }));
  add('A.consent_inactive', consent('acc-con-a-inactive', P.A, { type: 'deny', actor: actor('Practitioner/acc-pr-na') }, { status: 'inactive' }));
  add('B.consent_psy', consent('acc-con-b-psy', P.B, { type: 'deny', securityLabel: [PSY] }));
  add('B.consent_deny_db', consent('acc-con-b-deny-db', P.B, { type: 'deny', actor: actor('Practitioner/acc-pr-db') }));
  add('C.consent_research', consent('acc-con-c-research', P.C, { type: 'deny', purpose: [{ system: ACT_REASON, code: 'HRESCH' }] }));
  add('C.consent_org', consent('acc-con-c-org', P.C, { type: 'deny', actor: actor('Organization/acc-org-deny') }));
  add('C.consent_billing', consent('acc-con-c-billing', P.C, { type: 'deny', purpose: [{ system: ACT_REASON, code: 'HPAYMT' }] }));
  add('E.consent_toggle', consent('acc-con-e-toggle', 'Patient/acc-pat-e', { type: 'deny', actor: actor('Practitioner/acc-pr-dt') }));

  // audit_event is not made here: AuditEvents are written by the server only (loadFixtures)
  return out;
}

/** First Synthea resource of a type (optionally matching pred) in a loaded bundle. */
function firstOf(loaded, type, pred = () => true) {
  const e = loaded.find((x) => x.resource.resourceType === type && pred(x.resource));
  assert.ok(e, `a Synthea ${type} for the fixtures`);
  return e;
}
const hasCategory = (code) => (r) => (r.category ?? []).some((c) => (c.coding ?? []).some((x) => x.code === code));

/**
 * Loads the Synthea patients and the hand-made resources with the bootstrap
 * token. Returns fx: {sym: Map(symbol → {type, id}), synthea: {A: bundle...}}.
 */
export async function loadFixtures(server) {
  const sym = new Map();
  const put = (s, type, id) => sym.set(s, { type, id });
  const bundles = loadSyntheaBundles();
  const chosen = {};
  for (const [k, prefix] of Object.entries(SYNTHEA)) {
    chosen[k] = bundles.find((b) => b.file.startsWith(prefix));
    assert.ok(chosen[k], `the Synthea bundle for patient ${k}`);
  }
  const P = {};
  await Promise.all(Object.entries(chosen).map(async ([k, { raw, bundle }]) => {
    const r = await server.req('POST', '/fhir', { body: raw, timeout: 120_000 });
    assert.equal(r.status, 200, `transaction of Synthea patient ${k}: ${r.status} ${diag(r)}`);
    const loaded = r.json.entry.map((e, i) => {
      assert.match(e.response?.status ?? '', /^201/, `Synthea patient ${k} entry ${i}`);
      const loc = parseLocation(e.response.location);
      return { ...loc, resource: bundle.entry[i].resource };
    });
    const pat = firstOf(loaded, 'Patient');
    P[k] = `Patient/${pat.id}`;
    put(`${k}.patient`, 'Patient', pat.id);
    put(`${k}.obs_vitals`, 'Observation', firstOf(loaded, 'Observation', hasCategory('vital-signs')).id);
    put(`${k}.obs_lab`, 'Observation', firstOf(loaded, 'Observation', hasCategory('laboratory')).id);
    for (const [s, type] of [['condition', 'Condition'], ['encounter', 'Encounter'], ['medreq', 'MedicationRequest'],
      ['claim', 'Claim'], ['eob', 'ExplanationOfBenefit'], ['immunization', 'Immunization'], ['procedure', 'Procedure']]) {
      put(`${k}.${s}`, type, firstOf(loaded, type).id);
    }
    chosen[k].loaded = loaded;
  }));
  const made = handMade(P);
  await mapLimit(made, 4, async ([s, r]) => {
    const res = await server.req('PUT', `/fhir/${r.resourceType}/${r.id}`, { body: r });
    assert.equal(res.status, 201, `PUT ${r.resourceType}/${r.id}: ${res.status} ${diag(res)}`);
    put(s, r.resourceType, r.id);
  });
  // The audit trail is written by the server only (POST and PUT of AuditEvent answer 405): the
  // fixture audit_event is a record of the trail that names patient A (one of the writes above).
  const trail = await server.req('GET', `/fhir/AuditEvent?patient=${P.A.slice('Patient/'.length)}&_count=1`);
  assert.equal(trail.status, 200, `the trail's records naming patient A: ${trail.status} ${diag(trail)}`);
  const aeId = trail.json.entry?.[0]?.resource?.id;
  assert.ok(aeId, 'a record of the audit trail names patient A');
  put('audit_event', 'AuditEvent', aeId);
  return { sym, P, synthea: chosen, made: new Map(made) };
}

// ---------------------------------------------------------------- accounts and logins

const otpSeed = (uri) => base32Decode(new URL(uri).searchParams.get('secret'));

/** Creates one account through the admin API (bootstrap token); {id, seed}. */
export async function addAccount(server, fx, name, { role, link }) {
  const body = { username: username(name), role, password: PASSWORD };
  if (link) {
    const t = fx.sym.get(link);
    assert.ok(t, `link ${link}`);
    body[t.type === 'Patient' ? 'patient' : 'practitioner'] = t.id;
  }
  const r = await server.req('POST', '/admin/users', { headers: J, body });
  assert.equal(r.status, 201, `account ${name}: ${r.status} ${diag(r)}`);
  return { id: r.json.id, seed: r.json.otpauth ? otpSeed(r.json.otpauth) : null, role, link, username: body.username };
}

/** Staff TOTP codes: each login spends a step, so a second login in the same step uses the next one. */
function nextCode(acct) {
  const now = Math.floor(Date.now() / 30000);
  const step = Math.max(now, (acct.lastStep ?? -1) + 1);
  assert.ok(step <= now + 1, `account ${acct.username}: no TOTP step left in the window`);
  acct.lastStep = step;
  return totp(acct.seed, step * 30 + 1);
}

/** A portal session: {cookie, csrf}. */
export async function login(server, acct) {
  const body = { username: acct.username, password: PASSWORD };
  if (acct.seed) body.code = nextCode(acct);
  const r = await server.req('POST', '/auth/login', { token: '', headers: J, body });
  assert.equal(r.status, 200, `login ${acct.username}: ${r.status} ${diag(r)}`);
  const sc = [].concat(r.headers['set-cookie'] ?? []).find((c) => c.startsWith('__Host-'));
  assert.ok(sc, 'a session cookie');
  return { cookie: sc.split(';')[0], csrf: r.json.csrf_token };
}

/** Registers the SMART app client (public) and the backend clients; {app, backends: {name: {id, key}}}. */
export async function registerClients(server) {
  const app = await server.req('POST', '/admin/clients', { headers: J,
    body: { name: 'access test app', type: 'public', redirect_uris: [CB_URI], scope: APP_CLIENT_SCOPE } });
  assert.equal(app.status, 201, `app client: ${app.status} ${diag(app)}`);
  const backends = {};
  for (const [name, scope] of Object.entries(BACKENDS)) {
    backends[name] = await addBackend(server, (m, p, o) => server.req(m, p, o), `access ${name}`, scope);
  }
  return { app: { id: app.json.client_id ?? app.json.id }, backends };
}

/** Registers a backend client (RS384 key) through admin(method, path, opts): {id, key, scope, res}. */
export async function addBackend(server, admin, name, scope) {
  const key = rsaKeyPair();
  const jwks = { keys: [{ ...key.publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'RS384', use: 'sig' }] };
  const res = await admin('POST', '/admin/clients', { headers: J, body: { name, type: 'backend', jwks, scope } });
  assert.equal(res.status, 201, `backend client ${name}: ${res.status} ${diag(res)}`);
  return { id: res.json.client_id ?? res.json.id, key, scope, res };
}

const b64u = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');

/** A backend service access token and the answer that gave it: {token, res} (client_credentials
 * with an RS384 assertion; res carries the X-Request-Id). */
export async function backendTokenRes(server, client) {
  const now = Math.floor(Date.now() / 1000);
  const data = `${b64u({ alg: 'RS384', typ: 'JWT', kid: 'k1' })}.${b64u({
    iss: client.id, sub: client.id, aud: `${server.origin}/auth/token`, exp: now + 240, jti: crypto.randomUUID() })}`;
  const assertion = `${data}.${crypto.sign('sha384', Buffer.from(data), client.key.privateKey).toString('base64url')}`;
  const res = await server.req('POST', '/auth/token', { token: '', headers: FORM, body: new URLSearchParams({
    grant_type: 'client_credentials', scope: client.scope,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion,
  }).toString() });
  assert.equal(res.status, 200, `backend token: ${res.status} ${res.json?.error ?? ''}`);
  return { token: res.json.access_token, res };
}

/** A backend service access token. */
export async function backendToken(server, client) {
  return (await backendTokenRes(server, client)).token;
}

/** The authorization-code flow in a stand-in browser; the token response. */
export async function smartToken(server, clientId, acct, opts) {
  return (await smartTokenRes(server, clientId, acct, opts)).tok;
}

/** The same, with the token endpoint's answer: {tok, res} (res carries the X-Request-Id). */
export async function smartTokenRes(server, clientId, acct, { scope, patient }) {
  const b = new Browser({ ca: server.ca });
  const verifier = crypto.randomBytes(48).toString('base64url');
  const challenge = crypto.createHash('sha256').update(verifier).digest('base64url');
  const q = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: CB_URI, scope,
    state: crypto.randomBytes(8).toString('hex'), aud: server.base, code_challenge: challenge, code_challenge_method: 'S256' });
  const form = (html, what) => {
    const f = parseForms(html).filter((x) => x.method === 'post' && x.action.replace(/^https?:\/\/[^/]+/, '') === '/auth/authorize');
    assert.equal(f.length, 1, `${what}: the authorization form`);
    return f[0];
  };
  const page = await b.get(`${server.origin}/auth/authorize?${q}`);
  assert.equal(page.status, 200, `authorize page for ${acct.username}: ${page.status}`);
  const fields = { username: acct.username, password: PASSWORD };
  if (acct.seed) fields.code = nextCode(acct);
  const consentPage = await b.submit(page.url, form(page.body, 'login page'), { fields });
  assert.equal(consentPage.status, 200, `sign-in of ${acct.username}: ${consentPage.status}`);
  const done = await b.submit(consentPage.url, form(consentPage.body, 'consent page'), {
    fields: patient ? { patient } : {}, button: ['decision', 'approve'] });
  assert.equal(done.status, 302, `consent of ${acct.username}: ${done.status}`);
  const code = new URL(done.location).searchParams.get('code');
  assert.ok(code, `a code for ${acct.username}: ${new URL(done.location).searchParams.get('error')}`);
  const r = await server.req('POST', '/auth/token', { token: '', headers: { ...FORM, accept: 'application/json' },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: CB_URI, code_verifier: verifier, client_id: clientId }).toString() });
  assert.equal(r.status, 200, `token for ${acct.username}: ${r.status} ${r.json?.error ?? ''}`);
  return { tok: r.json, res: r, signIn: consentPage, consent: done };
}

/**
 * A principal: call(method, path, {body, headers}) with its credential.
 * kind 'session' (cookie + X-CSRF-Token on changes), 'bearer' (app or backend
 * token; a backend token is renewed when it is 4 minutes old).
 */
export function principal(server, name, cred) {
  const p = { name, ...cred };
  p.call = async (method, reqPath, o = {}) => {
    const headers = { ...(o.headers ?? {}) };
    let token = '';
    if (p.cookie) {
      headers.cookie = p.cookie;
      if (method !== 'GET' && method !== 'HEAD') headers['x-csrf-token'] = p.csrf;
    } else {
      if (p.renew && Date.now() - p.issued > 240_000) { p.token = await p.renew(); p.issued = Date.now(); }
      token = p.token;
    }
    return server.req(method, reqPath, { ...o, headers, token });
  };
  return p;
}

// ---------------------------------------------------------------- the matrix

/** Rows of the TSV: [{case_id, actor, interaction, target, expect, note, line}]. */
export function readMatrix(file = MATRIX_FILE) {
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  const head = lines[0].split('\t');
  assert.deepEqual(head, ['case_id', 'actor', 'interaction', 'target', 'expect', 'note'], 'matrix header');
  const rows = [];
  lines.slice(1).forEach((l, i) => {
    if (!l.trim() || l.startsWith('#')) return;
    const c = l.split('\t');
    assert.equal(c.length, 6, `matrix line ${i + 2}: six tab-separated columns`);
    rows.push({ case_id: c[0], actor: c[1], interaction: c[2], target: c[3], expect: c[4], note: c[5], line: i + 2 });
  });
  return rows;
}

/** {statuses: [..], opts: {total, set, minus, contains, excludes, subsetted}} */
export function parseExpect(s) {
  const [st, ...kv] = s.split(';');
  const opts = {};
  for (const x of kv) {
    const eq = x.indexOf('=');
    const k = eq < 0 ? x : x.slice(0, eq);
    const v = eq < 0 ? true : x.slice(eq + 1);
    opts[k] = v;
  }
  return { statuses: st.split('/').map(Number), opts };
}

/**
 * Runs matrix rows against a world:
 *   world = {server, fx, principals: Map(actor → principal), oracle (a backend principal), marks}
 */
export class MatrixRunner {
  constructor(world) {
    this.w = world;
    this.missing = new Map();
  }

  ref(s) {
    const t = this.w.fx.sym.get(s);
    assert.ok(t, `unknown fixture symbol ${s}`);
    return t;
  }

  /** {SYM} → Type/id, {SYM:id} → id, in a query. */
  subst(q) {
    return q.replace(/\{([A-Za-z0-9_.]+)(:id)?\}/g, (_, s, idOnly) => {
      const t = this.ref(s);
      return idOnly ? t.id : `${t.type}/${t.id}`;
    });
  }

  /** Target of read-like rows: a symbol or missing:Type. */
  target(s) {
    if (s.startsWith('missing:')) {
      const type = s.slice(8);
      if (!this.missing.has(type)) this.missing.set(type, `acc-missing-${crypto.randomBytes(6).toString('hex')}`);
      return { type, id: this.missing.get(type) };
    }
    return this.ref(s);
  }

  /** Every page of a search as a caller: {bundles, matches: [Type/id], all: [Type/id], first}. */
  async walk(p, caller, { pageSize } = {}) {
    const matches = [];
    const all = [];
    const bundles = [];
    let url = p;
    while (url) {
      let r;
      try {
        r = await caller.call('GET', url);
      } catch (e) { // the query may hold values (a chained name): not in the message
        throw new Error(`search request failed on page ${bundles.length + 1}: ${e.code ?? 'network error'}`);
      }
      if (bundles.length === 0 && r.status !== 200) return { status: r.status, res: r };
      assert.equal(r.status, 200, `page ${bundles.length + 1}: ${r.status} ${diag(r)}`);
      assert.equal(r.json?.resourceType, 'Bundle');
      bundles.push(r.json);
      const ms = (r.json.entry ?? []).filter((e) => e.search?.mode !== 'include' && e.search?.mode !== 'outcome');
      for (const e of r.json.entry ?? []) if (e.resource) all.push(`${e.resource.resourceType}/${e.resource.id}`);
      for (const e of ms) if (e.resource) matches.push(`${e.resource.resourceType}/${e.resource.id}`);
      const next = r.json.link?.find((l) => l.relation === 'next')?.url;
      if (pageSize && next) {
        assert.equal(ms.length, pageSize, `page ${bundles.length} holds ${ms.length} matches, not _count=${pageSize}, and has a next page: filtered after paging?`);
      }
      url = next ? (() => { const u = new URL(next); return u.pathname + u.search; })() : null;
      assert.ok(bundles.length < 200, 'paging does not end');
    }
    return { status: 200, bundles, matches, all, first: bundles[0] };
  }

  /** What the backend oracle finds for `set` (|| separated queries, union) less `minus` and excludes. */
  async expectedSet(opts) {
    const want = new Set();
    const q = (s) => s.split('||').map((x) => x.trim()).filter(Boolean);
    const addAll = async (s, into) => {
      for (const one of q(s)) {
        const u = this.subst(one);
        const w = await this.walk(`/fhir/${u}${u.includes('?') ? '&' : '?'}_count=1000`, this.w.oracle);
        assert.equal(w.status, 200, `oracle search ${one}: ${w.status}`);
        for (const m of w.matches) into.add(m);
      }
    };
    await addAll(opts.set, want);
    if (opts.minus) {
      const less = new Set();
      await addAll(opts.minus, less);
      for (const m of less) want.delete(m);
    }
    for (const s of this.symList(opts.excludes)) want.delete(this.key(s));
    return want;
  }

  symList(v) { return v && v !== true ? v.split(',').filter(Boolean) : []; }
  key(s) { const t = this.ref(s); return `${t.type}/${t.id}`; }

  async currentOf(t) {
    const r = await this.w.oracle.call('GET', `/fhir/${t.type}/${t.id}`);
    assert.equal(r.status, 200, `oracle read of ${t.type}/${t.id}: ${r.status}`);
    return r.json;
  }

  /** A new resource from a template name "Type[:variant][@P]" for caller. */
  template(spec, caller, caseId) {
    const [tv, pat] = spec.split('@');
    const [type, variant] = tv.split(':');
    const P = pat ? `Patient/${this.ref(`${pat}.patient`).id}` : null;
    const selfLink = ACCOUNTS[caller.account ?? caller.name]?.link;
    const self = selfLink ? `${this.ref(selfLink).type}/${this.ref(selfLink).id}` : 'Practitioner/acc-pr-spare';
    const marker = [{ system: 'urn:acc:made', value: caseId }];
    switch (type) {
      case 'Observation': {
        const r = obs('x', P, { identifier: marker });
        delete r.id;
        if (variant === 'self') r.performer = [ref(self)];
        if (variant === 'clinical') r.performer = [ref('Practitioner/acc-pr-dc')];
        return r;
      }
      case 'Condition': return { resourceType: 'Condition', identifier: marker, subject: ref(P), code: { text: 'finding' },
        clinicalStatus: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/condition-clinical', code: 'active' }] } };
      case 'Encounter': {
        const e = encounter('x', P, 'finished', variant === 'self' ? [self] : []);
        delete e.id;
        e.identifier = marker;
        return e;
      }
      case 'MedicationRequest': return { resourceType: 'MedicationRequest', identifier: marker, status: 'active', intent: 'order',
        medicationReference: ref('Medication/acc-med-main'), subject: ref(P) };
      case 'DocumentReference': return { resourceType: 'DocumentReference', identifier: marker, status: 'current', subject: ref(P),
        content: [{ attachment: { contentType: 'text/plain', data: Buffer.from('note').toString('base64') } }] };
      case 'Communication': return { resourceType: 'Communication', identifier: marker, status: 'completed', subject: ref(P), sender: ref(self),
        payload: [{ contentString: 'message' }] };
      case 'QuestionnaireResponse': return { resourceType: 'QuestionnaireResponse', identifier: marker[0], status: 'completed',
        subject: ref(P), author: ref(self) };
      case 'Appointment': return { resourceType: 'Appointment', identifier: marker, status: variant ?? 'proposed',
        participant: [{ actor: ref(P), status: 'needs-action' }] };
      case 'Consent': {
        const c = consent('x', P, { type: 'deny', purpose: [{ system: ACT_REASON, code: 'HRESCH' }] }, { identifier: marker });
        delete c.id;
        return c;
      }
      case 'Claim': return { resourceType: 'Claim', identifier: marker, status: 'active',
        type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/claim-type', code: 'professional' }] },
        use: 'claim', patient: ref(P), created: '2024-01-01', provider: ref('Organization/acc-org-main'),
        priority: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/processpriority', code: 'normal' }] },
        insurance: [{ sequence: 1, focal: true, coverage: ref(`Coverage/${this.ref(`${pat}.coverage`).id}`) }] };
      case 'Coverage': { const c = coverage('x', P); delete c.id; c.identifier = marker; return c; }
      case 'CareTeam': { const c = careTeam('x', P, ['Organization/acc-org-main']); delete c.id; c.identifier = marker; return c; }
      case 'AuditEvent': return { resourceType: 'AuditEvent', type: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110110' },
        recorded: '2024-01-02T00:00:00Z', agent: [{ requestor: true, who: { identifier: marker[0] } }], source: { observer: { display: 'x' } },
        ...(P ? { entity: [{ what: ref(P) }] } : {}) };
      case 'Organization': return { resourceType: 'Organization', identifier: marker, name: 'made org' };
      case 'Location': return { resourceType: 'Location', identifier: marker, name: 'made location' };
      case 'Practitioner': return { resourceType: 'Practitioner', identifier: marker, active: true };
      case 'PractitionerRole': return { resourceType: 'PractitionerRole', identifier: marker, practitioner: ref('Practitioner/acc-pr-spare') };
      case 'Medication': return { resourceType: 'Medication', identifier: marker, code: { text: 'made medication' } };
      case 'Questionnaire': return { resourceType: 'Questionnaire', identifier: marker, status: 'draft' };
      case 'Patient': return { resourceType: 'Patient', identifier: marker, active: true };
      default: throw new Error(`no template ${spec}`);
    }
  }

  /** A transaction scenario: the Bundle for caller. */
  transaction(name, caller, caseId) {
    const entry = (r) => ({ fullUrl: `urn:uuid:${crypto.randomUUID()}`, resource: r, request: { method: 'POST', url: r.resourceType } });
    const scen = {
      'tx:own_ok': ['Observation@A', 'DocumentReference@A'],
      'tx:mixed': ['Observation@A', 'Observation@B'],
      'tx:mixed_reversed': ['Observation@B', 'Observation@A'],
      'tx:forbidden_type': ['Observation@A', 'Claim@A'],
    }[name];
    assert.ok(scen, `no transaction scenario ${name}`);
    return { resourceType: 'Bundle', type: 'transaction', entry: scen.map((s, i) => entry(this.template(s, caller, `${caseId}-${i}`))) };
  }

  /** Runs one row; throws an assertion error with what went wrong (no PHI). */
  async run(row) {
    const caller = this.w.principals.get(row.actor);
    assert.ok(caller, `no principal ${row.actor} (its setup failed?)`);
    const { statuses, opts } = parseExpect(row.expect);
    const [tgt, mod] = row.interaction === 'search' ? [row.target] : row.target.split('#');
    let res;
    let searchDone;
    switch (row.interaction) {
      case 'read': case 'vread': case 'history': case 'everything': {
        if (row.interaction === 'history' && tgt.startsWith('type:')) { res = await caller.call('GET', `/fhir/${tgt.slice(5)}/_history`); break; }
        if (row.interaction === 'history' && tgt === 'system') { res = await caller.call('GET', '/fhir/_history'); break; }
        const t = this.target(tgt);
        const suffix = { read: '', vread: '/_history/1', history: '/_history', everything: '/$everything' }[row.interaction];
        if (row.interaction === 'everything') {
          searchDone = await this.walk(`/fhir/${t.type}/${t.id}/$everything`, caller);
          res = searchDone.res ?? { status: searchDone.status };
        } else {
          res = await caller.call('GET', `/fhir/${t.type}/${t.id}${suffix}`);
        }
        break;
      }
      case 'search': {
        const q = this.subst(tgt);
        const pageSize = Number(/[?&]_count=(\d+)/.exec(q)?.[1]) || undefined;
        searchDone = await this.walk(`/fhir/${q}`, caller, { pageSize });
        res = searchDone.res ?? { status: searchDone.status };
        break;
      }
      case 'create': {
        const body = this.template(tgt, caller, row.case_id);
        res = await caller.call('POST', `/fhir/${body.resourceType}`, { body });
        break;
      }
      case 'update': {
        const t = this.target(tgt);
        let body;
        if (tgt.startsWith('missing:')) body = this.template(t.type === 'Observation' ? 'Observation@A' : t.type, caller, row.case_id);
        else body = await this.currentOf(t);
        body.id = t.id;
        body.language = body.language === 'en' ? 'en-US' : 'en';
        if (mod) {
          const [k, v] = mod.split('=');
          body[k] = ref(`Patient/${this.ref(`${v}.patient`).id}`);
          if (k === 'subject' && body.performer?.some((p) => p.reference?.startsWith('Patient/'))) body.performer = [ref(`Patient/${this.ref(`${v}.patient`).id}`)];
        }
        res = await caller.call('PUT', `/fhir/${t.type}/${t.id}`, { body });
        break;
      }
      case 'delete': {
        const t = this.target(tgt);
        res = await caller.call('DELETE', `/fhir/${t.type}/${t.id}`);
        break;
      }
      case 'breakglass': {
        const t = this.target(tgt);
        const reason = mod === 'reason=none' ? null : mod === 'reason=short' ? 'too short' : `emergency access test ${row.case_id}`;
        res = await caller.call('POST', `/fhir/Patient/${t.id}/$break-glass`, {
          headers: FORM, body: reason === null ? '' : new URLSearchParams({ reason }).toString() });
        break;
      }
      case 'transaction': {
        res = await caller.call('POST', '/fhir', { body: this.transaction(tgt, caller, row.case_id) });
        break;
      }
      default: throw new Error(`unknown interaction ${row.interaction}`);
    }
    assert.ok(statuses.includes(res.status),
      `expected ${statuses.join('/')}, got ${res.status}${res.json ? `: ${diag(res)}` : ''}`);
    if (res.status >= 400) {
      if (res.json !== undefined || res.body) {
        assert.equal(res.json?.resourceType, 'OperationOutcome', `a ${res.status} answers an OperationOutcome`);
      }
      return;
    }
    await this.checkBody(row, res, searchDone, opts);
  }

  async checkBody(row, res, searchDone, opts) {
    if (row.interaction === 'read' || row.interaction === 'update') {
      const t = this.target(row.target.split('#')[0]);
      if (res.json) assert.equal(res.json.id, t.id, 'the answer is the resource asked for');
    }
    if (row.interaction === 'breakglass') {
      assert.equal(res.json?.resourceType, 'Parameters', 'break-glass answers a Parameters resource');
      const exp = res.json.parameter?.find((p) => p.name === 'expires');
      assert.ok(exp, 'a parameter expires');
      const when = Date.parse(exp.valueInstant ?? exp.valueDateTime ?? exp.valueString ?? '');
      assert.ok(when > Date.now(), 'expires is in the future');
    }
    if (opts.subsetted) {
      const list = searchDone ? searchDone.bundles.flatMap((b) => (b.entry ?? []).map((e) => e.resource)) : [res.json];
      for (const r of list) {
        const extra = Object.keys(r).filter((k) => !['resourceType', 'id', 'meta', 'identifier', 'name', 'birthDate', 'address'].includes(k));
        assert.deepEqual(extra, [], `${r.resourceType}/${r.id} shows only identifier, name, birthDate, address`);
        assert.ok((r.meta?.tag ?? []).some((t) => t.code === 'SUBSETTED'), `${r.resourceType}/${r.id} is marked SUBSETTED`);
      }
    }
    if (!searchDone) return;
    const isCount = /[?&]_summary=count/.test(row.target);
    const got = new Set(searchDone.matches);
    const everyEntry = new Set(searchDone.all);
    if (opts.total !== undefined) {
      const n = Number(opts.total);
      if (isCount) assert.equal(searchDone.first.total, n, `_summary=count total`);
      else {
        assert.equal(got.size, n, `number of matches`);
        if (typeof searchDone.first.total === 'number') assert.equal(searchDone.first.total, n, 'Bundle.total');
      }
    }
    if (opts.set) {
      const want = await this.expectedSet(opts);
      if (isCount) {
        assert.equal(searchDone.first.total, want.size, '_summary=count total equals what the caller may see');
      } else {
        const missing = [...want].filter((x) => !got.has(x));
        const extra = [...got].filter((x) => !want.has(x));
        assert.ok(missing.length === 0 && extra.length === 0,
          `expected ${want.size} matches, got ${got.size}: missing ${missing.slice(0, 5).join(' ')}${missing.length > 5 ? ' ...' : ''}; unexpected ${extra.slice(0, 5).join(' ')}${extra.length > 5 ? ' ...' : ''}`);
        if (typeof searchDone.first.total === 'number' && !/_include|_revinclude/.test(row.target)) {
          assert.equal(searchDone.first.total, want.size, 'Bundle.total equals what the caller may see');
        }
      }
    }
    for (const s of this.symList(opts.contains)) assert.ok(everyEntry.has(this.key(s)), `the answer holds ${s}`);
    for (const s of this.symList(opts.excludes)) assert.ok(!everyEntry.has(this.key(s)), `the answer must not hold ${s}`);
  }
}
