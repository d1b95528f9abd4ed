// Helpers of the audit trail suite (audit.test.mjs): reading records back
// through the API, the `carevault audit` command line, raw SQL on the trail's
// tables (SQLite file or PostgreSQL database), the chain's hash, a local https
// sink for webhooks and checkpoint lines, and the OAuth flows with their
// request ids.
//
// Nothing here prints PHI: messages carry ids, request ids, statuses and codes.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { smartTokenRes } from './access.mjs';

export const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
export const J = { 'content-type': 'application/json' };
export const DISCLOSURE_URL = 'https://carevault.dev/fhir/StructureDefinition/disclosure';
export const DCM = 'http://dicom.nema.org/resources/ontology/DCM';

export const rid = (res) => {
  const v = res?.headers?.['x-request-id'];
  assert.ok(v, `a response without X-Request-Id (status ${res?.status})`);
  return String(v);
};

/** What a record says, flattened: the fields the tests check. */
export function facts(ae) {
  const ent = ae.entity ?? [];
  const first = ae.agent?.[0] ?? {};
  return {
    id: ae.id,
    type: ae.type?.code,
    typeSystem: ae.type?.system,
    subtype: ae.subtype?.[0]?.code,
    action: ae.action,
    outcome: ae.outcome,
    outcomeDesc: ae.outcomeDesc,
    recorded: ae.recorded,
    agent: first.who?.identifier?.value,
    agentSystem: first.who?.identifier?.system,
    role: first.role?.[0]?.text,
    link: first.who?.reference,
    client: ae.agent?.find((a, i) => i > 0 && a.type?.coding?.[0]?.code === '110150')?.who?.identifier?.value,
    patients: ent.filter((e) => e.type?.code === '1').map((e) => e.what?.reference),
    entities: ent.filter((e) => e.type?.code === '2' && e.what?.reference).map((e) => e.what.reference),
    target: ent.find((e) => e.role?.code === '11')?.what?.identifier?.value,
    requestId: ent.find((e) => e.type?.code === 'XrequestId')?.what?.identifier?.value,
    purpose: ae.purposeOfEvent?.[0]?.coding?.[0]?.code,
    btg: (ae.meta?.security ?? []).some((s) => s.code === 'BTG'),
    hasQuery: ent.some((e) => e.query !== undefined),
  };
}

/** Every AuditEvent of a search, all pages (at most `maxPages`). */
export async function searchTrail(reader, query, { maxPages = 50 } = {}) {
  const out = [];
  let url = `/fhir/AuditEvent${query ? `?${query}` : ''}`;
  let pages = 0;
  let first;
  while (url) {
    const r = await reader.call('GET', url);
    assert.equal(r.status, 200, `AuditEvent search (page ${pages + 1}): ${r.status} ${r.body.slice(0, 200)}`);
    assert.equal(r.json?.resourceType, 'Bundle');
    first ??= r;
    for (const e of r.json.entry ?? []) out.push(e.resource);
    pages++;
    const next = r.json.link?.find((l) => l.relation === 'next')?.url;
    url = next && pages < maxPages ? (() => { const u = new URL(next); return u.pathname + u.search; })() : null;
  }
  return { records: out, first };
}

/** The record of a request (by its X-Request-Id), found by agent and time; undefined when none. */
export async function findRecord(reader, requestId, { agent, since, extra = '' }) {
  const q = new URLSearchParams({ date: `ge${new Date(since).toISOString()}`, _count: '1000' });
  if (agent) q.set('agent', agent);
  const { records } = await searchTrail(reader, `${q}${extra}`);
  const hits = records.filter((ae) => facts(ae).requestId === requestId);
  return hits;
}

// ---------------------------------------------------------------- the command line

/** Runs `carevault audit ...` (or another command) synchronously: {status, stdout, stderr, out}. */
export function cli(server, args, { env = {}, timeout = 60_000 } = {}) {
  const r = spawnSync(server.bin, args, { encoding: 'utf8', timeout, env: { ...server.env, ...env } });
  if (r.error) throw new Error(`carevault ${args[0]} ${args[1] ?? ''} could not run: ${r.error.message}`);
  return { status: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, out: `${r.stdout}\n${r.stderr}` };
}

