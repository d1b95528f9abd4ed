// The admin API for OAuth clients: only the administrator (here the bootstrap
// token; this suite makes no admin account) registers, lists, reads, disables
// and enables clients. A backend client registered through the API with a
// JWKS made by Node's crypto gets a token for an RS384 assertion and reads
// FHIR data; disabling it through the API stops that token at once. A
// confidential client's secret is shown once, never its hash; bad values are
// refused with 422 and the reason, malformed bodies with 400, unknown ids
// with 404, no credential with 401 and a logged-in non-admin with 403.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { rsaKeyPair } from './lib/keys.mjs';
import { start } from './lib/server.mjs';
import { base32Decode, totp } from './lib/totp.mjs';

const J = { 'content-type': 'application/json' };
const STRONG = 'an auditor passphrase of some length 9';
const APP_SCOPE = 'launch/patient openid fhirUser offline_access patient/*.rs';
const rsa = rsaKeyPair();
const jwks = { keys: [{ ...rsa.publicKey.export({ format: 'jwk' }), kid: 'rsa1', alg: 'RS384', use: 'sig' }] };
let server;

const b64u = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
const diag = (r) => r.json?.issue?.map((i) => i.diagnostics).join(' | ') ?? '';
const create = (body, o = {}) => server.req('POST', '/admin/clients', { headers: J, body, ...o });
const cli = (cmd, args, input = '') => spawnSync(server.bin, [cmd, ...args, '--data', server.dataDir],
  { encoding: 'utf8', timeout: 60_000, env: server.env, input });

function assertion(client) {
  const now = Math.floor(Date.now() / 1000);
  const data = `${b64u({ alg: 'RS384', typ: 'JWT', kid: 'rsa1' })}.${b64u({
    iss: client, sub: client, aud: `${server.origin}/auth/token`, exp: now + 240, jti: crypto.randomUUID() })}`;
  return `${data}.${crypto.sign('sha384', Buffer.from(data), rsa.privateKey).toString('base64url')}`;
}
const getToken = (client, scope) => server.req('POST', '/auth/token', {
  token: '', headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({
    grant_type: 'client_credentials', scope,
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion(client),
  }).toString(),
});

before(async () => { server = await start({ name: 'clients' }); });
after(async () => {
  if (!server) return;
  try { await server.stop(); } finally { await server.cleanup(); }
});

test('no credential: 401; a logged-in non-admin: 403', async () => {
  assert.equal((await server.req('GET', '/admin/clients', { token: '' })).status, 401);
  assert.equal((await create({ name: 'x', type: 'backend', jwks, scope: 'system/*.rs' }, { token: '' })).status, 401);
  assert.equal((await server.req('GET', `/admin/clients/${'0'.repeat(32)}`, { token: '' })).status, 401);

  const r = cli('user', ['add', '--username', 'aud.clients', '--role', 'auditor', '--password-stdin'], `${STRONG}\n`);
  assert.equal(r.status, 0, r.stderr);
  const seed = base32Decode(new URL(/^otpauth: (\S+)$/m.exec(r.stdout)[1]).searchParams.get('secret'));
  const login = await server.req('POST', '/auth/login', { token: '', headers: J,
    body: { username: 'aud.clients', password: STRONG, code: totp(seed) } });
  assert.equal(login.status, 200, diag(login));
  const cookie = [].concat(login.headers['set-cookie']).find((c) => c.startsWith('__Host-cv_session=')).split(';')[0];
  const csrf = login.json.csrf_token;
  const as = (method, p, extra = {}) => server.req(method, p, { token: '', ...extra, headers: { cookie, 'x-csrf-token': csrf, ...(extra.headers ?? {}) } });
  assert.equal((await as('GET', '/auth/session')).status, 200, 'the session works');
  assert.equal((await as('GET', '/admin/clients')).status, 403);
  assert.equal((await as('POST', '/admin/clients', { headers: J, body: { name: 'x', type: 'backend', jwks, scope: 'system/*.rs' } })).status, 403);
  assert.equal((await server.req('GET', '/admin/clients')).json.clients.length, 0, 'nothing was registered');
});

