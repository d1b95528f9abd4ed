// SMART App Launch 2.x (standalone launch), end to end and attacked: the test
// is the browser (lib/browser.mjs: cookies, forms, redirects by hand), logs
// in on the server's own login page, consents, and trades the code for tokens
// with PKCE. Checked: discovery, the authorization request's errors (an
// unknown client or a redirect URI one character off gets no redirect at
// all), the login and consent pages (CSP, no-store, Origin checks, CSRF), the
// token endpoint (codes once, PKCE, redirect URI, client secrets), id_token
// signatures against the JWKS, patient-compartment reads, revocation,
// introspection, refresh-token rotation with reuse detection, disabled users
// and clients, expired tokens, and a real SMART client (the npm fhirclient
// library) doing the whole launch in an app of its own.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import { createRequire } from 'node:module';
import path from 'node:path';
import { freePort, start } from './lib/server.mjs';
import { base32Decode, totp } from './lib/totp.mjs';
import { Browser, hiddenFields, parseForms } from './lib/browser.mjs';

const STRONG = 'a long and unusual passphrase 7';
const DOC_PW = 'another rather unusual passphrase 9';
const SCOPES = 'launch/patient openid fhirUser offline_access patient/*.rs user/*.rs';
const NARROW_SCOPES = 'launch/patient openid fhirUser patient/*.rs';
const FORM = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
const ESSENTIAL = ['launch/patient', 'openid', 'fhirUser', 'offline_access', 'patient/*.rs'];
// Words that would tell an attacker which part of a login was wrong.
const LEAK = /not found|no such|unknown user|does not exist|doesn't exist|no account|is disabled|account disabled|locked|wrong password|incorrect password|invalid password|password is|wrong code|invalid code|code (was )?already|replay/i;

// The SMART app of the fhirclient test: a plain Node http server with a
// cookie session, using fhirclient's Node API the documented way.
const APP_SOURCE = String.raw`'use strict';
const http = require('node:http');
const crypto = require('node:crypto');
const smart = require(process.env.FHIRCLIENT);
const sessions = new Map();
function storageFor(req, res) {
  const m = /(?:^|;\s*)sid=([\w-]+)/.exec(req.headers.cookie || '');
  let sid = m && sessions.has(m[1]) ? m[1] : null;
  if (!sid) {
    sid = crypto.randomBytes(16).toString('hex');
    sessions.set(sid, {});
    res.setHeader('set-cookie', 'sid=' + sid + '; Path=/; HttpOnly');
  }
  const data = sessions.get(sid);
  return {
    async get(k) { return data[k]; },
    async set(k, v) { data[k] = v; return v; },
    async unset(k) { const had = Object.prototype.hasOwnProperty.call(data, k); delete data[k]; return had; },
  };
}
http.createServer(async (req, res) => {
  const url = new URL(req.url, 'http://localhost');
  const storage = storageFor(req, res);
  try {
    if (url.pathname === '/launch') {
      await smart(req, res, storage).authorize({
        iss: process.env.FHIR_ISS, clientId: process.env.CLIENT_ID, redirectUri: process.env.REDIRECT_URI,
        scope: process.env.SCOPE, pkceMode: 'required',
      });
      return;
    }
    if (url.pathname === '/callback') {
      const client = await smart(req, res, storage).ready();
      const patient = await client.request('Patient/smart-p1');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ patient, context: client.patient.id, scope: client.state.tokenResponse.scope }));
      return;
    }
    res.writeHead(404); res.end();
  } catch (e) {
    process.stderr.write('app error: ' + (e && e.stack || e) + '\n');
    res.writeHead(500, { 'content-type': 'text/plain' });
    res.end(String(e && e.message || e));
  }
}).listen(Number(process.env.APP_PORT), '127.0.0.1', () => process.stdout.write('app ready\n'));
`;

let server;
let appPort; // the port of the fhirclient app; its redirect URI is registered for every client
let cbUri;
let pub; // {id}: public client, every scope
let conf; // {id, secret}: confidential client, every scope
let narrow; // {id}: public client without user/*.rs and offline_access
let docSeed;
let failPage; // the page of a failed login, attribute values out
let main; // the patient's standalone launch, shared by the tests that look at its tokens

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const set = (s) => new Set(String(s ?? '').split(/\s+/).filter(Boolean));
const basic = (c) => `Basic ${Buffer.from(`${encodeURIComponent(c.id)}:${encodeURIComponent(c.secret)}`).toString('base64')}`;
const b64uJson = (s) => JSON.parse(Buffer.from(s, 'base64url').toString('utf8'));

function cli(s, args, input = '') {
  return spawnSync(s.bin, [...args, '--data', s.dataDir], { encoding: 'utf8', timeout: 60_000, env: s.env, input });
}

function addClient(s, { name, type, scope, redirects }) {
  const r = cli(s, ['client', 'add', '--name', name, '--type', type, ...redirects.flatMap((u) => ['--redirect-uri', u]), '--scope', scope]);
  assert.equal(r.status, 0, `client add ${name}: ${r.stderr}`);
  const id = /^client_id: (\S+)$/m.exec(r.stdout)?.[1];
  assert.ok(id, `client add prints client_id: ${r.stdout}`);
  const secret = /^client_secret: (\S+)$/m.exec(r.stdout)?.[1];
  if (type === 'confidential') assert.ok(secret, 'a confidential client gets its secret once');
  return { id, secret };
}

async function putResource(s, type, id) {
  const r = await s.req('PUT', `/fhir/${type}/${id}`, { body: { resourceType: type, id, ...(type === 'Practitioner' ? { name: [{ family: 'Smart' }] } : { active: true }) } });
  assert.ok([200, 201].includes(r.status), `PUT ${type}/${id}: ${r.status} ${r.body}`);
}

function addUser(s, username, args, password = STRONG) {
  const r = cli(s, ['user', 'add', '--username', username, ...args, '--password-stdin'], `${password}\n`);
  assert.equal(r.status, 0, `user add ${username}: ${r.stderr}`);
  return r.stdout;
}

/** Patients, a doctor and the three clients on s. */
async function setup(s) {
  await putResource(s, 'Patient', 'smart-p1');
  await putResource(s, 'Patient', 'smart-p2');
  await putResource(s, 'Practitioner', 'smart-dr');
  addUser(s, 'pat.smart', ['--role', 'patient', '--patient', 'smart-p1']);
  addUser(s, 'pat.gone', ['--role', 'patient', '--patient', 'smart-p2']);
  const out = addUser(s, 'doc.smart', ['--role', 'doctor', '--practitioner', 'smart-dr'], DOC_PW);
  const uri = /^otpauth: (\S+)$/m.exec(out)?.[1];
  assert.ok(uri, `a doctor gets a TOTP seed: ${out}`);
  const seed = base32Decode(new URL(uri).searchParams.get('secret'));
  const clients = {
    pub: addClient(s, { name: 'Test App', type: 'public', scope: SCOPES, redirects: [cbUri] }),
    conf: addClient(s, { name: 'Test Confidential App', type: 'confidential', scope: SCOPES, redirects: [cbUri] }),
    narrow: addClient(s, { name: 'Narrow App', type: 'public', scope: NARROW_SCOPES, redirects: [cbUri] }),
  };
  return { seed, ...clients };
}

