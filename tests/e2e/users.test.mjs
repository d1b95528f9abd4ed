// `carevault user`: accounts made and managed from the command line while a
// server runs on the same data directory (embedded store, or the server's
// PostgreSQL database on the PostgreSQL pass). Weak passwords are refused
// with a reason, names are unique whatever their case, staff get TOTP MFA
// (an otpauth URI whose seed an authenticator app can use, ten recovery
// codes, a QR code file only the owner can read), patients are linked to an
// existing Patient, and no password or user name reaches the store's files.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { start } from './lib/server.mjs';
import { base32Decode, totp } from './lib/totp.mjs';

let server;
before(async () => { server = await start({ name: 'users' }); });
after(async () => {
  if (!server) return;
  try { await server.stop(); } finally { await server.cleanup(); }
});

const STRONG = 'correct horse battery staple 42';
const user = (args, input) => spawnSync(server.bin, ['user', ...args, '--data', server.dataDir],
  { encoding: 'utf8', timeout: 60_000, env: server.env, input: input ?? '' });
const list = () => {
  const r = user(['list']);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim().split('\n').filter(Boolean).map((l) => {
    const [id, username, role, status, mfa, link] = l.trim().split(/\s+/);
    return { id, username, role, status, mfa, link };
  });
};
const find = (name) => list().find((u) => u.username === name);

test('a weak password is refused with the reason, and no account is made', () => {
  for (const [pw, why] of [['short pw 1', /12 characters/], ['password1234', /common|breached/],
    ['xx-ops.lead-xx!', /user name/], ['my carevault login', /carevault/]]) {
    const r = user(['add', '--username', 'ops.lead', '--role', 'admin', '--password-stdin'], `${pw}\n`);
    assert.equal(r.status, 1, `refused: ${r.stderr}`);
    assert.match(r.stderr, why);
    assert.ok(!r.stderr.includes(pw) && !r.stdout.includes(pw), 'the password is never echoed');
  }
  assert.equal(find('ops.lead'), undefined);
  // a password on the command line is not an option
  const r = user(['add', '--username', 'ops.lead', '--role', 'admin', '--password', STRONG]);
  assert.equal(r.status, 2);
});

test('patients and clinicians are linked to resources that exist', async () => {
  let r = user(['add', '--username', 'pat1', '--role', 'patient', '--password-stdin'], `${STRONG}\n`);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /--patient/);
  r = user(['add', '--username', 'pat1', '--role', 'patient', '--patient', 'no-such', '--password-stdin'], `${STRONG}\n`);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /does not exist/);
  const put = await server.req('PUT', '/fhir/Patient/acct-p1', { body: { resourceType: 'Patient', id: 'acct-p1' } });
  assert.equal(put.status, 201);
  r = user(['add', '--username', 'pat1', '--role', 'patient', '--patient', 'acct-p1', '--password-stdin'], `${STRONG}\n`);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!/otpauth/.test(r.stdout), 'MFA is offered to patients, not imposed');
  assert.deepEqual([find('pat1').link, find('pat1').mfa], ['Patient/acct-p1', 'mfa:no']);
  r = user(['add', '--username', 'doc1', '--role', 'doctor', '--patient', 'acct-p1', '--password-stdin'], `${STRONG}\n`);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /Practitioner/);
});

// each change commits with its record (store.h, "a write's companion"): one record a command,
// naming the account; a refused one has the record of its refusal
test('each change is recorded once, naming the account; a refused one as refused', () => {
  const since = new Date().toISOString(); // the server's clock is this machine's
  const made = user(['add', '--username', 'rec.user', '--role', 'billing', '--password-stdin'], `${STRONG}\n`);
  assert.equal(made.status, 0, made.stderr);
  const id = /^user_id: (\S+)$/m.exec(made.stdout)[1];
  assert.equal(user(['disable', '--username', 'rec.user']).status, 0);
  assert.equal(user(['add', '--username', 'REC.user', '--role', 'billing', '--password-stdin'], `${STRONG}\n`).status, 1);
  const out = path.join(server.dataDir, '..', `users-export-${process.pid}.ndjson`);
  const x = spawnSync(server.bin, ['audit', 'export', '--data', server.dataDir, '--out', out],
    { encoding: 'utf8', timeout: 60_000, env: server.env });
  assert.equal(x.status, 0, x.stderr);
  const events = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    .filter((e) => e.recorded >= since); // this test's (the file's other tests make accounts too)
  fs.rmSync(out, { force: true });
  const of = (subtype) => events.filter((e) => e.subtype?.some((c) => c.code === subtype));
  const target = (e) => e.entity?.find((en) => en.what?.identifier?.value)?.what.identifier.value;
  const outcome = (e) => e.outcome;
  const created = of('user-created');
  assert.deepEqual(created.map(outcome), ['0', '4'], `one record of the creation, one of the refused one: ${created.length}`);
  assert.equal(target(created[0]), id, 'the creation names the new account');
  const disabled = of('user-disable');
  assert.equal(disabled.length, 1, 'one record of the change');
  assert.equal(target(disabled[0]), id);
});

