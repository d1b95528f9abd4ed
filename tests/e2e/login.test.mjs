// Portal login and sessions, attacked: wrong passwords and unknown names get
// one and the same answer, staff need a TOTP code that works once, recovery
// codes work once, the session cookie is __Host-, Secure, HttpOnly and
// SameSite=Strict, changes need the CSRF token, logout (one or everywhere),
// disabling the account and the idle and absolute timeouts end sessions at
// once, repeated failures are throttled with Retry-After, and a patient's
// session reaches the patient's own record and nobody else's.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { start } from './lib/server.mjs';
import { base32Decode, totp } from './lib/totp.mjs';

const STRONG = 'a long and unusual passphrase 7';
const J = { 'content-type': 'application/json' };
let server;
let adminSeed;
let adminCodes;

const cli = (s, args, input = '') => spawnSync(s.bin, ['user', ...args, '--data', s.dataDir],
  { encoding: 'utf8', timeout: 60_000, env: s.env, input });

async function makeUsers(s) {
  const put = await s.req('PUT', '/fhir/Patient/login-p1', { body: { resourceType: 'Patient', id: 'login-p1' } });
  assert.ok([200, 201].includes(put.status));
  let r = cli(s, ['add', '--username', 'pat.login', '--role', 'patient', '--patient', 'login-p1', '--password-stdin'], `${STRONG}\n`);
  assert.equal(r.status, 0, r.stderr);
  r = cli(s, ['add', '--username', 'lead.admin', '--role', 'admin', '--password-stdin'], `${STRONG}\n`);
  assert.equal(r.status, 0, r.stderr);
  const uri = new URL(/^otpauth: (\S+)$/m.exec(r.stdout)[1]);
  return { seed: base32Decode(uri.searchParams.get('secret')), codes: r.stdout.match(/[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}-[A-Z2-9]{4}/g) };
}

before(async () => {
  server = await start({ name: 'login' });
  ({ seed: adminSeed, codes: adminCodes } = await makeUsers(server));
});
after(async () => {
  if (!server) return;
  try { await server.stop(); } finally { await server.cleanup(); }
});

const login = (s, body) => s.req('POST', '/auth/login', { token: '', headers: J, body });
const cookieOf = (r) => {
  const sc = [].concat(r.headers['set-cookie'] ?? []).find((c) => c.startsWith('__Host-cv_session='));
  return sc ? sc.split(';')[0] : undefined;
};
const withCookie = (s, method, path, cookie, extra = {}) => s.req(method, path, { token: '', ...extra, headers: { cookie, ...(extra.headers ?? {}) } });
const diag = (r) => r.json?.issue?.map((i) => i.diagnostics).join(' | ');

test('a patient logs in: a __Host- cookie that scripts and other sites cannot use', async () => {
  const r = await login(server, { username: 'PAT.LOGIN', password: STRONG });
  assert.equal(r.status, 200, diag(r));
  const sc = [].concat(r.headers['set-cookie'])[0];
  assert.match(sc, /^__Host-cv_session=cvs_[A-Za-z0-9_-]{43}; /);
  for (const attr of ['Path=/', 'Secure', 'HttpOnly', 'SameSite=Strict']) assert.ok(sc.includes(attr), `cookie has ${attr}`);
  assert.ok(!/Domain=/i.test(sc));
  assert.match(r.headers['cache-control'] ?? '', /no-store/);
  assert.equal(r.json.user.role, 'patient');
  assert.equal(r.json.user.link, 'Patient/login-p1');
  assert.match(r.json.csrf_token, /^[A-Za-z0-9_-]{43}$/);
  assert.ok(!r.body.includes(sc.split(';')[0].split('=')[1]), 'the session id is only in the cookie');
  const me = await withCookie(server, 'GET', '/auth/session', cookieOf(r));
  assert.equal(me.status, 200);
  assert.equal(me.json.user.username, 'pat.login');
  assert.equal(me.json.csrf_token, r.json.csrf_token);
  // through the session the patient reads their own record, and nobody else's
  const data = await withCookie(server, 'GET', '/fhir/Patient/login-p1', cookieOf(r));
  assert.equal(data.status, 200, diag(data));
  const other = await withCookie(server, 'GET', '/fhir/Patient/login-nobody', cookieOf(r));
  assert.equal(other.status, 404);
  const adm = await withCookie(server, 'GET', '/admin/users', cookieOf(r));
  assert.equal(adm.status, 403);
  // logging in again with a session cookie in the jar is a login, not a forged change
  const again = await withCookie(server, 'POST', '/auth/login', cookieOf(r), { headers: J, body: { username: 'pat.login', password: STRONG } });
  assert.equal(again.status, 200, diag(again));
  assert.notEqual(cookieOf(again), cookieOf(r), 'a new session id at every login');
});