test('a backend client registered through the API gets a token; disabling it stops the token at once', async () => {
  const made = await create({ name: 'api backend', type: 'backend', jwks, scope: 'system/*.rs' });
  assert.equal(made.status, 201, made.body);
  assert.match(made.headers['cache-control'] ?? '', /no-store/);
  const id = made.json.client_id;
  assert.match(id, /^[0-9a-f]{32}$/);
  assert.equal(made.headers.location, `/admin/clients/${id}`);
  assert.deepEqual({ ...made.json, created_us: 0 }, {
    client_id: id, name: 'api backend', type: 'backend', redirect_uris: [], scope: 'system/*.rs',
    disabled: false, created_us: 0, jwks_keys: 1,
  });
  assert.ok(made.json.created_us > 1.7e15);
  assert.ok(!/client_secret|secret_sha256|"n"|"kty"/.test(made.body), 'no secret and no key material in the answer');

  const put = await server.req('PUT', '/fhir/Patient/cl-p1', { body: { resourceType: 'Patient', id: 'cl-p1', active: true } });
  assert.ok([200, 201].includes(put.status), put.body);
  const tok = await getToken(id, 'system/*.rs');
  assert.equal(tok.status, 200, tok.body);
  assert.equal(tok.json.scope, 'system/*.rs');
  const t = tok.json.access_token;
  assert.equal((await server.req('GET', '/fhir/Patient/cl-p1', { token: t })).status, 200);
  assert.equal((await server.req('GET', '/admin/clients', { token: t })).status, 403, 'a client may not manage clients');

  const dis = await server.req('POST', `/admin/clients/${id}/disable`);
  assert.equal(dis.status, 200, dis.body);
  assert.equal(dis.json.disabled, true);
  assert.equal((await server.req('GET', '/fhir/Patient/cl-p1', { token: t })).status, 401, 'the token stops at once');
  assert.equal((await getToken(id, 'system/*.rs')).status, 401, 'and no new token');
  assert.equal((await server.req('GET', `/admin/clients/${id}`)).json.disabled, true);
  assert.match(cli('client', ['list']).stdout, new RegExp(`^${id} .*disabled`, 'm'), 'the CLI sees what the API did');

  const en = await server.req('POST', `/admin/clients/${id}/enable`);
  assert.equal(en.status, 200);
  assert.equal(en.json.disabled, false);
  assert.equal((await server.req('GET', '/fhir/Patient/cl-p1', { token: t })).status, 200);

  const one = await server.req('GET', `/admin/clients/${id}`);
  assert.equal(one.status, 200);
  assert.equal(one.json.jwks_keys, 1);
  const list = await server.req('GET', '/admin/clients');
  assert.equal(list.status, 200);
  assert.ok(list.json.clients.some((c) => c.client_id === id && c.name === 'api backend'));
  assert.equal((await server.req('POST', `/admin/clients/${id}/promote`)).status, 404);
  assert.equal((await server.req('GET', `/admin/clients/${'0'.repeat(32)}`)).status, 404);
  assert.equal((await server.req('GET', '/admin/clients/not-an-id')).status, 404);
  assert.equal((await server.req('POST', `/admin/clients/${'0'.repeat(32)}/disable`)).status, 404);
});

test('a confidential client\'s secret is shown once; a public client has none', async () => {
  const conf = await create({ name: 'web app', type: 'confidential', redirect_uris: ['https://app.example/cb', 'http://localhost:3000/cb'], scope: APP_SCOPE });
  assert.equal(conf.status, 201, conf.body);
  assert.match(conf.headers['cache-control'] ?? '', /no-store/);
  assert.match(conf.json.client_secret, /^cvc_[A-Za-z0-9_-]{20,}$/);
  assert.deepEqual(conf.json.redirect_uris, ['https://app.example/cb', 'http://localhost:3000/cb']);
  assert.equal(conf.json.type, 'confidential');
  assert.equal(conf.json.scope, APP_SCOPE);
  assert.equal(conf.json.jwks_keys, undefined, 'jwks_keys is for backend clients');
  const again = await server.req('GET', `/admin/clients/${conf.json.client_id}`);
  assert.equal(again.status, 200);
  assert.ok(!again.body.includes(conf.json.client_secret) && !/secret/.test(again.body), 'not shown again');
  const list = await server.req('GET', '/admin/clients');
  assert.ok(!list.body.includes(conf.json.client_secret) && !/secret/.test(list.body));

  const pub = await create({ name: 'mobile app', type: 'public', redirect_uris: ['https://m.example/cb'], scope: APP_SCOPE });
  assert.equal(pub.status, 201, pub.body);
  assert.equal(pub.json.client_secret, undefined);
  assert.equal(pub.json.type, 'public');
});