test('disable, enable, revoke-sessions and reset-mfa', () => {
  const before = user(['add', '--username', 'nurse1', '--role', 'billing', '--password-stdin'], `${STRONG}\n`);
  assert.equal(before.status, 0, before.stderr);
  const firstUri = /^otpauth: (\S+)$/m.exec(before.stdout)[1];
  assert.equal(user(['disable', '--username', 'NURSE1']).status, 0);
  assert.equal(find('nurse1').status, 'disabled');
  assert.equal(user(['enable', '--username', 'nurse1']).status, 0);
  assert.equal(find('nurse1').status, 'enabled');
  assert.equal(user(['revoke-sessions', '--username', 'nurse1']).status, 0);
  const reset = user(['reset-mfa', '--username', 'nurse1']);
  assert.equal(reset.status, 0, reset.stderr);
  const newUri = /^otpauth: (\S+)$/m.exec(reset.stdout)[1];
  assert.notEqual(new URL(newUri).searchParams.get('secret'), new URL(firstUri).searchParams.get('secret'));
  const none = user(['disable', '--username', 'nobody']);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no such user/);
});

test('accounts are not in the FHIR API and not in the store files in plaintext', async () => {
  const hist = await server.req('GET', '/fhir/_history?_count=1000');
  assert.equal(hist.status, 200);
  assert.ok(!/~User|~Login|Ops\.Lead|argon2/i.test(hist.body), 'system history holds no account');
  if (process.env.CV_PG_BASE) return; // the PostgreSQL pass: the files are the database server's
  const files = fs.readdirSync(server.dataDir).filter((f) => f.startsWith('store.db'));
  assert.ok(files.length > 0);
  for (const f of files) {
    const raw = fs.readFileSync(path.join(server.dataDir, f));
    for (const needle of ['Ops.Lead', 'ops.lead', 'nurse1', 'argon2id', 'acct-p1', STRONG]) {
      assert.equal(raw.indexOf(Buffer.from(needle)), -1, `${f} holds a name, id or password in plaintext`);
    }
  }
});

test('the admin API: only the administrator, and it never shows a secret twice', async () => {
  const J = { 'content-type': 'application/json' };
  const noAuth = await server.req('GET', '/admin/users', { token: '' });
  assert.equal(noAuth.status, 401);
  const forged = await server.req('GET', '/admin/users', { token: `${server.token.slice(0, -2)}AA` });
  assert.equal(forged.status, 401);

  const weak = await server.req('POST', '/admin/users', { headers: J, body: { username: 'api.doc', role: 'admin', password: 'qwerty123456' } });
  assert.equal(weak.status, 422);
  assert.equal(weak.json?.resourceType, 'OperationOutcome');
  assert.ok(!weak.body.includes('qwerty123456'));
  assert.equal((await server.req('POST', '/admin/users', { headers: J, body: '{"username":' })).status, 400);
  assert.equal((await server.req('POST', '/admin/users', { headers: J, body: { username: 'x1', role: 'admin', password: 7 } })).status, 400);
  assert.equal((await server.req('POST', '/admin/users', { headers: J, body: { username: 'x1', role: 'king', password: STRONG } })).status, 422);

  const made = await server.req('POST', '/admin/users', { headers: J, body: { username: 'api.audit', role: 'auditor', password: STRONG } });
  assert.equal(made.status, 201, made.body);
  assert.match(made.headers['cache-control'] ?? '', /no-store/);
  assert.equal(made.headers.location, `/admin/users/${made.json.id}`);
  assert.equal(made.json.role, 'auditor');
  assert.equal(made.json.mfa, true);
  assert.match(made.json.otpauth, /^otpauth:\/\/totp\/carevault:api\.audit\?secret=[A-Z2-7]{32}&/);
  assert.equal(made.json.recovery_codes.length, 10);
  assert.ok(!/pwhash|argon2|totp_sealed/.test(made.body), 'no hash or sealed seed in the answer');

  const dup = await server.req('POST', '/admin/users', { headers: J, body: { username: 'API.AUDIT', role: 'auditor', password: STRONG } });
  assert.equal(dup.status, 409);

  const listed = await server.req('GET', '/admin/users');
  assert.equal(listed.status, 200);
  const names = listed.json.users.map((u) => u.username);
  assert.ok(names.includes('api.audit') && names.includes('pat1'), 'CLI and API accounts are one list');
  assert.ok(!/otpauth|recovery|argon2|secret/.test(listed.body), 'the list shows no secret');

  const one = await server.req('GET', `/admin/users/${made.json.id}`);
  assert.equal(one.status, 200);
  assert.equal(one.json.username, 'api.audit');
  assert.equal((await server.req('GET', `/admin/users/${'0'.repeat(32)}`)).status, 404);
  assert.equal((await server.req('GET', '/admin/users/not-an-id')).status, 404);

  const dis = await server.req('POST', `/admin/users/${made.json.id}/disable`);
  assert.equal(dis.status, 200);
  assert.equal(dis.json.disabled, true);
  assert.equal(find('api.audit').status, 'disabled', 'the CLI sees what the API did');
  const reset = await server.req('POST', `/admin/users/${made.json.id}/reset-mfa`);
  assert.equal(reset.status, 200);
  assert.notEqual(reset.json.otpauth, made.json.otpauth);
  assert.equal((await server.req('POST', `/admin/users/${made.json.id}/promote`)).status, 404);
});

