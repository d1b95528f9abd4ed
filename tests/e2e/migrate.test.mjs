// carevault migrate-store: an embedded store (with updates, a deletion and
// history) is copied into an empty PostgreSQL database, verified, and served
// from there with the same master key: every version reads back the same, and
// the audit trail comes along whole (the same rows, head and checkpoints) and
// goes on from where it was.
// Runs on the PostgreSQL pass of `make test` (CV_PG_BASE).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { E2E_DIR, pgStore, start } from './lib/server.mjs';
import { facts, verify } from './lib/audit.mjs';

const skip = process.env.CV_PG_BASE ? false : 'needs CV_PG_BASE (the PostgreSQL pass of make test)';
const JSONH = { 'content-type': 'application/fhir+json' };
const servers = [];

after(async () => {
  for (const s of servers) {
    try { await s.stop(); } catch { /* already stopped */ } finally { await s.cleanup(); }
  }
});

test('an embedded store moves to PostgreSQL intact and stays sealed', { skip }, async () => {
  const src = await start({ name: 'migrate-src', embedded: true });
  servers.push(src);
  const ex = path.join(E2E_DIR, '../data/examples');
  const files = fs.readdirSync(ex).filter((f) => /^(Patient|Observation|Condition)-/.test(f)).slice(0, 40);
  const written = [];
  for (const f of files) {
    const r = JSON.parse(fs.readFileSync(path.join(ex, f), 'utf8'));
    const res = await src.req('PUT', `/fhir/${r.resourceType}/${r.id}`, { body: JSON.stringify(r), headers: JSONH });
    assert.ok([200, 201].includes(res.status), `${f}: ${res.status}`);
    written.push(`${r.resourceType}/${r.id}`);
  }
  const [first, second] = written;
  const again = JSON.parse((await src.req('GET', `/fhir/${first}`)).body.toString());
  delete again.meta;
  assert.equal((await src.req('PUT', `/fhir/${first}`, { body: JSON.stringify(again), headers: JSONH })).status, 200);
  assert.equal((await src.req('DELETE', `/fhir/${second}`)).status, 204);
  const before = {};
  for (const ref of written) before[ref] = (await src.req('GET', `/fhir/${ref}/_history`)).body.toString();
  const read = await src.req('GET', `/fhir/${written[2]}`);
  assert.equal(read.status, 200);
  await src.stop();
  const trailOf = (v) => v.stdout.split('\n').slice(0, 2).join('\n'); // "whole: N records (1 to N), K checkpoints", the head
  const v0 = verify(src);
  assert.ok(v0.whole, `the embedded trail: ${v0.stdout}`);

  const url = pgStore('migrate_dst');
  const bin = src.bin;
  const m = spawnSync(bin, ['migrate-store', '--from', src.dataDir, '--to', url], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(m.status, 0, m.stderr);
  assert.match(m.stdout, /versions and \d+ audit records copied and verified \(sha256 [0-9a-f]{64}\)/);
  const v1 = verify(src, { store: url });
  assert.ok(v1.whole, `the copied trail: ${v1.stdout}`);
  assert.equal(trailOf(v1), trailOf(v0), 'the same records, checkpoints and head');
  assert.match(m.stderr, /100%/);
  const twice = spawnSync(bin, ['migrate-store', '--from', src.dataDir, '--to', url], { encoding: 'utf8' });
  assert.notEqual(twice.status, 0, 'a second copy into a non-empty database is refused');
  assert.match(twice.stderr, /empty/);

  // the same data directory (master key, token) now served from PostgreSQL
  src.env.CAREVAULT_STORE = url;
  await src.restart();
  for (const ref of written) {
    const h = (await src.req('GET', `/fhir/${ref}/_history`)).body.toString();
    const strip = (b) => JSON.parse(b).entry.map((e) => [e.resource, e.request, e.response]);
    assert.deepEqual(strip(h.replaceAll(src.origin, '')), strip(before[ref].replaceAll(src.origin, '')), ref);
  }
  assert.equal((await src.req('GET', `/fhir/${second}`)).status, 410);
  const w = await src.req('POST', '/fhir/Observation', { body: JSON.stringify({ resourceType: 'Observation', status: 'final', code: { text: 'after' } }), headers: JSONH });
  assert.equal(w.status, 201);
  // the records made before the move are found there, and the chain goes on from them
  const trail = await src.req('GET', '/fhir/AuditEvent?subtype=read&_count=1000');
  assert.equal(trail.status, 200);
  assert.ok(trail.json.entry.some((e) => facts(e.resource).requestId === read.headers['x-request-id']),
    'a read made before the move is in the trail served after it');
  await src.stop();
  const v2 = verify(src, { store: url });
  assert.ok(v2.whole, `the trail after the move and a write: ${v2.stdout}`);
  const count = (v) => Number(/whole: (\d+) records/.exec(v.stdout)?.[1]);
  assert.ok(count(v2) > count(v1), `it grew from the copied head (${count(v1)} -> ${count(v2)})`);
});
