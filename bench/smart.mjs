// make bench: a SMART standalone launch the way a browser walks it (sign-in
// page, optional TOTP code, consent page with every scope ticked, code, PKCE),
// returning the access token; and the HTTPS request helper. Shared by
// auth.mjs and policy.mjs.
import crypto from 'node:crypto';
import https from 'node:https';

/** A request function for origin over one keep-alive agent: (method, path, body, headers) → {status, body, headers}. */
export function requester(origin, agent) {
  return (method, p, body, headers = {}) => new Promise((resolve, reject) => {
    const r = https.request(`${origin}${p}`, { method, agent, headers }, (res) => {
      let b = '';
      res.on('data', (c) => { b += c; });
      res.on('end', () => resolve({ status: res.statusCode, body: b, headers: res.headers }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

const unhtml = (v) => v.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
const fields = (html) => [...html.matchAll(/<input type="hidden" name="([^"]+)" value="([^"]*)">/g)].map((m) => [m[1], unhtml(m[2])]);

/** request(method, path, body, headers) → {status, body, headers}; returns the access token. */
export async function launch(request, origin, { app, redirect, scope, username, password, code }) {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const q = new URLSearchParams({ response_type: 'code', client_id: app, redirect_uri: redirect, scope, state: 's',
    aud: `${origin}/fhir`, code_challenge: crypto.createHash('sha256').update(verifier).digest('base64url'),
    code_challenge_method: 'S256' });
  const form = { 'content-type': 'application/x-www-form-urlencoded', origin };
  let page = await request('GET', `/auth/authorize?${q}`);
  const signIn = new URLSearchParams([...fields(page.body), ['username', username], ['password', password],
    ...(code ? [['code', code]] : [])]);
  page = await request('POST', '/auth/authorize', signIn.toString(), form);
  if (page.status !== 200) throw new Error(`sign-in: ${page.status}`);
  const cookie = [].concat(page.headers['set-cookie'])[0].split(';')[0];
  const consent = new URLSearchParams([...fields(page.body), ['decision', 'approve'],
    ...[...page.body.matchAll(/name="scope" value="([^"]+)" checked/g)].map((m) => ['scope', unhtml(m[1])])]);
  const back = await request('POST', '/auth/authorize', consent.toString(), { ...form, cookie });
  const got = new URL(back.headers.location).searchParams.get('code');
  const t = await request('POST', '/auth/token', new URLSearchParams({ grant_type: 'authorization_code', code: got,
    redirect_uri: redirect, code_verifier: verifier, client_id: app }).toString(),
  { 'content-type': 'application/x-www-form-urlencoded' });
  if (t.status !== 200) throw new Error(`token: ${t.status}`);
  return JSON.parse(t.body).access_token;
}