/** `carevault audit verify` on a data dir (and a store URL for PostgreSQL). */
export function verify(server, { dataDir = server.dataDir, store, checkpoints } = {}) {
  const args = ['audit', 'verify', '--data', dataDir, '--quiet'];
  if (checkpoints) args.push('--checkpoints', checkpoints);
  const env = {};
  if (store !== undefined) env.CAREVAULT_STORE = store;
  const r = cli(server, args, { env });
  const m = /first bad record: (\d+)/.exec(r.stdout);
  return { ...r, bad: m ? Number(m[1]) : null, whole: /the audit trail is whole/.test(r.stdout) };
}

// ---------------------------------------------------------------- raw SQL on the trail

const isPg = (server) => Boolean(server.env.CAREVAULT_STORE);

/**
 * A handle on a server's store for raw SQL (the server must be stopped for
 * SQLite edits). copy() gives an independent copy to tamper with:
 * {dataDir, store (URL or undefined), sql(), rows(), hex(col), blob(hex), drop()}.
 */
export function storeHandle(server, { dataDir = server.dataDir, url = server.env.CAREVAULT_STORE } = {}) {
  const pg = Boolean(url);
  const file = path.join(dataDir, 'store.db');
  const h = {
    pg, dataDir, store: url, file,
    hex: (c) => (pg ? `encode(${c}, 'hex')` : `lower(hex(${c}))`),
    blob: (x) => (pg ? `decode('${x}', 'hex')` : `X'${x}'`),
    sql(text) {
      const r = pg
        ? spawnSync('psql', [url, '-v', 'ON_ERROR_STOP=1', '-qAt'], { input: text, encoding: 'utf8', timeout: 60_000 })
        : spawnSync('sqlite3', ['-bail', file], { input: text, encoding: 'utf8', timeout: 60_000 });
      if (r.status !== 0) throw new Error(`SQL failed (${pg ? 'psql' : 'sqlite3'} ${r.status}): ${r.stderr.slice(0, 500)}`);
      return r.stdout;
    },
    /** Rows of a SELECT as objects. */
    rows(select) {
      if (pg) {
        const out = h.sql(`SELECT coalesce(json_agg(t), '[]'::json) FROM (${select}) t;`).trim();
        return JSON.parse(out);
      }
      const r = spawnSync('sqlite3', ['-json', file, select], { encoding: 'utf8', timeout: 60_000, maxBuffer: 256 << 20 });
      if (r.status !== 0) throw new Error(`sqlite3 SELECT failed: ${r.stderr.slice(0, 500)}`);
      return r.stdout.trim() ? JSON.parse(r.stdout) : [];
    },
    /** The whole chain, oldest first, blobs as hex. */
    chain() {
      return h.rows(`SELECT pos, at_us, action, outcome, flags, kind, subtype, agent, id, nres, npat, ${h.hex('keys')} AS keys, `
        + `${h.hex('body')} AS body, ${h.hex('prev')} AS prev, ${h.hex('hash')} AS hash FROM cv_audit ORDER BY pos`)
        .map((r) => ({ ...r, pos: Number(r.pos), at_us: BigInt(r.at_us), outcome: Number(r.outcome), flags: Number(r.flags),
          nres: Number(r.nres), npat: Number(r.npat) }));
    },
    head() {
      const [r] = h.rows(`SELECT pos, ${h.hex('hash')} AS hash FROM cv_audit_head WHERE one = 1`);
      return { pos: Number(r.pos), hash: r.hash };
    },
    checkpoints() {
      return h.rows(`SELECT pos FROM cv_audit_checkpoint ORDER BY pos`).map((r) => Number(r.pos));
    },
    drop() {
      if (pg) dropDatabase(url);
      else fs.rmSync(dataDir, { recursive: true, force: true });
    },
    /** An independent copy (the server must be stopped). */
    copy(tag) {
      const n = `${tag}-${crypto.randomBytes(3).toString('hex')}`;
      if (pg) {
        const db = `cvx_${n.replace(/[^a-z0-9]/g, '_')}_${process.pid}`;
        const orig = /\/([^/?]+)\?/.exec(url)[1];
        adminSql(url, `CREATE DATABASE ${db} TEMPLATE ${orig}`);
        return storeHandle(server, { dataDir, url: url.replace(/\/([^/?]*)\?/, `/${db}?`) });
      }
      const dir = path.join(path.dirname(dataDir), `copy-${n}`);
      fs.cpSync(dataDir, dir, { recursive: true });
      return storeHandle(server, { dataDir: dir, url: undefined });
    },
  };
  return h;
}

