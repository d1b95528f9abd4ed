// Shared assertions and client construction for the carevault e2e suites.
import assert from 'node:assert/strict';
import https from 'node:https';
import { Client } from 'fhir-kit-client';

export const SECURITY_HEADERS = [
  'strict-transport-security',
  'x-content-type-options',
  'referrer-policy',
  'content-security-policy',
  'x-request-id',
];

/** Every response: HSTS, nosniff, no-referrer, CSP, X-Request-Id. */
export function assertSecurityHeaders(res, { fhir = false } = {}) {
  const h = res.headers;
  for (const name of SECURITY_HEADERS) {
    assert.ok(h[name] !== undefined && String(h[name]).length > 0, `missing header ${name} (status ${res.status})`);
  }
  assert.match(String(h['strict-transport-security']), /max-age=\d+/i);
  assert.equal(String(h['x-content-type-options']).toLowerCase(), 'nosniff');
  assert.equal(String(h['referrer-policy']).toLowerCase(), 'no-referrer');
  if (fhir) {
    assert.match(String(h['cache-control'] || ''), /no-store/i, 'FHIR responses must carry Cache-Control: no-store');
  }
}

export function isOperationOutcome(json) {
  return !!json && typeof json === 'object' && json.resourceType === 'OperationOutcome'
    && Array.isArray(json.issue) && json.issue.length > 0;
}

/** Asserts the response is an OperationOutcome with well-formed issues. */
export function assertOperationOutcome(res, msg = '') {
  assert.ok(isOperationOutcome(res.json),
    `expected OperationOutcome body ${msg} (status ${res.status}), got: ${String(res.body).slice(0, 300)}`);
  for (const issue of res.json.issue) {
    assert.ok(['fatal', 'error', 'warning', 'information'].includes(issue.severity), `bad issue.severity ${issue.severity}`);
    assert.equal(typeof issue.code, 'string', 'issue.code must be a string');
  }
  const ct = String(res.headers['content-type'] || '');
  assert.match(ct, /application\/(fhir\+)?json/i, `OperationOutcome content-type ${ct}`);
}

/** status must equal one of `expected` (number or array). */
export function assertStatus(res, expected, msg = '') {
  const list = Array.isArray(expected) ? expected : [expected];
  assert.ok(list.includes(res.status),
    `expected status ${list.join('|')} ${msg}, got ${res.status}: ${String(res.body).slice(0, 300)}`);
}

/** Strips server-managed meta fields; drops meta if it ends up empty and the original had none. */
export function stripServerMeta(resource, hadMeta) {
  const copy = structuredClone(resource);
  if (copy && copy.meta && typeof copy.meta === 'object') {
    delete copy.meta.versionId;
    delete copy.meta.lastUpdated;
    if (!hadMeta && Object.keys(copy.meta).length === 0) delete copy.meta;
  }
  return copy;
}

let AgentClass;
/**
 * Node's global fetch (used by fhir-kit-client 2.x) is undici and ignores the
 * classic `agent` option.  A dispatcher with the test CA is needed instead.
 * Node bundles undici but does not export it, so take the Agent class from
 * the lazily created global dispatcher.
 */
export async function undiciAgentClass() {
  if (AgentClass) return AgentClass;
  const sym = Symbol.for('undici.globalDispatcher.1');
  if (!globalThis[sym]) await (await fetch('data:,x')).text();
  const d = globalThis[sym];
  if (!d || typeof d.constructor !== 'function') throw new Error('cannot find undici dispatcher class');
  AgentClass = d.constructor;
  return AgentClass;
}

/** fhir-kit-client Client configured against a started server. */
export async function fhirClient(server, { connections = 16 } = {}) {
  const Agent = await undiciAgentClass();
  const dispatcher = new Agent({ connect: { ca: server.ca }, connections });
  const client = new Client({
    baseUrl: server.base,
    customHeaders: { Authorization: `Bearer ${server.token}` },
    requestOptions: {
      // `agent` is honoured by node-fetch based transports; undici uses `dispatcher`.
      agent: new https.Agent({ ca: server.ca, keepAlive: true }),
      dispatcher,
    },
  });
  client.__dispatcher = dispatcher;
  return client;
}

/** Run `fn` over `items` with at most `limit` in flight. */
export async function mapLimit(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (true) {
      const i = next++;
      if (i >= items.length) return;
      results[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