before(async () => {
  appPort = await freePort();
  cbUri = `http://localhost:${appPort}/callback`;
  server = await start({ name: 'smart' });
  ({ seed: docSeed, pub, conf, narrow } = await setup(server));
});
after(async () => {
  if (!server) return;
  try { await server.stop(); } finally { await server.cleanup(); }
});

function pkce() {
  const verifier = crypto.randomBytes(48).toString('base64url');
  return { verifier, challenge: crypto.createHash('sha256').update(verifier).digest('base64url') };
}

/** The authorize URL; a parameter given as null is left out. */
function authorizeUrl(s, p) {
  const q = new URLSearchParams();
  const all = { response_type: 'code', client_id: p.client_id, redirect_uri: cbUri, scope: SCOPES, state: p.state,
    aud: s.base, code_challenge: p.code_challenge, code_challenge_method: 'S256', ...p };
  for (const [k, v] of Object.entries(all)) if (v !== null && v !== undefined) q.append(k, v);
  return `${s.origin}/auth/authorize?${q}`;
}

/** The form that posts back to /auth/authorize. */
function authForm(html, what) {
  const forms = parseForms(html).filter((f) => f.method === 'post' && f.action.replace(/^https?:\/\/[^/]+/, '') === '/auth/authorize');
  assert.equal(forms.length, 1, `${what}: one <form method="post" action="/auth/authorize">\n${html.slice(0, 1500)}`);
  return forms[0];
}

/** An HTML page the way all failures must look alike: attribute values out. */
const normalize = (html) => html.replace(/\s([a-zA-Z-]+)\s*=\s*("[^"]*"|'[^']*')/g, ' $1=""');
const text = (html) => html.replace(/<script[\s\S]*?<\/script>|<style[\s\S]*?<\/style>/gi, ' ').replace(/<[^>]*>/g, ' ');
const sessionCookie = (r) => r.setCookie.find((c) => c.startsWith('__Host-cv_session='));

/**
 * The browser part of a standalone launch: authorize → login page → login →
 * consent page → decision → redirect. Returns everything along the way.
 * opts: s, client, user, password, code (TOTP), scope, nonce, uncheck (scope
 * values to untick), patient (staff), decision, expect ('login'|'consent'|'redirect').
 */
async function launch(opts = {}) {
  const s = opts.s ?? server;
  const client = opts.client ?? pub;
  const b = opts.browser ?? new Browser({ ca: s.ca });
  const { verifier, challenge } = pkce();
  const state = crypto.randomBytes(12).toString('base64url');
  const redirectUri = opts.redirectUri ?? cbUri;
  const url = authorizeUrl(s, { client_id: client.id, redirect_uri: redirectUri, scope: opts.scope ?? SCOPES, state,
    code_challenge: challenge, ...(opts.nonce ? { nonce: opts.nonce } : {}) });
  const page = await b.get(url);
  assert.equal(page.status, 200, `login page: ${page.status} ${page.location ?? ''} ${page.body.slice(0, 500)}`);
  const loginForm = authForm(page.body, 'login page');
  const fields = { username: opts.user ?? 'pat.smart', password: opts.password ?? STRONG };
  if (opts.code !== undefined) fields.code = opts.code;
  const consent = await b.submit(page.url, loginForm, { fields });
  const out = { b, s, client, state, verifier, challenge, redirectUri, url, page, loginForm, consent };
  if (opts.expect === 'login') return out;
  assert.equal(consent.status, 200, `login → consent: ${consent.status} ${text(consent.body).replace(/\s+/g, ' ').slice(0, 400)}`);
  out.consentForm = authForm(consent.body, 'consent page');
  if (opts.expect === 'consent') return out;
  const done = await b.submit(consent.url, out.consentForm, {
    uncheckValues: opts.uncheck ?? [],
    fields: opts.patient !== undefined ? { patient: opts.patient } : {},
    button: ['decision', opts.decision ?? 'approve'],
  });
  out.done = done;
  assert.equal(done.status, 302, `consent → redirect: ${done.status} ${done.body.slice(0, 400)}`);
  out.loc = new URL(done.location);
  out.code = out.loc.searchParams.get('code');
  return out;
}

/** POST /auth/token with a form; Basic auth for a client with a secret, else client_id. */
function tokenReq(s, form, { client, auth } = {}) {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(form)) if (v !== null && v !== undefined) body.append(k, v);
  const headers = { ...FORM };
  if (auth !== undefined) headers.authorization = auth;
  else if (client?.secret) headers.authorization = basic(client);
  else if (client && !('client_id' in form)) body.append('client_id', client.id);
  return s.req('POST', '/auth/token', { token: '', headers, body: body.toString() });
}

/** Trades a launch's code for tokens (over: form members to change, null drops one). */
function exchange(l, over = {}, opts = {}) {
  return tokenReq(l.s, { grant_type: 'authorization_code', code: l.code, redirect_uri: l.redirectUri, code_verifier: l.verifier, ...over },
    { client: l.client, ...opts });
}

const refresh = (s, client, rt, opts) => tokenReq(s, { grant_type: 'refresh_token', refresh_token: rt }, { client, ...opts });
const fhir = (s, p, token) => s.req('GET', p, { token });
function formPost(s, p, form, auth) {
  const headers = { ...FORM };
  if (auth) headers.authorization = auth;
  return s.req('POST', p, { token: '', headers, body: new URLSearchParams(form).toString() });
}
const introspect = (s, token, auth) => formPost(s, '/auth/introspect', { token }, auth);

/** A full launch and token exchange that must succeed: {l, tok}. */
async function tokensFor(opts = {}) {
  const l = await launch(opts);
  assert.ok(l.code, `a code: ${l.done.location}`);
  const r = await exchange(l);
  assert.equal(r.status, 200, `token: ${r.body}`);
  return { l, tok: r.json };
}

function assertOAuthError(r, status, error, what) {
  assert.equal(r.status, status, `${what}: ${r.status} ${r.body}`);
  assert.equal(r.json?.error, error, `${what}: ${r.body}`);
  assert.doesNotMatch(r.body, /cva_|cvr_/, `${what}: no token in an error`);
}

// ---------------------------------------------------------------------------