function adminSql(url, text) {
  const base = url.replace(/\/([^/?]*)\?/, '/postgres?');
  const r = spawnSync('psql', [base, '-v', 'ON_ERROR_STOP=1', '-qc', text], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`psql: ${r.stderr.slice(0, 300)}`);
}

function dropDatabase(url) {
  const db = /\/([^/?]+)\?/.exec(url)[1];
  try { adminSql(url, `DROP DATABASE IF EXISTS ${db}`); } catch { /* best effort */ }
}

/** The chain hash of a row (store/audit.c): SHA-256 over "cv-audit-1" and every field. */
export function chainHash(r) {
  const h = crypto.createHash('sha256');
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt.asUintN(64, BigInt(v))); h.update(b); };
  const bytes = (buf) => { u64(buf.length); if (buf.length) h.update(buf); };
  const str = (s) => bytes(Buffer.from(s ?? '', 'utf8'));
  h.update('cv-audit-1');
  u64(r.pos);
  h.update(Buffer.from(r.prev, 'hex'));
  u64(r.at_us);
  u64(r.action.charCodeAt(0));
  u64(r.outcome);
  u64(r.flags);
  str(r.kind);
  str(r.subtype);
  str(r.agent);
  str(r.id);
  u64(r.nres);
  u64(r.npat);
  bytes(Buffer.from(r.keys, 'hex'));
  bytes(Buffer.from(r.body, 'hex'));
  return h.digest('hex');
}

/** The store's whole content as text to grep: SQLite files (main, WAL, shm) or a pg_dump. */
export function rawStore(server) {
  if (isPg(server)) {
    const r = spawnSync('pg_dump', ['--data-only', server.env.CAREVAULT_STORE], { encoding: 'latin1', timeout: 120_000, maxBuffer: 1 << 30 });
    assert.equal(r.status, 0, `pg_dump: ${String(r.stderr).slice(0, 300)}`);
    return [Buffer.from(r.stdout, 'latin1')];
  }
  const out = [];
  for (const f of ['store.db', 'store.db-wal', 'store.db-shm']) {
    const p = path.join(server.dataDir, f);
    if (fs.existsSync(p)) out.push(fs.readFileSync(p));
  }
  return out;
}

/** Whether text appears in the raw bytes: as UTF-8, UTF-16LE, or as hex (a bytea dump). */
export function rawContains(buffers, text) {
  const needles = [Buffer.from(text, 'utf8'), Buffer.from(text, 'utf16le'),
    Buffer.from(Buffer.from(text, 'utf8').toString('hex'), 'latin1')];
  return buffers.some((b) => needles.some((n) => b.includes(n)));
}

// ---------------------------------------------------------------- a local https sink

/** An https server on 127.0.0.1 with a self-signed certificate: {url, caFile, posts: [{path, body, json}], close()}. */
export async function httpsSink(dir) {
  fs.mkdirSync(dir, { recursive: true });
  const key = path.join(dir, 'sink.key');
  const cert = path.join(dir, 'sink.crt');
  const r = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-addext', 'basicConstraints=critical,CA:TRUE'],
  { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `openssl: ${r.stderr}`);
  const posts = [];
  const waiters = [];
  const srv = https.createServer({ key: fs.readFileSync(key), cert: fs.readFileSync(cert) }, (req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let json;
      try { json = JSON.parse(body); } catch { json = undefined; }
      posts.push({ path: req.url, method: req.method, type: req.headers['content-type'], body, json, at: Date.now() });
      for (const w of waiters.splice(0)) w();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  return {
    url: `https://127.0.0.1:${port}`, caFile: cert, posts,
    /** Waits until pred(posts) holds (or timeout): returns whether it did. */
    async until(pred, timeoutMs) {
      const end = Date.now() + timeoutMs;
      while (!pred(posts)) {
        const left = end - Date.now();
        if (left <= 0) return false;
        await new Promise((resolve) => { const t = setTimeout(resolve, Math.min(left, 250)); waiters.push(() => { clearTimeout(t); resolve(); }); });
      }
      return true;
    },
    close: () => new Promise((resolve) => { srv.closeAllConnections?.(); srv.close(() => resolve()); }),
  };
}

// ---------------------------------------------------------------- OAuth with request ids

export { backendTokenRes } from './access.mjs';

export { addBackend } from './access.mjs';

/** The authorization-code flow for a patient account (no TOTP): {tok, res (token response)}. */
export const smartCodeFlow = (server, clientId, acct, scope) => smartTokenRes(server, clientId, acct, { scope });