test('wrong password and unknown user get the very same answer', async () => {
  const wrong = await login(server, { username: 'pat.login', password: `${STRONG}x` });
  const unknown = await login(server, { username: 'nobody.here', password: STRONG });
  assert.equal(wrong.status, 401);
  assert.equal(unknown.status, 401);
  assert.equal(diag(wrong), diag(unknown));
  assert.equal(cookieOf(wrong), undefined);
  assert.ok(!wrong.body.includes(STRONG));
  for (const bad of [{}, { username: 'pat.login' }, { username: 1, password: STRONG }, 'not json']) {
    assert.equal((await login(server, bad)).status, 400);
  }
  const forged = await withCookie(server, 'GET', '/auth/session', `__Host-cv_session=cvs_${'A'.repeat(43)}`);
  assert.equal(forged.status, 401);
});

test('staff need a TOTP code, and each code works once', async () => {
  const noCode = await login(server, { username: 'lead.admin', password: STRONG });
  assert.equal(noCode.status, 401);
  assert.match(diag(noCode), /second factor/);
  const badCode = await login(server, { username: 'lead.admin', password: STRONG, code: totp(adminSeed, Date.now() / 1000 - 300) });
  assert.equal(badCode.status, 401);
  assert.doesNotMatch(diag(badCode), /second factor/);
  const code = totp(adminSeed);
  const ok = await login(server, { username: 'lead.admin', password: STRONG, code });
  assert.equal(ok.status, 200, diag(ok));
  assert.equal(ok.json.user.role, 'admin');
  const replay = await login(server, { username: 'lead.admin', password: STRONG, code });
  assert.equal(replay.status, 401, 'a replayed code is refused');
  // a wrong password with the right code tells nothing either
  const wrongPw = await login(server, { username: 'lead.admin', password: 'not it at all 123', code: totp(adminSeed) });
  assert.equal(wrongPw.status, 401);
  assert.doesNotMatch(diag(wrongPw), /second factor/);
});

test('a recovery code works once', async () => {
  const rc = adminCodes[3].toLowerCase();
  const first = await login(server, { username: 'lead.admin', password: STRONG, recovery_code: rc });
  assert.equal(first.status, 200, diag(first));
  const again = await login(server, { username: 'lead.admin', password: STRONG, recovery_code: adminCodes[3] });
  assert.equal(again.status, 401);
});

test('changes need the CSRF token; logout ends the session', async () => {
  const r = await login(server, { username: 'pat.login', password: STRONG });
  const cookie = cookieOf(r);
  assert.equal((await withCookie(server, 'POST', '/auth/logout', cookie)).status, 403);
  assert.equal((await withCookie(server, 'POST', '/auth/logout', cookie, { headers: { 'x-csrf-token': 'A'.repeat(43) } })).status, 403);
  assert.equal((await withCookie(server, 'GET', '/auth/session', cookie)).status, 200, 'still logged in');
  const out = await withCookie(server, 'POST', '/auth/logout', cookie, { headers: { 'x-csrf-token': r.json.csrf_token } });
  assert.equal(out.status, 204);
  assert.match([].concat(out.headers['set-cookie'])[0], /^__Host-cv_session=; .*Max-Age=0/);
  assert.equal((await withCookie(server, 'GET', '/auth/session', cookie)).status, 401);
});