test('discovery: the SMART configuration names the endpoints and what they accept', async () => {
  const r = await server.req('GET', '/fhir/.well-known/smart-configuration', { token: '', headers: { accept: 'application/json' } });
  assert.equal(r.status, 200, r.body);
  assert.match(r.headers['content-type'] ?? '', /^application\/json/);
  const c = r.json;
  assert.equal(c.authorization_endpoint, `${server.origin}/auth/authorize`);
  assert.equal(c.token_endpoint, `${server.origin}/auth/token`);
  assert.equal(c.introspection_endpoint, `${server.origin}/auth/introspect`);
  assert.equal(c.revocation_endpoint, `${server.origin}/auth/revoke`);
  assert.equal(c.jwks_uri, `${server.origin}/.well-known/jwks.json`);
  assert.deepEqual(c.code_challenge_methods_supported, ['S256'], 'S256 only, no plain');
  for (const cap of ['launch-standalone', 'client-public', 'client-confidential-symmetric', 'permission-v2', 'permission-v1',
    'context-standalone-patient', 'sso-openid-connect', 'permission-offline']) {
    assert.ok(c.capabilities?.includes(cap), `capability ${cap} in ${JSON.stringify(c.capabilities)}`);
  }
  for (const p of ['/.well-known/openid-configuration', '/.well-known/oauth-authorization-server']) {
    const m = await server.req('GET', p, { token: '', headers: { accept: 'application/json' } });
    assert.equal(m.status, 200, `${p}: ${m.status}`);
    assert.equal(m.json?.authorization_endpoint, c.authorization_endpoint, p);
    assert.equal(m.json?.token_endpoint, c.token_endpoint, p);
  }
  const jwks = await server.req('GET', new URL(c.jwks_uri).pathname, { token: '', headers: { accept: 'application/json' } });
  assert.equal(jwks.status, 200);
  assert.ok(jwks.json.keys.length >= 1);
  for (const k of jwks.json.keys) {
    assert.ok(k.kid, 'every key has a kid');
    for (const priv of ['d', 'p', 'q', 'dp', 'dq', 'qi', 'k']) assert.ok(!(priv in k), `no private member ${priv} in the JWKS`);
  }
  assert.ok(jwks.json.keys.some((k) => k.kty === 'RSA'), 'an RSA key for RS256');
});

test('discovery: the OpenID configuration agrees with the id_token (issuer, RS256)', async () => {
  const m = await server.req('GET', '/.well-known/openid-configuration', { token: '', headers: { accept: 'application/json' } });
  assert.equal(m.status, 200);
  // OpenID Connect Discovery 1.0 §4.3: issuer is exactly the iss of the id_tokens (the FHIR base, per the contract)
  assert.equal(m.json.issuer, server.base, 'issuer = the iss of id_tokens');
  assert.ok(m.json.id_token_signing_alg_values_supported?.includes('RS256'));
  assert.equal(m.json.jwks_uri, `${server.origin}/.well-known/jwks.json`);
  // OpenID Connect Discovery 1.0 §4: the configuration is at the issuer + /.well-known/openid-configuration
  const at = await server.req('GET', '/fhir/.well-known/openid-configuration', { token: '', headers: { accept: 'application/json' } });
  assert.equal(at.status, 200);
  assert.equal(at.json.issuer, server.base);
});

test('discovery: RFC 8414 metadata at the path its rule derives from the issuer (the FHIR base)', async () => {
  const m = await server.req('GET', '/.well-known/oauth-authorization-server/fhir', { token: '', headers: { accept: 'application/json' } });
  assert.equal(m.status, 200);
  assert.equal(m.json.issuer, server.base);
});

