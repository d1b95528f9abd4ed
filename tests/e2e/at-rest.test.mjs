// Encryption at rest, attacked from the disk: a synthetic Synthea patient
// (names, address, phone, SSN, MRN, birth date) and the resources of their
// record are written through the API; then the database file, its WAL and
// shared-memory files, and the server's log are searched for those strings.
// None may be there in plaintext (also not the logical ids), while the API
// still reads every resource back.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { E2E_DIR, start } from './lib/server.mjs';

const BUNDLE = path.join(E2E_DIR, '../data/synthea/Liz_Conn_27c911c6-f045-4ffa-af5d-6eba57ac94b2.json');
let server;
const resources = JSON.parse(fs.readFileSync(BUNDLE, 'utf8')).entry.map((e) => e.resource);
const patient = resources.find((r) => r.resourceType === 'Patient');

// Direct identifiers of the patient (and their practitioner), as they appear in the JSON.
function needles() {
  const out = new Set([patient.id, patient.birthDate]);
  for (const n of patient.name || []) {
    if (n.family) out.add(n.family);
    for (const g of n.given || []) out.add(g);
  }
  for (const a of patient.address || []) {
    for (const l of a.line || []) out.add(l);
    if (a.city) out.add(a.city);
    if (a.postalCode) out.add(a.postalCode);
  }
  for (const t of patient.telecom || []) out.add(t.value);
  for (const i of patient.identifier || []) out.add(i.value);
  const pract = resources.find((r) => r.resourceType === 'Practitioner');
  for (const n of pract?.name || []) if (n.family) out.add(n.family);
  // as they would stand in plaintext JSON (quoted), and bare when long enough not
  // to occur by chance in a database's own catalogs ("Conn" is in "Connection")
  const words = [...out].filter((s) => typeof s === 'string' && s.length >= 4);
  return [...words.map((w) => `"${w}"`), ...words.filter((w) => w.length >= 8)];
}

// The files that hold the store: the embedded store's, or with CV_PG_BASE the
// whole PostgreSQL cluster directory (tables, TOAST, WAL).
function storeFiles() {
  if (!process.env.CV_PG_BASE) {
    return ['store.db', 'store.db-wal', 'store.db-shm'].map((f) => path.join(server.dataDir, f))
      .filter((f) => fs.existsSync(f));
  }
  const root = path.join(decodeURIComponent(/host=([^&]+)/.exec(process.env.CV_PG_BASE)[1]), 'data');
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const f = path.join(d, e.name);
      if (e.isDirectory()) walk(f);
      else if (e.isFile()) out.push(f);
    }
  };
  for (const sub of ['base', 'pg_wal', 'global']) walk(path.join(root, sub));
  return out;
}

before(async () => {
  server = await start({ name: 'at-rest' });
  for (const r of resources) {
    const res = await server.req('PUT', `/fhir/${r.resourceType}/${r.id}`, {
      body: JSON.stringify(r), headers: { 'content-type': 'application/fhir+json' },
    });
    assert.ok([200, 201].includes(res.status), `${r.resourceType}/${r.id}: ${res.status} ${res.body?.toString().slice(0, 300)}`);
  }
});

after(async () => {
  if (server) {
    try { await server.stop(); } finally { await server.cleanup(); }
  }
});

test('the record reads back through the API', async () => {
  const res = await server.req('GET', `/fhir/Patient/${patient.id}`);
  assert.equal(res.status, 200);
  const got = JSON.parse(res.body.toString());
  assert.deepEqual(got.name, patient.name);
  assert.equal(got.birthDate, patient.birthDate);
});

test('no direct identifier is in the database, its WAL or the log', async () => {
  const words = needles();
  assert.ok(words.length >= 8, `expected a handful of identifiers, got ${words.length}`);
  const files = storeFiles();
  assert.ok(files.some((f) => f.endsWith('-wal') || f.includes('pg_wal')), 'the WAL exists while the server runs');
  files.push(server.logFile);
  for (const f of files) {
    const data = fs.readFileSync(f);
    for (const w of words) {
      assert.equal(data.includes(Buffer.from(w, 'utf8')), false, `${path.basename(f)} contains an identifier in plaintext`);
    }
    // and nothing that looks like FHIR JSON either
    assert.equal(data.includes(Buffer.from('"resourceType"')), false, `${path.basename(f)} holds resource JSON`);
  }
});

test('after a clean stop the files still hold no identifier', async () => {
  await server.stop();
  const words = needles();
  for (const f of storeFiles()) {
    const data = fs.readFileSync(f);
    for (const w of words) assert.equal(data.includes(Buffer.from(w, 'utf8')), false, `${path.basename(f)} after stop`);
  }
  await server.restart();
  const res = await server.req('GET', `/fhir/Patient/${patient.id}`);
  assert.equal(res.status, 200);
});
