// make bench, authorization part: loads a care team (Practitioner bench-dr
// assigned to Patient bench-1) and 20 Observations of bench-1 plus 20 of
// another patient, makes a doctor account for bench-dr, logs it in (password
// and TOTP) and prints "doctor_cookie=<session cookie>", then signs the doctor
// in to a SMART app with user/Observation.rs and prints "doctor_token=<token>".
// The patient's SMART token comes from auth.mjs.
//   node bench/policy.mjs BIN DATA ORIGIN CACERT BOOTSTRAP_TOKEN
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import { base32Decode, totp } from '../tests/e2e/lib/totp.mjs';
import { launch, requester } from './smart.mjs';

const [bin, data, origin, cacert, boot] = process.argv.slice(2);
const agent = new https.Agent({ keepAlive: true, ca: fs.readFileSync(cacert) });
const request = requester(origin, agent);
const fhir = async (method, p, resource) => {
  const r = await request(method, p, JSON.stringify(resource), { authorization: `Bearer ${boot}`,
    'content-type': 'application/fhir+json' });
  if (r.status >= 300) throw new Error(`${method} ${p}: ${r.status}`);
};

await fhir('PUT', '/fhir/Patient/bench-2', { resourceType: 'Patient', id: 'bench-2' });
await fhir('PUT', '/fhir/Practitioner/bench-dr', { resourceType: 'Practitioner', id: 'bench-dr' });
await fhir('PUT', '/fhir/CareTeam/bench-ct', { resourceType: 'CareTeam', id: 'bench-ct', status: 'active',
  subject: { reference: 'Patient/bench-1' }, participant: [{ member: { reference: 'Practitioner/bench-dr' } }] });
for (const p of ['bench-1', 'bench-2']) {
  for (let i = 0; i < 20; i++) {
    await fhir('PUT', `/fhir/Observation/bench-obs-${p}-${i}`, { resourceType: 'Observation', id: `bench-obs-${p}-${i}`,
      status: 'final', category: [{ coding: [{ system: 'http://terminology.hl7.org/CodeSystem/observation-category', code: 'vital-signs' }] }],
      code: { coding: [{ system: 'http://loinc.org', code: '8867-4' }] }, subject: { reference: `Patient/${p}` },
      effectiveDateTime: `2024-01-${String(i + 1).padStart(2, '0')}T10:00:00Z`, valueQuantity: { value: 60 + i, unit: '/min' } });
  }
}
const pw = 'bench doctor passphrase long enough 9';
const out = spawnSync(bin, ['user', 'add', '--data', data, '--username', 'bench.doctor', '--role', 'doctor',
  '--practitioner', 'bench-dr', '--password-stdin'], { encoding: 'utf8', input: `${pw}\n` });
if (out.status !== 0) throw new Error(`user add: ${out.stderr}`);
const seed = base32Decode(/secret=([A-Z2-7]+)/.exec(out.stdout)[1]);
const login = await request('POST', '/auth/login', JSON.stringify({ username: 'bench.doctor', password: pw, code: totp(seed) }),
  { 'content-type': 'application/json' });
if (login.status !== 200) throw new Error(`doctor login: ${login.status}`);
const cookie = [].concat(login.headers['set-cookie']).find((c) => c.startsWith('__Host-cv_session=')).split(';')[0];
console.log(`doctor_cookie=${cookie}`);
// the same doctor through a SMART app with user/ scopes (a token: no session record to read)
const redirect = 'http://localhost:9/cb';
const scope = 'openid fhirUser user/Observation.rs';
const app = /client_id: (\w+)/.exec(spawnSync(bin, ['client', 'add', '--data', data, '--name', 'bench doctor app', '--type',
  'public', '--redirect-uri', redirect, '--scope', scope], { encoding: 'utf8' }).stdout)[1];
// a TOTP code works once: wait for the next step for the app's sign-in
await new Promise((r) => setTimeout(r, (30 - (Math.floor(Date.now() / 1000) % 30) + 1) * 1000));
const token = await launch(request, origin, { app, redirect, scope, username: 'bench.doctor', password: pw, code: totp(seed) });
console.log(`doctor_token=${token}`);
agent.destroy();
