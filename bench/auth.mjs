// make bench, identity part: registers a backend client (RS384 key made here),
// a patient account and a public SMART app on the running server's data
// directory, then prints "token=<backend access token>", "login_ms=<mean of
// N logins>" and "user_token=<the patient's access token, from a SMART
// standalone launch: sign-in and consent pages, code, PKCE>".
//   node bench/auth.mjs BIN DATA ORIGIN CACERT N
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { launch, requester } from './smart.mjs';

const [bin, data, origin, cacert, nArg] = process.argv.slice(2);
const ca = fs.readFileSync(cacert);
const agent = new https.Agent({ keepAlive: true, ca });
const request = requester(origin, agent);
const post = (p, body, type, headers = {}) => request('POST', p, body, { 'content-type': type, ...headers });
const run = (args, input = '') => {
  const r = spawnSync(bin, args, { encoding: 'utf8', input });
  if (r.status !== 0) throw new Error(`${args.slice(0, 2).join(' ')}: ${r.stderr}`);
  return r.stdout;
};

const { publicKey, privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwks = path.join(data, '..', 'bench-jwks.json');
fs.writeFileSync(jwks, JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'b1', alg: 'RS384' }] }));
const id = /client_id: (\w+)/.exec(run(['client', 'add', '--data', data, '--name', 'bench', '--type', 'backend',
  '--jwks-file', jwks, '--scope', 'system/*.rs']))[1];
const b64u = (x) => Buffer.from(JSON.stringify(x)).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const signed = `${b64u({ alg: 'RS384', typ: 'JWT', kid: 'b1' })}.${b64u({ iss: id, sub: id, aud: `${origin}/auth/token`, exp: now + 240, jti: crypto.randomUUID() })}`;
const assertion = `${signed}.${crypto.sign('sha384', Buffer.from(signed), privateKey).toString('base64url')}`;
const tok = await post('/auth/token', new URLSearchParams({ grant_type: 'client_credentials', scope: 'system/*.rs',
  client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: assertion }).toString(),
'application/x-www-form-urlencoded');
if (tok.status !== 200) throw new Error(`token: ${tok.status}`);
console.log(`token=${JSON.parse(tok.body).access_token}`);

const pw = 'bench passphrase that is long enough 7';
run(['user', 'add', '--data', data, '--username', 'bench.patient', '--role', 'patient', '--patient', 'bench-1', '--password-stdin'], `${pw}\n`);
const n = Number(nArg) || 10;
let total = 0;
for (let i = 0; i < n; i++) {
  const t0 = process.hrtime.bigint();
  const r = await post('/auth/login', JSON.stringify({ username: 'bench.patient', password: pw }), 'application/json');
  total += Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.status !== 200) throw new Error(`login: ${r.status}`);
}
console.log(`login_ms=${(total / n).toFixed(1)}`);

// a SMART standalone launch by the patient, the way a browser would walk it
const redirect = 'http://localhost:9/cb';
const scope = 'launch/patient patient/Patient.rs patient/Observation.rs';
const app = /client_id: (\w+)/.exec(run(['client', 'add', '--data', data, '--name', 'bench app', '--type', 'public',
  '--redirect-uri', redirect, '--scope', scope]))[1];
const userToken = await launch(request, origin, { app, redirect, scope, username: 'bench.patient', password: pw });
console.log(`user_token=${userToken}`);
agent.destroy();
