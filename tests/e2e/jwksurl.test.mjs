// SMART Backend Services clients registered with a JWKS URL: a Node HTTPS
// server on 127.0.0.1 (a self-signed certificate the carevault server trusts
// through outbound-ca-file) serves the client's JWKS and counts the requests.
// Registered with `carevault client add --jwks-url`, the client gets a token
// for an RS384 assertion. It rotates its key: an assertion with the new kid
// makes the server fetch the JWKS again, once; an assertion with a bogus kid
// right after, or with the retired key, does not fetch again (at most one
// refresh per 5 minutes). A bad signature under a known kid never fetches,
// nor does an unknown client id. Refused at registration: http://, a
// redirect, a 404 (its body never echoed), a document that is no JWKS, and
// both jwks and jwks_url; the admin API registers with jwks_url too.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { rsaKeyPair } from './lib/keys.mjs';
import { start } from './lib/server.mjs';

const J = { 'content-type': 'application/json' };
const key1 = rsaKeyPair();
const key2 = rsaKeyPair();
const stranger = rsaKeyPair();
const jwk = (k, kid) => ({ ...k.publicKey.export({ format: 'jwk' }), kid, alg: 'RS384', use: 'sig' });

let server; // carevault
let jwksServer; // the client's key server
let jwksBase;
let tmp;
const hits = {}; // path → requests
const docs = {}; // path → [status, body, headers]

const b64u = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
const diag = (r) => r.json?.issue?.map((i) => i.diagnostics).join(' | ') ?? '';
// Asynchronous: the key server lives in this process and must answer meanwhile.
const cli = (args) => new Promise((resolve, reject) => {
  execFile(server.bin, ['client', ...args, '--data', server.dataDir], { encoding: 'utf8', timeout: 60_000, env: server.env },
    (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') reject(err);
      else resolve({ status: err ? err.code : 0, stdout, stderr });
    });
});

function assertion(client, key, kid, iss = client) {
  const now = Math.floor(Date.now() / 1000);
  const data = `${b64u({ alg: 'RS384', typ: 'JWT', kid })}.${b64u({ iss, sub: iss, aud: `${server.origin}/auth/token`,
    exp: now + 240, jti: crypto.randomUUID() })}`;
  return `${data}.${crypto.sign('sha384', Buffer.from(data), key.privateKey).toString('base64url')}`;
}
const getToken = (client, key, kid, iss) => server.req('POST', '/auth/token', {
  token: '', headers: { 'content-type': 'application/x-www-form-urlencoded' },
  body: new URLSearchParams({ grant_type: 'client_credentials', scope: 'system/*.rs',
    client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
    client_assertion: assertion(client, key, kid, iss) }).toString(),
});
const serve = (p, body, status = 200, headers = {}) => {
  docs[p] = [status, typeof body === 'string' ? body : JSON.stringify(body), headers];
};
const addCli = (name, url) => cli(['add', '--name', name, '--type', 'backend', '--jwks-url', url, '--scope', 'system/*.rs']);
const idOf = (r) => /^client_id: ([0-9a-f]{32})$/m.exec(r.stdout)?.[1];

before(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cv-jwksurl-'));
  const cert = path.join(tmp, 'cert.pem');
  const keyFile = path.join(tmp, 'key.pem');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', keyFile, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  jwksServer = https.createServer({ key: fs.readFileSync(keyFile), cert: fs.readFileSync(cert) }, (req, res) => {
    hits[req.url] = (hits[req.url] ?? 0) + 1;
    const [status, body, headers] = docs[req.url] ?? [404, 'not here', {}];
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(body);
  });
  await new Promise((resolve) => jwksServer.listen(0, '127.0.0.1', resolve));
  jwksBase = `https://127.0.0.1:${jwksServer.address().port}`;
  server = await start({ name: 'jwksurl', env: { CAREVAULT_OUTBOUND_CA_FILE: cert } });
});
after(async () => {
  try {
    if (server) { try { await server.stop(); } finally { await server.cleanup(); } }
  } finally {
    jwksServer?.close();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  }
});

test('registered by URL; a rotated key is fetched once, a bogus kid after it is not', async () => {
  serve('/rot', { keys: [jwk(key1, 'k1')] });
  const r = await addCli('rotating service', `${jwksBase}/rot`);
  assert.equal(r.status, 0, r.stderr);
  const id = idOf(r);
  assert.ok(id);
  assert.equal(hits['/rot'], 1, 'fetched at registration');

  let t = await getToken(id, key1, 'k1');
  assert.equal(t.status, 200, t.body);
  assert.equal((await server.req('GET', '/fhir/Patient?_count=1', { token: t.json.access_token })).status, 200);
  assert.equal(hits['/rot'], 1, 'a known kid needs no fetch');

  serve('/rot', { keys: [jwk(key2, 'k2')] });
  t = await getToken(id, key2, 'k2');
  assert.equal(t.status, 200, t.body);
  assert.equal(hits['/rot'], 2, 'the new kid made it fetch the JWKS again');
  t = await getToken(id, key2, 'k2');
  assert.equal(t.status, 200, t.body);
  assert.equal(hits['/rot'], 2);

  t = await getToken(id, key2, 'bogus');
  assert.equal(t.status, 401);
  assert.equal(t.json.error, 'invalid_client');
  t = await getToken(id, key1, 'k1');
  assert.equal(t.status, 401, 'the retired key is refused');
  assert.equal(hits['/rot'], 2, 'no second fetch within 5 minutes');
});