test('the first administrator gets MFA, retires the bootstrap token, and administers by logging in', async () => {
  const qr = path.join(server.tmpDir, 'admin-qr.svg');
  const r = user(['add', '--username', 'Ops.Lead', '--role', 'admin', '--password-stdin', '--qr', qr], `${STRONG}\n`);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^user_id: [0-9a-f]{32}$/m);
  const uri = /^otpauth: (\S+)$/m.exec(r.stdout)?.[1];
  assert.ok(uri, 'the otpauth URI is printed');
  const u = new URL(uri);
  assert.equal(u.protocol, 'otpauth:');
  assert.equal(u.host, 'totp');
  assert.equal(decodeURIComponent(u.pathname.slice(1)), 'carevault:Ops.Lead');
  assert.equal(u.searchParams.get('issuer'), 'carevault');
  assert.equal(u.searchParams.get('digits'), '6');
  assert.equal(u.searchParams.get('period'), '30');
  const seed = base32Decode(u.searchParams.get('secret'));
  assert.equal(seed.length, 20);
  assert.match(totp(seed), /^\d{6}$/);
  const codes = r.stdout.match(/^ {2}[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}$/gm) ?? [];
  assert.equal(new Set(codes).size, 10, 'ten distinct recovery codes');
  assert.equal(fs.statSync(qr).mode & 0o077, 0, 'the QR code file is private');
  assert.match(fs.readFileSync(qr, 'utf8'), /^<svg[\s\S]*<path[\s\S]*<\/svg>\s*$/);
  assert.ok(!r.stdout.includes(STRONG));
  const listed = find('Ops.Lead');
  assert.deepEqual([listed.role, listed.status, listed.mfa, listed.link], ['admin', 'enabled', 'mfa:yes', '-']);
  // from now on the bootstrap token opens nothing, at once
  assert.equal((await server.req('GET', '/fhir/Patient/acct-p1')).status, 401);
  assert.equal((await server.req('GET', '/admin/users')).status, 401);
  // the administrator logs in (password and TOTP) and uses the admin API with the session
  const login = await server.req('POST', '/auth/login', { token: '', headers: { 'content-type': 'application/json' },
    body: { username: 'ops.lead', password: STRONG, code: totp(seed) } });
  assert.equal(login.status, 200, login.body);
  const cookie = [].concat(login.headers['set-cookie'])[0].split(';')[0];
  const csrf = login.json.csrf_token;
  const listedApi = await server.req('GET', '/admin/users', { token: '', headers: { cookie } });
  assert.equal(listedApi.status, 200);
  assert.ok(listedApi.json.users.some((x) => x.username === 'Ops.Lead'));
  const J = { 'content-type': 'application/json', cookie };
  const noCsrf = await server.req('POST', '/admin/users', { token: '', headers: J, body: { username: 'ops.two', role: 'auditor', password: STRONG } });
  assert.equal(noCsrf.status, 403, 'a cookie-authenticated change needs its CSRF token');
  const made = await server.req('POST', '/admin/users', { token: '', headers: { ...J, 'x-csrf-token': csrf }, body: { username: 'ops.two', role: 'auditor', password: STRONG } });
  assert.equal(made.status, 201, made.body);
  // an administrator's session reaches no clinical data
  assert.equal((await server.req('GET', '/fhir/Patient/acct-p1', { token: '', headers: { cookie } })).status, 403);
  if (process.env.CV_PG_BASE) return;
  for (const f of fs.readdirSync(server.dataDir).filter((f) => f.startsWith('store.db'))) {
    const raw = fs.readFileSync(path.join(server.dataDir, f));
    for (const needle of ['Ops.Lead', 'ops.lead', 'ops.two']) assert.equal(raw.indexOf(Buffer.from(needle)), -1, `${f} holds ${needle}`);
  }
});

test('user names are unique whatever their case', () => {
  const r = user(['add', '--username', 'OPS.LEAD', '--role', 'auditor', '--password-stdin'], `${STRONG} x\n`);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /taken/);
  assert.equal(list().filter((u) => u.username.toLowerCase() === 'ops.lead').length, 1);
});