test('the session list, and logout everywhere', async () => {
  const a = await login(server, { username: 'pat.login', password: STRONG });
  const b = await login(server, { username: 'pat.login', password: STRONG });
  const list = await withCookie(server, 'GET', '/auth/sessions', cookieOf(a));
  assert.equal(list.status, 200);
  assert.ok(list.json.sessions.length >= 2);
  assert.equal(list.json.sessions.filter((x) => x.current).length, 1);
  assert.ok(!list.body.includes(cookieOf(a).split('=')[1]) && !list.body.includes(cookieOf(b).split('=')[1]));
  const all = await withCookie(server, 'POST', '/auth/logout-all', cookieOf(a), { headers: { 'x-csrf-token': a.json.csrf_token } });
  assert.equal(all.status, 204);
  assert.equal((await withCookie(server, 'GET', '/auth/session', cookieOf(a))).status, 401);
  assert.equal((await withCookie(server, 'GET', '/auth/session', cookieOf(b))).status, 401);
});

test('disabling the account ends its sessions at once and refuses its logins', async () => {
  const r = await login(server, { username: 'pat.login', password: STRONG });
  assert.equal(r.status, 200);
  assert.equal(cli(server, ['disable', '--username', 'pat.login']).status, 0);
  assert.equal((await withCookie(server, 'GET', '/auth/session', cookieOf(r))).status, 401);
  const again = await login(server, { username: 'pat.login', password: STRONG });
  assert.equal(again.status, 401);
  assert.equal(diag(again), diag(await login(server, { username: 'nobody.here', password: STRONG })));
  assert.equal(cli(server, ['enable', '--username', 'pat.login']).status, 0);
  assert.equal((await login(server, { username: 'pat.login', password: STRONG })).status, 200);
});

test('repeated failures are throttled, also for names without an account', async () => {
  let throttled;
  for (let i = 0; i < 8 && !throttled; i++) {
    const r = await login(server, { username: 'ghost.user', password: `guess number ${i} x` });
    if (r.status === 429) throttled = r;
    else assert.equal(r.status, 401);
  }
  assert.ok(throttled, 'the sixth or so failure is throttled');
  assert.ok(Number(throttled.headers['retry-after']) >= 1);
  assert.equal(throttled.json?.resourceType, 'OperationOutcome');
  // another account from the same address is not locked by it
  assert.equal((await login(server, { username: 'pat.login', password: STRONG })).status, 200);
});

test('idle and absolute timeouts end sessions', async () => {
  const s = await start({ name: 'login-timeouts', env: { CAREVAULT_SESSION_IDLE: '2', CAREVAULT_SESSION_ABSOLUTE: '4' } });
  try {
    await makeUsers(s);
    const idle = await login(s, { username: 'pat.login', password: STRONG });
    assert.equal(idle.status, 200);
    await new Promise((res) => setTimeout(res, 3000));
    assert.equal((await withCookie(s, 'GET', '/auth/session', cookieOf(idle))).status, 401, 'idle for longer than 2 s');
    const busy = await login(s, { username: 'pat.login', password: STRONG });
    for (let i = 0; i < 3; i++) {
      await new Promise((res) => setTimeout(res, 1000));
      assert.equal((await withCookie(s, 'GET', '/auth/session', cookieOf(busy))).status, 200, 'in use: still valid');
    }
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal((await withCookie(s, 'GET', '/auth/session', cookieOf(busy))).status, 401, 'older than 4 s');
  } finally {
    try { await s.stop(); } finally { await s.cleanup(); }
  }
});