test('a bad signature under a known kid, or an unknown client, never fetches', async () => {
  serve('/sig', { keys: [jwk(key1, 'k1')] });
  const r = await addCli('careful service', `${jwksBase}/sig`);
  assert.equal(r.status, 0, r.stderr);
  const id = idOf(r);
  assert.equal(hits['/sig'], 1);
  let t = await getToken(id, stranger, 'k1');
  assert.equal(t.status, 401);
  assert.equal(hits['/sig'], 1, 'a bad signature is no reason to fetch');
  t = await getToken(id, stranger, 'k9', 'f'.repeat(32));
  assert.equal(t.status, 401);
  assert.equal(hits['/sig'], 1, 'an unknown client id is no reason to fetch');
  // The window is still unused: an unknown kid of the known client fetches.
  t = await getToken(id, stranger, 'k9');
  assert.equal(t.status, 401);
  assert.equal(hits['/sig'], 2);
});

test('registration refuses URLs and documents it cannot use, and says why', async () => {
  serve('/moved', 'moved', 302, { location: `${jwksBase}/rot` });
  serve('/gone', 'SECRET-BODY-TEXT', 404);
  serve('/private', { keys: [{ ...key1.privateKey.export({ format: 'jwk' }), kid: 'x' }] });
  serve('/notjson', 'SECRET-BODY-TEXT');
  const cases = {
    [`http://127.0.0.1:${jwksServer.address().port}/rot`]: /https/,
    'file:///etc/passwd': /https/,
    [`${jwksBase}/moved`]: /302/,
    [`${jwksBase}/gone`]: /404/,
    [`${jwksBase}/private`]: /private key/,
    [`${jwksBase}/notjson`]: /not valid json/,
  };
  for (const [url, why] of Object.entries(cases)) {
    const r = await addCli('refused', url);
    assert.equal(r.status, 1, url);
    assert.match(r.stderr, why, url);
    assert.ok(!r.stderr.includes('SECRET-BODY'), 'the response is never echoed');
  }
  assert.equal(hits['/rot'], 2, 'the redirect was not followed');
  const jf = path.join(tmp, 'jwks.json');
  fs.writeFileSync(jf, JSON.stringify({ keys: [jwk(key1, 'k1')] }));
  const both = await cli(['add', '--name', 'both', '--type', 'backend', '--jwks-file', jf, '--jwks-url', `${jwksBase}/rot`,
    '--scope', 'system/*.rs']);
  assert.equal(both.status, 1);
  const app = await cli(['add', '--name', 'app', '--type', 'public', '--redirect-uri', 'https://app.example/cb',
    '--jwks-url', `${jwksBase}/rot`, '--scope', 'patient/*.rs']);
  assert.equal(app.status, 1, 'only a backend client has a JWKS URL');
});

test('the admin API registers with jwks_url, and refuses it with jwks or over http', async () => {
  serve('/api', { keys: [jwk(key1, 'k1')] });
  const create = (body) => server.req('POST', '/admin/clients', { headers: J, body });
  const made = await create({ name: 'api service', type: 'backend', scope: 'system/*.rs', jwks_url: `${jwksBase}/api` });
  assert.equal(made.status, 201, made.body);
  assert.equal(made.json.jwks_url, `${jwksBase}/api`);
  assert.equal(made.json.jwks_keys, 1);
  assert.ok(made.json.jwks_fetched_us > 0);
  assert.equal(hits['/api'], 1);
  const t = await getToken(made.json.client_id, key1, 'k1');
  assert.equal(t.status, 200, t.body);
  const read = await server.req('GET', `/admin/clients/${made.json.client_id}`);
  assert.equal(read.json.jwks_url, `${jwksBase}/api`);

  let r = await create({ name: 'both', type: 'backend', scope: 'system/*.rs', jwks_url: `${jwksBase}/api`,
    jwks: { keys: [jwk(key1, 'k1')] } });
  assert.equal(r.status, 422);
  r = await create({ name: 'plain', type: 'backend', scope: 'system/*.rs', jwks_url: `http://127.0.0.1/api` });
  assert.equal(r.status, 422);
  assert.match(diag(r), /https/);
  r = await create({ name: 'gone', type: 'backend', scope: 'system/*.rs', jwks_url: `${jwksBase}/gone` });
  assert.equal(r.status, 422);
  assert.match(diag(r), /404/);
  assert.ok(!r.body.includes('SECRET-BODY'));
  r = await create({ name: 'typed', type: 'backend', scope: 'system/*.rs', jwks_url: 42 });
  assert.equal(r.status, 400);
  assert.equal(hits['/api'], 1);
});