test('the CLI registers public and confidential clients and prints the secret once', () => {
  let r = cli('client', ['add', '--name', 'cli app', '--type', 'confidential', '--redirect-uri', 'https://c.example/cb',
    '--redirect-uri', 'https://c.example/cb2', '--scope', APP_SCOPE]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^client_id: [0-9a-f]{32}$/m);
  assert.equal((r.stdout.match(/^client_secret: cvc_\S+$/gm) ?? []).length, 1);
  r = cli('client', ['add', '--name', 'cli public', '--type', 'public', '--redirect-uri', 'https://p.example/cb', '--scope', APP_SCOPE]);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!/client_secret/.test(r.stdout));
  assert.ok(!/client_secret/.test(cli('client', ['list']).stdout));
  // --jwks-url is fetched at registration (jwksurl.test.mjs); a host that does not resolve is refused with the reason
  r = cli('client', ['add', '--name', 'far keys', '--type', 'backend', '--jwks-url', 'https://k.invalid/jwks', '--scope', 'system/*.rs']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /jwks_url: the jwks could not be fetched/);
  const help = spawnSync(server.bin, ['client', '--help'], { encoding: 'utf8', env: server.env });
  assert.match(help.stdout, /--type public\|confidential --redirect-uri URI/);
  assert.match(help.stdout, /--jwks-url URL/);
  assert.ok(!/come with the SMART app launch/.test(help.stdout));
});

test('bad values: 422 with the reason; malformed bodies: 400', async () => {
  const before = (await server.req('GET', '/admin/clients')).json.clients.length;
  const privJwks = { keys: [{ ...rsa.privateKey.export({ format: 'jwk' }), kid: 'x' }] };
  const cases = [
    ['public client without redirect_uris', { name: 'a', type: 'public', scope: APP_SCOPE }, /redirect URI/],
    ['redirect URI with a fragment', { name: 'a', type: 'public', redirect_uris: ['https://a.example/cb#x'], scope: APP_SCOPE }, /fragment/],
    ['plain http redirect', { name: 'a', type: 'confidential', redirect_uris: ['http://a.example/cb'], scope: APP_SCOPE }, /https/],
    ['unknown type', { name: 'a', type: 'robot', scope: 'system/*.rs' }, /public, confidential or backend/],
    ['backend without jwks', { name: 'a', type: 'backend', scope: 'system/*.rs' }, /public keys/],
    ['jwks with a private key', { name: 'a', type: 'backend', jwks: privJwks, scope: 'system/*.rs' }, /private|public/i],
    ['jwks without keys', { name: 'a', type: 'backend', jwks: { keys: [] }, scope: 'system/*.rs' }, /key/],
    ['an app with a system scope', { name: 'a', type: 'public', redirect_uris: ['https://a.example/cb'], scope: 'system/*.rs' }, /system/],
    ['a backend with a patient scope', { name: 'a', type: 'backend', jwks, scope: 'patient/*.rs' }, /system/],
    ['malformed scope', { name: 'a', type: 'backend', jwks, scope: 'system/*.xyz' }, /scope/],
    ['no scope', { name: 'a', type: 'backend', jwks }, /scope/],
    ['bad name', { name: 'a<script>', type: 'backend', jwks, scope: 'system/*.rs' }, /name/],
    ['too many redirect URIs', { name: 'a', type: 'public', redirect_uris: Array.from({ length: 9 }, (_, i) => `https://a.example/${i}`), scope: APP_SCOPE }, /at most/],
  ];
  for (const [what, body, why] of cases) {
    const r = await create(body);
    assert.equal(r.status, 422, `${what}: ${r.body}`);
    assert.equal(r.json?.resourceType, 'OperationOutcome', what);
    assert.match(diag(r), why, what);
  }
  const jwksPriv = await create({ name: 'a', type: 'backend', jwks: privJwks, scope: 'system/*.rs' });
  assert.ok(!jwksPriv.body.includes(privJwks.keys[0].d), 'the private key is not echoed');

  for (const [what, body] of [
    ['broken JSON', '{"name":'], ['an array', '[]'], ['no body', undefined],
    ['name not a string', { name: 7, type: 'backend', jwks, scope: 'system/*.rs' }],
    ['no type', { name: 'a', jwks, scope: 'system/*.rs' }],
    ['redirect_uris not an array', { name: 'a', type: 'public', redirect_uris: 'https://a.example/cb', scope: APP_SCOPE }],
    ['a redirect URI not a string', { name: 'a', type: 'public', redirect_uris: [1], scope: APP_SCOPE }],
    ['scope not a string', { name: 'a', type: 'backend', jwks, scope: ['system/*.rs'] }],
    ['jwks as a string', { name: 'a', type: 'backend', jwks: JSON.stringify(jwks), scope: 'system/*.rs' }],
  ]) {
    const r = await create(body);
    assert.equal(r.status, 400, `${what}: ${r.body}`);
    assert.equal(r.json?.resourceType, 'OperationOutcome', what);
  }
  assert.equal((await server.req('GET', '/admin/clients')).json.clients.length, before, 'nothing refused was registered');
});