test('CORS: a browser app on another origin may call the token endpoint and the API, not the cookie pages', async () => {
  const pre = await server.req('OPTIONS', '/auth/token', { token: '', headers: { origin: 'https://app.example',
    'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers['access-control-allow-origin'], '*');
  assert.match(pre.headers['access-control-allow-methods'] ?? '', /POST/);
  assert.equal(pre.headers['access-control-allow-credentials'], undefined, 'never with credentials');
  const api = await server.req('OPTIONS', '/fhir/Patient/smart-p1', { token: '', headers: { origin: 'https://app.example',
    'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' } });
  assert.equal(api.status, 204);
  assert.match(api.headers['access-control-allow-headers'] ?? '', /Authorization/);
  const conf = await server.req('GET', '/fhir/.well-known/smart-configuration', { token: '', headers: { origin: 'https://app.example' } });
  assert.equal(conf.headers['access-control-allow-origin'], '*');
  for (const p of ['/auth/authorize', '/auth/login', '/admin/users', '/auth/session']) {
    const r = await server.req('OPTIONS', p, { token: '', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
    assert.notEqual(r.status, 204, p);
    assert.equal(r.headers['access-control-allow-origin'], undefined, `${p} is not for other origins`);
  }
});

test('authorize: an unknown client or a redirect URI not exactly registered gets a 400 page and no redirect', async () => {
  const { challenge } = pkce();
  const state = 'st-1';
  const unknown = await new Browser({ ca: server.ca }).get(authorizeUrl(server, { client_id: '0'.repeat(32), state, code_challenge: challenge }));
  assert.equal(unknown.status, 400);
  assert.equal(unknown.location, undefined);
  assert.match(unknown.headers['content-type'] ?? '', /^text\/html/);
  const off = [
    `${cbUri}x`, `${cbUri}/`, cbUri.slice(0, -1), cbUri.replace('/callback', '/Callback'),
    cbUri.replace('localhost', '127.0.0.1'), cbUri.replace('http:', 'https:'), `${cbUri}?next=x`, `${cbUri}#x`,
    cbUri.replace(`:${appPort}`, `:${appPort === 65535 ? appPort - 1 : appPort + 1}`), 'https://evil.example/callback',
  ];
  for (const redirect_uri of off) {
    const r = await new Browser({ ca: server.ca }).get(authorizeUrl(server, { client_id: pub.id, redirect_uri, state, code_challenge: challenge }));
    assert.equal(r.status, 400, `redirect_uri ${redirect_uri}: ${r.status} ${r.location ?? ''}`);
    assert.equal(r.location, undefined, `no redirect to ${redirect_uri}`);
    assert.match(r.headers['content-type'] ?? '', /^text\/html/);
    assert.ok(!r.body.includes(redirect_uri), 'the unregistered URI is not echoed as a link');
  }
  const none = await new Browser({ ca: server.ca }).get(authorizeUrl(server, { client_id: null, state, code_challenge: challenge }));
  assert.equal(none.status, 400);
  assert.equal(none.location, undefined);
});

test('authorize: other errors go back to the app with the OAuth error and the state', async () => {
  const { challenge } = pkce();
  const cases = [
    ['no code_challenge', { code_challenge: null }, 'invalid_request'],
    ['code_challenge_method plain', { code_challenge_method: 'plain' }, 'invalid_request'],
    ['no code_challenge_method (plain by default, RFC 7636 4.3)', { code_challenge_method: null }, 'invalid_request'],
    ['wrong aud', { aud: 'https://evil.example/fhir' }, 'invalid_request'],
    ['aud of another path on this server', { aud: `${server.origin}/other` }, 'invalid_request'],
    ['no aud (SMART requires it)', { aud: null }, 'invalid_request'],
    ['response_type token', { response_type: 'token' }, 'unsupported_response_type'],
    ['no scope the client may have', { client_id: narrow.id, scope: 'user/*.rs' }, 'invalid_scope'],
  ];
  for (const [what, p, error] of cases) {
    const state = `st-${crypto.randomBytes(6).toString('hex')}`;
    const r = await new Browser({ ca: server.ca }).get(authorizeUrl(server, { client_id: pub.id, state, code_challenge: challenge, ...p }));
    assert.equal(r.status, 302, `${what}: ${r.status} ${r.body.slice(0, 200)}`);
    const loc = new URL(r.location);
    assert.equal(`${loc.origin}${loc.pathname}`, cbUri, what);
    assert.equal(loc.searchParams.get('error'), error, `${what}: ${r.location}`);
    assert.equal(loc.searchParams.get('state'), state, `${what}: the state comes back`);
    assert.equal(loc.searchParams.get('code'), null, what);
  }
});

test('authorize: the login page cannot be framed or cached, and escapes what it echoes', async () => {
  const { challenge } = pkce();
  const evil = '"><script>alert(1)</script><x y=\'';
  const r = await new Browser({ ca: server.ca }).get(authorizeUrl(server, { client_id: pub.id, state: evil, code_challenge: challenge, nonce: 'n"<b>' }));
  assert.equal(r.status, 200, r.body.slice(0, 300));
  assert.match(r.headers['content-type'] ?? '', /^text\/html/);
  assert.match(r.headers['content-security-policy'] ?? '', /frame-ancestors 'none'/);
  assert.match(r.headers['cache-control'] ?? '', /no-store/);
  assert.ok(!r.body.includes('<script>alert(1)</script>'), 'the state is escaped');
  assert.ok(!r.body.includes('<b>'), 'the nonce is escaped');
  assert.equal(sessionCookie(r), undefined, 'no session before a login');
  const f = authForm(r.body, 'login page');
  const names = f.inputs.map((i) => i.name);
  for (const n of ['username', 'password', 'code']) assert.ok(names.includes(n), `field ${n} in ${names}`);
  assert.equal(f.inputs.find((i) => i.name === 'password').type, 'password');
  const hidden = hiddenFields(f);
  assert.equal(hidden.state, evil, 'the state is carried in a hidden input, intact');
  assert.ok(Object.values(hidden).includes(pub.id), 'the request is carried in hidden inputs');
});

test('login: POST without Origin, or from a foreign Origin, is refused (403), no session', async () => {
  const b = new Browser({ ca: server.ca });
  const { challenge } = pkce();
  const page = await b.get(authorizeUrl(server, { client_id: pub.id, state: 'st-o', code_challenge: challenge }));
  assert.equal(page.status, 200);
  const f = authForm(page.body, 'login page');
  const fields = { username: 'pat.smart', password: STRONG };
  const noOrigin = await b.submit(page.url, f, { fields, origin: null });
  assert.equal(noOrigin.status, 403, `no Origin: ${noOrigin.status}`);
  assert.equal(sessionCookie(noOrigin), undefined);
  for (const origin of ['https://evil.example', 'null', `http://127.0.0.1:${server.port}`, `https://127.0.0.1:${server.port + 1}`]) {
    const forged = await b.submit(page.url, f, { fields, origin });
    assert.equal(forged.status, 403, `Origin ${origin}: ${forged.status}`);
    assert.equal(sessionCookie(forged), undefined, `Origin ${origin}: no session`);
  }
  // the same form from the server's own origin works
  const ok = await b.submit(page.url, f, { fields });
  assert.equal(ok.status, 200, `own Origin: ${ok.status}`);
});

test('login: a POST with no Origin is refused even when its Referer is the server\'s own page (the contract: Origin required)', async () => {
  const b = new Browser({ ca: server.ca });
  const { challenge } = pkce();
  const page = await b.get(authorizeUrl(server, { client_id: pub.id, state: 'st-r', code_challenge: challenge }));
  assert.equal(page.status, 200);
  const f = authForm(page.body, 'login page');
  const fields = { username: 'pat.smart', password: STRONG };
  const foreign = await b.submit(page.url, f, { fields, origin: null, headers: { referer: 'https://evil.example/login' } });
  assert.equal(foreign.status, 403, `foreign Referer, no Origin: ${foreign.status}`);
  const own = await b.submit(page.url, f, { fields, origin: null, headers: { referer: page.url } });
  assert.equal(own.status, 403, `own Referer, no Origin: ${own.status} (POST /auth/authorize must carry Origin)`);
  assert.equal(sessionCookie(own), undefined, 'no session without Origin');
});

test('the patient launch: login, consent, a code for the app, tokens', async () => {
  const nonce = crypto.randomBytes(16).toString('base64url');
  const l = await launch({ nonce, expect: 'consent' });
  const sc = sessionCookie(l.consent);
  assert.ok(sc, 'a login sets __Host-cv_session');
  for (const attr of ['Path=/', 'Secure', 'HttpOnly']) assert.ok(sc.includes(attr), `cookie has ${attr}: ${sc}`);
  assert.match(sc, /SameSite=(Lax|Strict)/i);
  assert.ok(!/Domain=/i.test(sc));
  assert.match(l.consent.headers['content-security-policy'] ?? '', /frame-ancestors 'none'/, 'the consent page cannot be framed');
  assert.match(l.consent.headers['cache-control'] ?? '', /no-store/);
  const boxes = l.consentForm.inputs.filter((i) => i.type === 'checkbox' && i.name === 'scope');
  assert.deepEqual(new Set(boxes.map((i) => i.value)), set(SCOPES), 'one checkbox per requested scope');
  assert.ok(boxes.every((i) => i.checked), 'all ticked to begin with');
  const hidden = hiddenFields(l.consentForm);
  assert.ok(hidden.step, 'a step hidden input');
  assert.ok(hidden.csrf && hidden.csrf.length >= 16, 'a csrf hidden input');
  assert.ok(!l.consentForm.inputs.some((i) => i.name === 'patient' && i.type !== 'hidden'), 'a patient picks no patient');
  const decisions = l.consentForm.buttons.filter((x) => x.name === 'decision').map((x) => x.value);
  assert.deepEqual(new Set(decisions), new Set(['approve', 'deny']));

  const done = await l.b.submit(l.consent.url, l.consentForm, { button: ['decision', 'approve'] });
  assert.equal(done.status, 302, done.body.slice(0, 300));
  const loc = new URL(done.location);
  assert.equal(`${loc.origin}${loc.pathname}`, cbUri);
  assert.equal(loc.searchParams.get('state'), l.state);
  const code = loc.searchParams.get('code');
  assert.ok(code && code.length >= 20, 'a code');
  assert.ok(!/cva_|cvr_|access_token|id_token/.test(done.location), 'no token in the redirect');
  const tr = await exchange({ ...l, code });
  assert.equal(tr.status, 200, tr.body);
  assert.match(tr.headers['cache-control'] ?? '', /no-store/);
  assert.match(tr.json.access_token, /^cva_/);
  main = { l, nonce, code, tok: tr.json };
});

test('the token response: Bearer, expires_in, the consented scope, patient, id_token, refresh token', () => {
  assert.ok(main, 'the patient launch ran');
  const t = main.tok;
  assert.equal(t.token_type, 'Bearer');
  assert.ok(Number.isInteger(t.expires_in) && t.expires_in > 0 && t.expires_in <= 3600, `expires_in ${t.expires_in}`);
  const granted = set(t.scope);
  for (const s of ESSENTIAL) assert.ok(granted.has(s), `${s} granted: ${t.scope}`);
  for (const s of granted) assert.ok(set(SCOPES).has(s), `${s} was consented`);
  assert.equal(t.patient, 'smart-p1');
  assert.match(t.id_token ?? '', /^[\w-]+\.[\w-]+\.[\w-]+$/);
  assert.match(t.refresh_token ?? '', /^cvr_/);
  assert.notEqual(t.refresh_token, t.access_token);
});

test('the id_token is RS256, verifies with the JWKS key of its kid, and names the patient', async () => {
  assert.ok(main?.tok?.id_token, 'the patient launch got an id_token');
  const [h, p, sig] = main.tok.id_token.split('.');
  const head = b64uJson(h);
  const claims = b64uJson(p);
  assert.equal(head.alg, 'RS256');
  assert.ok(head.kid, 'a kid');
  const jwks = (await server.req('GET', '/.well-known/jwks.json', { token: '', headers: { accept: 'application/json' } })).json;
  const jwk = jwks.keys.find((k) => k.kid === head.kid);
  assert.ok(jwk, `kid ${head.kid} in the JWKS`);
  const key = crypto.createPublicKey({ key: jwk, format: 'jwk' });
  assert.ok(crypto.verify('sha256', Buffer.from(`${h}.${p}`), key, Buffer.from(sig, 'base64url')), 'the signature verifies');
  // a changed payload does not
  const forged = Buffer.from(JSON.stringify({ ...claims, fhirUser: `${server.base}/Patient/smart-p2` })).toString('base64url');
  assert.ok(!crypto.verify('sha256', Buffer.from(`${h}.${forged}`), key, Buffer.from(sig, 'base64url')));
  const now = Date.now() / 1000;
  assert.equal(claims.iss, server.base);
  assert.equal(claims.aud, pub.id);
  assert.ok(typeof claims.sub === 'string' && claims.sub.length > 0);
  assert.ok(!claims.sub.includes(STRONG));
  assert.ok(claims.exp > now && claims.exp < now + 24 * 3600, `exp ${claims.exp}`);
  assert.ok(claims.iat <= now + 5 && claims.iat > now - 300, `iat ${claims.iat}`);
  assert.equal(claims.nonce, main.nonce);
  assert.equal(claims.fhirUser, `${server.base}/Patient/smart-p1`);
});

test('the patient token reads its own Patient and nothing else', async () => {
  const at = main?.tok?.access_token;
  assert.ok(at);
  const own = await fhir(server, '/fhir/Patient/smart-p1', at);
  assert.equal(own.status, 200, own.body);
  assert.equal(own.json.id, 'smart-p1');
  assert.equal((await fhir(server, '/fhir/Patient/smart-p2', at)).status, 404, 'another patient: as if it did not exist');
  const found = await fhir(server, '/fhir/Patient?_count=5&_total=accurate', at);
  assert.equal(found.status, 200, 'a search finds only the patient');
  assert.deepEqual(found.json.entry.map((e) => e.resource.id), ['smart-p1']);
  assert.equal(found.json.total, 1, 'the other patient is not counted');
  assert.equal((await fhir(server, '/fhir/Observation?subject=Patient/smart-p2&_summary=count', at)).json.total, 0);
  const write = await server.req('PUT', '/fhir/Patient/smart-p1', { token: at, body: { resourceType: 'Patient', id: 'smart-p1' } });
  assert.equal(write.status, 403, 'no write with .rs scopes');
  assert.equal((await server.req('GET', '/admin/users', { token: at })).status, 403);
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', `${at.slice(0, -2)}AA`)).status, 401, 'a forged token');
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', main.tok.refresh_token)).status, 401, 'a refresh token is no access token');
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', main.tok.id_token)).status, 401, 'an id_token is no access token');
});

test('a code works once: a second exchange is invalid_grant and revokes what the first one got', async () => {
  const { l, tok } = await tokensFor();
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', tok.access_token)).status, 200);
  // a refresh token presented by another client is refused
  assertOAuthError(await refresh(server, narrow, tok.refresh_token), 400, 'invalid_grant', 'another client refreshing');
  const again = await exchange(l);
  assertOAuthError(again, 400, 'invalid_grant', 'reused code');
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', tok.access_token)).status, 401, 'the first exchange\'s access token is revoked');
  assertOAuthError(await refresh(server, pub, tok.refresh_token), 400, 'invalid_grant', 'the first exchange\'s refresh token');
  assertOAuthError(await exchange({ ...l, code: `${l.code}x` }), 400, 'invalid_grant', 'a made-up code');
});

test('PKCE: a wrong or missing code_verifier is invalid_grant', async () => {
  const l = await launch();
  assertOAuthError(await exchange(l, { code_verifier: pkce().verifier }), 400, 'invalid_grant', 'wrong verifier');
  const r = await exchange(l, { code_verifier: null });
  assert.equal(r.status, 400, r.body);
  assert.ok(['invalid_grant', 'invalid_request'].includes(r.json?.error), r.body);
  // the challenge itself is not the verifier
  assertOAuthError(await exchange(l, { code_verifier: l.challenge }), 400, 'invalid_grant', 'the challenge as verifier');
});

test('the code is bound to its redirect URI and its client', async () => {
  const l = await launch();
  assertOAuthError(await exchange(l, { redirect_uri: `${cbUri}x` }), 400, 'invalid_grant', 'redirect_uri one character off');
  const l2 = await launch();
  const other = await exchange({ ...l2, client: narrow });
  assert.ok(other.status === 400 || other.status === 401, other.body);
  assert.ok(['invalid_grant', 'invalid_client'].includes(other.json?.error), `another client's code: ${other.body}`);
});

test('consent: deny sends access_denied and the state back, and no code', async () => {
  const l = await launch({ decision: 'deny' });
  assert.equal(`${l.loc.origin}${l.loc.pathname}`, cbUri);
  assert.equal(l.loc.searchParams.get('error'), 'access_denied');
  assert.equal(l.loc.searchParams.get('state'), l.state);
  assert.equal(l.code, null);
  // the trail says the app was refused, not authorized (the answer is a redirect either way)
  const rid = l.done.headers['x-request-id'];
  const trail = await server.req('GET', '/fhir/AuditEvent?subtype=app-authorization-refused&_count=100');
  assert.equal(trail.status, 200);
  const ids = (trail.json.entry ?? []).map((e) => e.resource.entity?.find((x) => x.type?.code === 'XrequestId')?.what?.identifier?.value);
  assert.ok(ids.includes(rid), `the refusal's record (request ${rid})`);
});

test('consent: an unticked scope is not granted', async () => {
  const { tok } = await tokensFor({ uncheck: ['offline_access', 'user/*.rs'] });
  const granted = set(tok.scope);
  assert.ok(!granted.has('offline_access'), `offline_access unticked: ${tok.scope}`);
  assert.ok(!granted.has('user/*.rs'), `user/*.rs unticked: ${tok.scope}`);
  assert.ok(granted.has('patient/*.rs'));
  assert.equal(tok.refresh_token, undefined, 'no refresh token without offline_access');
});

test('scopes the client is not registered for are neither offered nor granted', async () => {
  const l = await launch({ client: narrow, expect: 'consent' });
  const offered = set(l.consentForm.inputs.filter((i) => i.type === 'checkbox' && i.name === 'scope').map((i) => i.value).join(' '));
  assert.ok(!offered.has('user/*.rs') && !offered.has('offline_access'), `offered: ${[...offered]}`);
  const done = await l.b.submit(l.consent.url, l.consentForm, { button: ['decision', 'approve'] });
  assert.equal(done.status, 302);
  // a tampered consent that adds the scope back changes nothing either
  const r = await exchange({ ...l, code: new URL(done.location).searchParams.get('code') });
  assert.equal(r.status, 200, r.body);
  const granted = set(r.json.scope);
  assert.ok(!granted.has('user/*.rs'), `user/*.rs not granted: ${r.json.scope}`);
  assert.ok(!granted.has('offline_access'));
  assert.equal(r.json.refresh_token, undefined);
  // ticking a box the page did not offer (a forged consent POST) grants nothing more
  const l2 = await launch({ client: narrow, expect: 'consent' });
  const forged = { ...l2.consentForm, inputs: [...l2.consentForm.inputs, { name: 'scope', type: 'checkbox', value: 'user/*.rs', checked: true, attrs: {} }] };
  const d2 = await l2.b.submit(l2.consent.url, forged, { button: ['decision', 'approve'] });
  const code2 = d2.location ? new URL(d2.location).searchParams.get('code') : null;
  if (code2) {
    const r2 = await exchange({ ...l2, code: code2 });
    assert.ok(!set(r2.json?.scope).has('user/*.rs'), `forged consent: ${r2.body}`);
  }
});

test('consent: a POST from a foreign Origin or with a wrong csrf value gets no code', async () => {
  const l = await launch({ expect: 'consent' });
  const foreign = await l.b.submit(l.consent.url, l.consentForm, { button: ['decision', 'approve'], origin: 'https://evil.example' });
  assert.equal(foreign.status, 403, `foreign Origin: ${foreign.status}`);
  const noOrigin = await l.b.submit(l.consent.url, l.consentForm, { button: ['decision', 'approve'], origin: null });
  assert.equal(noOrigin.status, 403, `no Origin: ${noOrigin.status}`);
  const badCsrf = await l.b.submit(l.consent.url, l.consentForm, { button: ['decision', 'approve'], fields: { csrf: 'A'.repeat(43) } });
  assert.ok(badCsrf.status >= 400 && badCsrf.status < 500, `wrong csrf: ${badCsrf.status} ${badCsrf.location ?? ''}`);
  assert.ok(!(badCsrf.location ?? '').includes('code='), 'no code for a wrong csrf');
  // the consent form without the session cookie (another browser) gets no code either
  const stranger = new Browser({ ca: server.ca });
  const cross = await stranger.submit(l.consent.url, l.consentForm, { button: ['decision', 'approve'] });
  assert.ok(!(cross.location ?? '').includes('code='), `no session, no code: ${cross.status} ${cross.location ?? ''}`);
});

test('login failures all look the same: wrong password, unknown user', async () => {
  const wrong = await launch({ password: `${STRONG}x`, expect: 'login' });
  const unknown = await launch({ user: 'nobody.smart', expect: 'login' });
  for (const [what, l] of [['wrong password', wrong], ['unknown user', unknown]]) {
    assert.equal(l.consent.status, 401, `${what}: ${l.consent.status}`);
    assert.equal(sessionCookie(l.consent), undefined, `${what}: no session`);
    assert.match(l.consent.headers['content-type'] ?? '', /^text\/html/);
    assert.match(l.consent.headers['content-security-policy'] ?? '', /frame-ancestors 'none'/);
    assert.doesNotMatch(text(l.consent.body), LEAK, `${what}: nothing that tells which part was wrong`);
    assert.ok(!l.consent.body.includes(STRONG), `${what}: the password is not echoed`);
    authForm(l.consent.body, `${what}: the login form again`);
  }
  assert.equal(normalize(wrong.consent.body), normalize(unknown.consent.body), 'the same page for both');
  failPage = normalize(wrong.consent.body);
});

test('staff: a TOTP code is needed, a wrong one fails alike, and each code works once', async () => {
  const code = totp(docSeed);
  const ok = await launch({ user: 'doc.smart', password: DOC_PW, code, scope: SCOPES, expect: 'consent' });
  assert.ok(sessionCookie(ok.consent));
  const pick = ok.consentForm.inputs.find((i) => i.name === 'patient');
  assert.ok(pick && pick.type === 'text', 'a staff user picks the patient for launch/patient');
  const done = await ok.b.submit(ok.consent.url, ok.consentForm, { fields: { patient: 'smart-p2' }, button: ['decision', 'approve'] });
  assert.equal(done.status, 302, done.body.slice(0, 300));
  const tr = await exchange({ ...ok, code: new URL(done.location).searchParams.get('code') });
  assert.equal(tr.status, 200, tr.body);
  assert.equal(tr.json.patient, 'smart-p2', 'the picked patient is the launch context');
  if (tr.json.id_token) assert.equal(b64uJson(tr.json.id_token.split('.')[1]).fhirUser, `${server.base}/Practitioner/smart-dr`);

  const replay = await launch({ user: 'doc.smart', password: DOC_PW, code, expect: 'login' });
  const wrongCode = await launch({ user: 'doc.smart', password: DOC_PW, code: totp(docSeed, Date.now() / 1000 - 300), expect: 'login' });
  const noCode = await launch({ user: 'doc.smart', password: DOC_PW, expect: 'login' });
  const wrongPw = await launch({ user: 'doc.smart', password: `${DOC_PW}x`, code: totp(docSeed), expect: 'login' });
  for (const [what, l] of [['replayed TOTP', replay], ['wrong TOTP', wrongCode], ['no TOTP', noCode], ['wrong password, right TOTP', wrongPw]]) {
    assert.equal(l.consent.status, 401, `${what}: ${l.consent.status}`);
    assert.equal(sessionCookie(l.consent), undefined, `${what}: no session`);
    assert.doesNotMatch(text(l.consent.body), LEAK, what);
    if (failPage) assert.equal(normalize(l.consent.body), failPage, `${what}: the same page as a wrong password`);
  }
  assert.equal(normalize(replay.consent.body), normalize(wrongCode.consent.body), 'a replayed code looks like a wrong one');
});

test('refresh: rotation, and a reused refresh token ends the whole family', async () => {
  const { tok } = await tokensFor();
  const r1 = tok.refresh_token;
  assert.match(r1, /^cvr_/);
  const next = await refresh(server, pub, r1);
  assert.equal(next.status, 200, next.body);
  assert.match(next.headers['cache-control'] ?? '', /no-store/);
  const a2 = next.json.access_token;
  const r2 = next.json.refresh_token;
  assert.match(a2, /^cva_/);
  assert.match(r2, /^cvr_/);
  assert.notEqual(a2, tok.access_token);
  assert.notEqual(r2, r1, 'a new refresh token every time');
  assert.equal(next.json.token_type, 'Bearer');
  assert.deepEqual(set(next.json.scope), set(tok.scope), 'the same scope');
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', a2)).status, 200);
  assertOAuthError(await refresh(server, pub, r1), 400, 'invalid_grant', 'the old refresh token again');
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', a2)).status, 401, 'the newest access token is revoked with the family');
  assertOAuthError(await refresh(server, pub, r2), 400, 'invalid_grant', 'the newest refresh token is revoked with the family');
  assertOAuthError(await refresh(server, pub, `cvr_${crypto.randomBytes(32).toString('base64url')}`), 400, 'invalid_grant', 'a made-up refresh token');
  assertOAuthError(await tokenReq(server, { grant_type: 'password', username: 'pat.smart', password: STRONG }, { client: pub }), 400, 'unsupported_grant_type', 'password grant');
});

test('revocation: always 200, the token stops at once, and a client revokes only its own tokens', async () => {
  const { tok } = await tokensFor();
  const at = tok.access_token;
  // another client cannot revoke it (RFC 7009 2.1: the token must have been issued to the caller)
  const foreign = await formPost(server, '/auth/revoke', { token: at, client_id: narrow.id });
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', at)).status, 200, 'still valid after another client tried to revoke it');
  assert.equal(foreign.status, 200, `another client's revocation: ${foreign.status} ${foreign.body}`);
  const r = await formPost(server, '/auth/revoke', { token: at, client_id: pub.id });
  assert.equal(r.status, 200, r.body);
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', at)).status, 401, 'revoked');
  assert.equal((await formPost(server, '/auth/revoke', { token: at, client_id: pub.id })).status, 200, 'again: 200');
  assert.equal((await formPost(server, '/auth/revoke', { token: 'cva_nonsense', client_id: pub.id })).status, 200, 'unknown: 200');
  // revoking the refresh token ends it too
  const rr = await formPost(server, '/auth/revoke', { token: tok.refresh_token, token_type_hint: 'refresh_token', client_id: pub.id });
  assert.equal(rr.status, 200);
  assertOAuthError(await refresh(server, pub, tok.refresh_token), 400, 'invalid_grant', 'a revoked refresh token');
});

test('confidential client: Basic auth at the token endpoint, wrong secret is invalid_client', async () => {
  const l = await launch({ client: conf });
  const fake = { grant_type: 'authorization_code', code: 'not-a-code', redirect_uri: cbUri, code_verifier: l.verifier };
  assertOAuthError(await tokenReq(server, fake, { auth: basic({ id: conf.id, secret: `${conf.secret}x` }) }), 401, 'invalid_client', 'wrong secret');
  assertOAuthError(await tokenReq(server, { ...fake, client_id: conf.id }, { auth: undefined }), 401, 'invalid_client', 'a confidential client without its secret');
  const r = await exchange(l);
  assert.equal(r.status, 200, r.body);
  assert.match(r.json.access_token, /^cva_/);
  conf.tok = r.json;
  // its refresh needs the secret too
  assertOAuthError(await refresh(server, { id: conf.id }, r.json.refresh_token, { auth: basic({ id: conf.id, secret: 'wrong' }) }), 401, 'invalid_client', 'refresh with a wrong secret');
});

test('introspection: active for the confidential client\'s own token, inactive otherwise, public clients refused', async () => {
  assert.ok(conf.tok, 'the confidential launch ran');
  const at = conf.tok.access_token;
  const own = await introspect(server, at, basic(conf));
  assert.equal(own.status, 200, own.body);
  assert.match(own.headers['cache-control'] ?? '', /no-store/);
  assert.equal(own.json.active, true);
  assert.deepEqual(set(own.json.scope), set(conf.tok.scope));
  assert.equal(own.json.client_id, conf.id);
  assert.ok(own.json.sub, 'sub');
  assert.ok(own.json.exp > Date.now() / 1000, 'exp');
  assert.ok(own.json.token_type, 'token_type');
  const other = await introspect(server, main?.tok?.access_token ?? 'cva_none', basic(conf));
  assert.equal(other.status, 200);
  assert.deepEqual(other.json, { active: false }, 'another client\'s token: only active false');
  assert.deepEqual((await introspect(server, 'cva_unknown', basic(conf))).json, { active: false });
  assertOAuthError(await formPost(server, '/auth/introspect', { token: main?.tok?.access_token ?? 'cva_none', client_id: pub.id }), 401, 'invalid_client', 'a public client');
  assertOAuthError(await formPost(server, '/auth/introspect', { token: at }), 401, 'invalid_client', 'no client');
  assertOAuthError(await introspect(server, at, basic({ id: conf.id, secret: `${conf.secret}x` })), 401, 'invalid_client', 'wrong secret');
  const rv = await formPost(server, '/auth/revoke', { token: at }, basic(conf));
  assert.equal(rv.status, 200);
  assert.deepEqual((await introspect(server, at, basic(conf))).json, { active: false }, 'revoked');
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', at)).status, 401);
});

test('a real SMART app (npm fhirclient) launches against the server and reads its patient', async () => {
  const require = createRequire(import.meta.url);
  const fhirclientPath = require.resolve('fhirclient');
  const appFile = path.join(server.tmpDir, 'smart-app.cjs');
  fs.writeFileSync(appFile, APP_SOURCE);
  const caFile = path.join(server.dataDir, 'tls', 'cert.pem');
  const child = spawn(process.execPath, [appFile], {
    env: { ...process.env, NODE_EXTRA_CA_CERTS: caFile, FHIRCLIENT: fhirclientPath, APP_PORT: String(appPort),
      FHIR_ISS: server.base, CLIENT_ID: pub.id, REDIRECT_URI: cbUri, SCOPE: NARROW_SCOPES },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (c) => { out += c; });
  child.stderr.on('data', (c) => { out += c; });
  const exited = new Promise((res) => child.on('exit', res));
  try {
    const deadline = Date.now() + 10_000;
    while (!out.includes('app ready') && Date.now() < deadline) {
      if (child.exitCode !== null) break;
      await sleep(50);
    }
    assert.ok(out.includes('app ready'), `the app started: ${out}`);
    const log = [];
    const b = new Browser({ ca: server.ca, log });
    const start = await b.get(`http://localhost:${appPort}/launch`);
    assert.equal(start.status, 302, `${start.status} ${start.body}`);
    const az = new URL(start.location);
    assert.equal(`${az.origin}${az.pathname}`, `${server.origin}/auth/authorize`);
    assert.equal(az.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(az.searchParams.get('redirect_uri'), cbUri, 'fhirclient sends the registered redirect URI');
    assert.equal(az.searchParams.get('aud'), server.base);
    const page = await b.get(start.location);
    assert.equal(page.status, 200, `login page: ${page.status} ${page.location ?? ''}`);
    const consent = await b.submit(page.url, authForm(page.body, 'login page'), { fields: { username: 'pat.smart', password: STRONG } });
    assert.equal(consent.status, 200, `consent: ${consent.status}`);
    const back = await b.submit(consent.url, authForm(consent.body, 'consent page'), { button: ['decision', 'approve'] });
    assert.equal(back.status, 302);
    assert.ok(back.location.startsWith(`${cbUri}?`), back.location);
    const done = await b.get(back.location);
    assert.equal(done.status, 200, `the app's answer: ${done.body}\n${log.join('\n')}\n${out}`);
    const answer = JSON.parse(done.body);
    assert.equal(answer.patient.resourceType, 'Patient');
    assert.equal(answer.patient.id, 'smart-p1');
    assert.equal(answer.context, 'smart-p1', 'the app got the patient context');
    assert.ok(set(answer.scope).has('patient/*.rs'), answer.scope);
  } finally {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  }
});

test('disabling a user stops its access token at once, refuses its refresh token and its logins', async () => {
  const { tok } = await tokensFor({ user: 'pat.gone' });
  assert.equal(tok.patient, 'smart-p2');
  assert.equal((await fhir(server, '/fhir/Patient/smart-p2', tok.access_token)).status, 200);
  const r = cli(server, ['user', 'disable', '--username', 'pat.gone']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((await fhir(server, '/fhir/Patient/smart-p2', tok.access_token)).status, 401, 'the access token stops at once');
  assertOAuthError(await refresh(server, pub, tok.refresh_token), 400, 'invalid_grant', 'a disabled user\'s refresh token');
  const again = await launch({ user: 'pat.gone', expect: 'login' });
  assert.equal(again.consent.status, 401);
  assert.doesNotMatch(text(again.consent.body), LEAK);
  if (failPage) assert.equal(normalize(again.consent.body), failPage, 'a disabled account looks like a wrong password');
});

test('disabling a client stops its tokens at once and refuses its refresh (invalid_client)', async () => {
  const { tok } = await tokensFor({ client: conf });
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', tok.access_token)).status, 200);
  const r = cli(server, ['client', 'disable', '--id', conf.id]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((await fhir(server, '/fhir/Patient/smart-p1', tok.access_token)).status, 401, 'the access token stops at once');
  assertOAuthError(await refresh(server, conf, tok.refresh_token), 401, 'invalid_client', 'a disabled client refreshing');
  const { challenge } = pkce();
  const az = await new Browser({ ca: server.ca }).get(authorizeUrl(server, { client_id: conf.id, state: 'st-d', code_challenge: challenge }));
  assert.equal(az.status, 400, 'a disabled client gets no login page');
  assert.equal(az.location, undefined);
});

test('an expired access token is refused (server with access-token-life 2 s); its refresh token still works', async () => {
  const help = spawnSync(server.bin, ['serve', '--help'], { encoding: 'utf8', timeout: 30_000 });
  assert.match(`${help.stdout}${help.stderr}`, /access-token-life/, 'the server has an access-token-life option (CAREVAULT_ACCESS_TOKEN_LIFE)');
  const s = await start({ name: 'smart-expiry', env: { CAREVAULT_ACCESS_TOKEN_LIFE: '2' } });
  try {
    const c = await setup(s);
    const { tok } = await tokensFor({ s, client: c.pub });
    assert.equal(tok.expires_in, 2);
    assert.equal((await fhir(s, '/fhir/Patient/smart-p1', tok.access_token)).status, 200);
    await sleep(3200);
    assert.equal((await fhir(s, '/fhir/Patient/smart-p1', tok.access_token)).status, 401, 'expired');
    assert.deepEqual((await introspect(s, tok.access_token, basic(c.conf))).json, { active: false }, 'expired: inactive');
    const next = await refresh(s, c.pub, tok.refresh_token);
    assert.equal(next.status, 200, next.body);
    assert.equal((await fhir(s, '/fhir/Patient/smart-p1', next.json.access_token)).status, 200);
  } finally {
    try { await s.stop(); } finally { await s.cleanup(); }
  }
});

test('behind a proxy, public-url fixes the issuer and audience; a Host header cannot choose them', async () => {
  const bad = spawnSync(server.bin, ['serve', '--data', server.dataDir, '--public-url', 'http://fhir.example.test'],
    { encoding: 'utf8', timeout: 30_000, env: server.env });
  assert.equal(bad.status === 0, false, 'http:// is refused');
  assert.match(bad.stderr, /public-url/);
  const s = await start({ name: 'smart-public', env: { CAREVAULT_PUBLIC_URL: 'https://fhir.example.test:9443' } });
  try {
    for (const host of [new URL(s.origin).host, 'evil.example']) {
      const c = await new Promise((resolve, reject) => {
        const u = new URL('/.well-known/smart-configuration', s.origin);
        https.get({ hostname: u.hostname, port: u.port, path: u.pathname, ca: s.ca, servername: 'localhost',
          headers: { host, accept: 'application/json' } }, (res) => {
          let b = '';
          res.on('data', (d) => { b += d; });
          res.on('end', () => resolve({ status: res.statusCode, json: JSON.parse(b) }));
        }).on('error', reject);
      });
      assert.equal(c.status, 200);
      assert.equal(c.json.issuer, 'https://fhir.example.test:9443/fhir', `Host ${host}`);
      assert.equal(c.json.token_endpoint, 'https://fhir.example.test:9443/auth/token');
    }
  } finally {
    try { await s.stop(); } finally { await s.cleanup(); }
  }
});
