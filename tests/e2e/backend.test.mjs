// SMART Backend Services, attacked: a client registered with `carevault
// client add` and its public keys gets a short-lived token for a JWT
// assertion it signs with Node's crypto (RS384 and ES384), and the token
// reaches the FHIR API within its scopes. Refused, each with invalid_client
// and the same description: alg none, HS256 keyed with the public key, a
// wrong key, an expired or too long-lived assertion, a wrong audience, an
// unknown issuer, a replayed jti. A disabled client's tokens stop at once.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { keyPair, rsaKeyPair } from './lib/keys.mjs';
import { start } from './lib/server.mjs';

let server;
const rsa = rsaKeyPair();
const ec = keyPair('ec', { namedCurve: 'secp384r1' });
const other = rsaKeyPair();
const jwk = (k, kid, alg) => ({ ...k.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' });
let full; // client id with system/*.cruds
let reader; // client id with system/*.rs

const cli = (args) => spawnSync(server.bin, ['client', ...args, '--data', server.dataDir],
  { encoding: 'utf8', timeout: 60_000, env: server.env });
const b64u = (x) => Buffer.from(typeof x === 'string' ? x : JSON.stringify(x)).toString('base64url');

function assertion(client, { alg = 'RS384', key = rsa.privateKey, kid = 'rsa1', aud, exp, jti, iss, hmacKey } = {}) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64u({ alg, typ: 'JWT', ...(kid ? { kid } : {}) });
  const body = b64u({ iss: iss ?? client, sub: client, aud: aud ?? `${server.origin}/auth/token`, exp: exp ?? now + 240,
    jti: jti ?? crypto.randomUUID() });
  const data = `${head}.${body}`;
  let sig = '';
  if (alg === 'RS384') sig = crypto.sign('sha384', Buffer.from(data), key).toString('base64url');
  else if (alg === 'ES384') sig = crypto.sign('sha384', Buffer.from(data), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  else if (alg === 'HS256') sig = crypto.createHmac('sha256', hmacKey).update(data).digest('base64url');
  return `${data}.${sig}`;
}

const tokenReq = (form) => server.req('POST', '/auth/token', {
  token: '', headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams(form).toString(),
});
const getToken = (client, scope, opts) => tokenReq({
  grant_type: 'client_credentials', scope,
  client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
  client_assertion: assertion(client, opts),
});

before(async () => {
  server = await start({ name: 'backend' });
  const jwksFile = path.join(server.tmpDir, 'jwks.json');
  fs.writeFileSync(jwksFile, JSON.stringify({ keys: [jwk(rsa, 'rsa1', 'RS384'), jwk(ec, 'ec1', 'ES384')] }));
  let r = cli(['add', '--name', 'nightly import', '--type', 'backend', '--jwks-file', jwksFile, '--scope', 'system/*.cruds']);
  assert.equal(r.status, 0, r.stderr);
  full = /^client_id: ([0-9a-f]{32})$/m.exec(r.stdout)[1];
  r = cli(['add', '--name', 'reporting', '--type', 'backend', '--jwks-file', jwksFile, '--scope', 'system/*.rs']);
  assert.equal(r.status, 0, r.stderr);
  reader = /^client_id: ([0-9a-f]{32})$/m.exec(r.stdout)[1];
});
after(async () => {
  if (!server) return;
  try { await server.stop(); } finally { await server.cleanup(); }
});

test('registration refuses what it cannot honour', () => {
  const priv = path.join(server.tmpDir, 'private.json');
  fs.writeFileSync(priv, JSON.stringify({ keys: [{ ...rsa.privateKey.export({ format: 'jwk' }), kid: 'x' }] }));
  let r = cli(['add', '--name', 'leaky', '--type', 'backend', '--jwks-file', priv, '--scope', 'system/*.rs']);
  assert.equal(r.status, 1, 'a private key in the JWKS is refused');
  r = cli(['add', '--name', 'app', '--type', 'public', '--redirect-uri', 'https://app.example/cb', '--scope', 'system/*.rs']);
  assert.equal(r.status, 1);
  r = cli(['add', '--name', 'nokeys', '--type', 'backend', '--scope', 'system/*.rs']);
  assert.equal(r.status, 1);
  const list = cli(['list']);
  assert.equal(list.status, 0);
  assert.equal(list.stdout.trim().split('\n').length, 2);
  assert.ok(!list.stdout.includes('"n"'), 'keys are not listed');
});

test('the SMART configuration names the token endpoint and what it accepts', async () => {
  for (const p of ['/.well-known/smart-configuration', '/fhir/.well-known/smart-configuration']) {
    const r = await server.req('GET', p, { token: '' });
    assert.equal(r.status, 200);
    assert.match(r.json.token_endpoint, /^https:\/\/[^/]+\/auth\/token$/);
    assert.deepEqual(r.json.token_endpoint_auth_signing_alg_values_supported, ['RS384', 'ES384']);
    assert.ok(r.json.grant_types_supported.includes('client_credentials'));
  }
});

test('RS384 and ES384 assertions get short-lived tokens that reach the API', async () => {
  for (const opts of [{}, { alg: 'ES384', key: ec.privateKey, kid: 'ec1' }, { kid: undefined }]) {
    const r = await getToken(full, 'system/*.cruds', opts);
    assert.equal(r.status, 200, r.body);
    assert.match(r.headers['cache-control'] ?? '', /no-store/);
    assert.equal(r.json.token_type, 'Bearer');
    assert.equal(r.json.expires_in, 300);
    assert.equal(r.json.scope, 'system/*.cruds');
    const made = await server.req('POST', '/fhir/Patient', { token: r.json.access_token, body: { resourceType: 'Patient', active: true } });
    assert.equal(made.status, 201);
    const read = await server.req('GET', new URL(made.headers.location).pathname.replace(/\/_history\/1$/, ''), { token: r.json.access_token });
    assert.equal(read.status, 200);
    assert.equal((await server.req('GET', '/admin/users', { token: r.json.access_token })).status, 403, 'no admin API for a client');
  }
});

test('scopes: only what the registration grants', async () => {
  const ro = await getToken(reader, 'system/*.rs system/*.cruds');
  assert.equal(ro.status, 200, ro.body);
  assert.equal(ro.json.scope, 'system/*.rs');
  assert.equal((await server.req('GET', '/fhir/Patient?_count=1', { token: ro.json.access_token })).status, 200);
  assert.equal((await server.req('POST', '/fhir/Patient', { token: ro.json.access_token, body: { resourceType: 'Patient' } })).status, 403);
  const none = await getToken(reader, 'system/*.cruds');
  assert.equal(none.status, 400);
  assert.equal(none.json.error, 'invalid_scope');
  const v1 = await getToken(full, 'system/*.read');
  assert.equal(v1.status, 200);
  assert.equal((await server.req('DELETE', '/fhir/Patient/x', { token: v1.json.access_token })).status, 403);
});

test('forged and replayed assertions are refused alike', async () => {
  const now = Math.floor(Date.now() / 1000);
  const pem = rsa.publicKey.export({ type: 'spki', format: 'pem' });
  const cases = {
    'alg none': { alg: 'none' },
    'HS256 keyed with the public key': { alg: 'HS256', hmacKey: pem },
    'another key under our kid': { key: other.privateKey },
    'RS256 named as RS384 key': { alg: 'RS256' },
    expired: { exp: now - 120 },
    'lives too long': { exp: now + 3600 },
    'wrong audience': { aud: 'https://elsewhere.example/token' },
    'unknown issuer': { iss: '0'.repeat(32) },
  };
  const descriptions = new Set();
  for (const [name, opts] of Object.entries(cases)) {
    const r = await getToken(full, 'system/*.rs', opts);
    assert.equal(r.status, 401, `${name}: ${r.body}`);
    assert.equal(r.json.error, 'invalid_client', name);
    descriptions.add(r.json.error_description);
  }
  assert.equal(descriptions.size, 1, 'one description for every refusal');
  const once = assertion(full);
  const form = { grant_type: 'client_credentials', scope: 'system/*.rs', client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: once };
  assert.equal((await tokenReq(form)).status, 200);
  const replay = await tokenReq(form);
  assert.equal(replay.status, 401, 'a replayed jti is refused');
  assert.equal((await tokenReq({ ...form, grant_type: 'password' })).json.error, 'unsupported_grant_type');
  assert.equal((await tokenReq({ grant_type: 'client_credentials', scope: 'system/*.rs' })).json.error, 'invalid_request');
});

test('forged tokens are refused, and disabling a client stops its tokens at once', async () => {
  assert.equal((await server.req('GET', '/fhir/Patient?_count=1', { token: `cva_${crypto.randomBytes(32).toString('base64url')}` })).status, 401);
  const t = (await getToken(full, 'system/*.rs')).json.access_token;
  assert.equal((await server.req('GET', '/fhir/Patient?_count=1', { token: t })).status, 200);
  assert.equal(cli(['disable', '--id', full]).status, 0);
  assert.equal((await server.req('GET', '/fhir/Patient?_count=1', { token: t })).status, 401);
  assert.equal((await getToken(full, 'system/*.rs')).status, 401, 'no new token either');
  assert.equal(cli(['enable', '--id', full]).status, 0);
  assert.equal((await server.req('GET', '/fhir/Patient?_count=1', { token: t })).status, 200);
});
