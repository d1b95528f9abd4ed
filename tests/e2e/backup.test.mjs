// Backups and restores, against a running server over TLS:
// - a backup made while writers keep writing is one consistent snapshot
//   (every transaction is in it whole or not at all), holds no plaintext
//   identifier, is 0600, and says what it holds;
// - a backup with one flipped byte (header, middle, end), cut short, or with
//   bytes appended is refused with a clear message and nothing is written;
//   the wrong master key is refused;
// - a good backup restores to an identical dataset: every resource and its
//   history read back equal from the restored server, the audit trail whole;
// - a patient erased after the backup was made is not brought back by
//   restoring it (the erasure ledger is applied);
// - after a master key rotation, an old backup needs the retired key file.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { pgStore, start } from './lib/server.mjs';
import { mapLimit, sleep } from './lib/fhir.mjs';
import { cli, verify } from './lib/audit.mjs';
import { loadSyntheaBundles } from './lib/synthea.mjs';

const JSONH = { 'content-type': 'application/fhir+json' };
const bundles = loadSyntheaBundles().slice(0, 3);
let server;
const restored = [];
const model = new Map(); // Type/id -> resource as the server holds it
let erasedPatient;

before(async () => {
  server = await start({ name: 'backup' });
  for (const { raw } of bundles) {
    const r = await server.req('POST', '/fhir', { body: raw, timeout: 300_000 });
    assert.equal(r.status, 200, `transaction: ${r.status}`);
  }
  // some history: updates and a delete
  for (let i = 0; i < 5; i++) {
    const p = { resourceType: 'Patient', id: `bk-${i}`, name: [{ family: `Backup${i}` }], active: true };
    assert.equal((await server.req('PUT', `/fhir/Patient/${p.id}`, { body: JSON.stringify(p), headers: JSONH })).status, 201);
    p.active = false;
    assert.equal((await server.req('PUT', `/fhir/Patient/${p.id}`, { body: JSON.stringify(p), headers: JSONH })).status, 200);
  }
  assert.equal((await server.req('DELETE', '/fhir/Patient/bk-4')).status, 204);
});

after(async () => {
  for (const s of [server, ...restored]) {
    if (!s) continue;
    try { if (s.child && s.exit === null) await s.stop(); } finally { await s.cleanup(); }
  }
});

const tmp = (name) => path.join(server.tmpDir, name);
const keyFile = () => path.join(server.dataDir, 'master.key');

/** Every current resource of the given types (paged searches). */
async function snapshot(s, types) {
  const out = new Map();
  for (const type of types) {
    let url = `/fhir/${type}?_count=500`;
    while (url) {
      const r = await s.req('GET', url);
      assert.equal(r.status, 200, `search ${type}: ${r.status}`);
      for (const e of r.json.entry ?? []) if (e.search?.mode === 'match') out.set(`${type}/${e.resource.id}`, e.resource);
      const next = r.json.link?.find((l) => l.relation === 'next')?.url;
      url = next ? new URL(next).pathname + new URL(next).search : null;
    }
  }
  return out;
}

const TYPES = ['Patient', 'Observation', 'Encounter', 'Condition', 'Organization', 'Practitioner', 'Claim', 'Immunization'];

function backup(out) {
  const r = cli(server, ['backup', '--data', server.dataDir, '--out', out], { timeout: 300_000 });
  assert.equal(r.status, 0, `backup: ${r.stderr.slice(-400)}`);
  return r;
}

function restore(file, dir, extra = []) {
  return cli(server, ['restore', '--in', file, '--data', dir, '--master-key', keyFile(), ...extra],
    { timeout: 300_000, env: { CAREVAULT_STORE: '' } });
}

async function serveRestored(dir, name) {
  // a server on the restored directory (embedded store), as `start` would run it
  const s = await start({ name, embedded: true, existingDataDir: dir, token: server.token });
  restored.push(s);
  return s;
}

test('a backup made while writers write is a consistent snapshot, 0600, with no plaintext', async () => {
  let stop = false;
  let n = 0;
  // each transaction writes a pair: a Patient and its Observation; the pair is whole or absent in any snapshot
  const writer = (async () => {
    while (!stop) {
      const id = `pair-${n++}`;
      const bundle = { resourceType: 'Bundle', type: 'transaction', entry: [
        { resource: { resourceType: 'Patient', id }, request: { method: 'PUT', url: `Patient/${id}` } },
        { resource: { resourceType: 'Observation', id: `${id}-o`, status: 'final', code: { text: 'x' }, subject: { reference: `Patient/${id}` } },
          request: { method: 'PUT', url: `Observation/${id}-o` } }] };
      const r = await server.req('POST', '/fhir', { body: JSON.stringify(bundle), headers: JSONH });
      assert.equal(r.status, 200);
    }
  })();
  await sleep(300);
  const file = tmp('live.cvbk');
  const out = backup(file);
  assert.match(out.stdout, /backup written: .* \d+ versions, \d+ keys, \d+ audit records/);
  stop = true;
  await writer;
  assert.equal(fs.statSync(file).mode & 0o077, 0, 'the backup is 0600');
  // no identifier of the Synthea patients in it
  const data = fs.readFileSync(file);
  for (const { bundle } of bundles) {
    const p = bundle.entry.map((e) => e.resource).find((r) => r.resourceType === 'Patient');
    for (const w of [p.name[0].family, p.birthDate, ...(p.telecom ?? []).map((t) => t.value)]) {
      assert.equal(data.includes(Buffer.from(w)), false, 'an identifier is in the backup in plaintext');
    }
  }
  assert.equal(data.includes(Buffer.from('"resourceType"')), false, 'resource JSON in the backup');
  const dir = tmp('restored-live');
  const r = restore(file, dir);
  assert.equal(r.status, 0, `restore: ${r.stderr.slice(-400)}`);
  const s = await serveRestored(dir, 'backup-live');
  const snap = await snapshot(s, ['Patient', 'Observation']);
  const pairs = [...snap.keys()].filter((k) => k.startsWith('Patient/pair-')).length;
  const obs = [...snap.keys()].filter((k) => k.startsWith('Observation/pair-')).length;
  assert.equal(pairs, obs, 'every transaction is whole in the backup');
  await s.stop();
});

test('a quiet backup restores to an identical dataset, history and audit trail included', async () => {
  const want = await snapshot(server, TYPES);
  const file = tmp('quiet.cvbk');
  backup(file);
  const v = cli(server, ['restore', '--in', file, '--verify-only', '--master-key', keyFile()]);
  assert.equal(v.status, 0, `verify-only: ${v.stderr}`);
  assert.match(v.stdout, /the backup is whole/);
  const dir = tmp('restored-quiet');
  const r = restore(file, dir);
  assert.equal(r.status, 0, `restore: ${r.stderr.slice(-400)}`);
  const s = await serveRestored(dir, 'backup-quiet');
  const got = await snapshot(s, TYPES);
  assert.equal(got.size, want.size, 'the same number of resources');
  for (const [k, res] of want) assert.ok(isDeepStrictEqual(got.get(k), res), `${k} differs after the restore`);
  for (const id of ['bk-0', 'bk-3']) {
    const h0 = await server.req('GET', `/fhir/Patient/${id}/_history`);
    const h1 = await s.req('GET', `/fhir/Patient/${id}/_history`);
    assert.deepEqual(h1.json.entry.map((e) => e.resource), h0.json.entry.map((e) => e.resource), `history of ${id}`);
  }
  assert.equal((await s.req('GET', '/fhir/Patient/bk-4')).status, 410, 'a deleted resource stays deleted');
  const a = verify(s);
  assert.ok(a.whole, `the restored audit trail is whole: ${a.out.slice(0, 300)}`);
  const rec = await s.req('GET', '/fhir/AuditEvent?subtype=store-restored');
  assert.equal(rec.json.entry?.length, 1, 'the restore is recorded in the restored trail');
  // the backup was recorded before the store left in the file: its start is in the file's trail
  const started = await s.req('GET', '/fhir/AuditEvent?subtype=backup-started');
  assert.ok((started.json.entry?.length ?? 0) >= 1, 'the restored trail holds the start of the backup it came from');
  await s.stop();
  if (process.env.CV_PG_BASE) {
    // PostgreSQL's way back (OPERATIONS.md): restore here, then migrate-store; the trail comes along whole
    const url = pgStore('backup_back');
    const m = cli(server, ['migrate-store', '--from', dir, '--to', url], { timeout: 300_000, env: { CAREVAULT_STORE: '' } });
    assert.equal(m.status, 0, `migrate-store: ${m.stderr.slice(-400)}`);
    const b = verify(s, { store: url });
    assert.ok(b.whole, `the trail moved back to PostgreSQL is whole: ${b.out.slice(0, 300)}`);
    const headOf = (x) => x.stdout.split('\n').slice(0, 2).join('\n');
    assert.equal(headOf(b), headOf(verify(s)), 'with the same records, checkpoints and head as the restored one');
  }
  model.clear();
  for (const [k, res] of want) model.set(k, res);
});

test('a damaged, cut-short or extended backup is refused, and nothing is written', () => {
  const file = tmp('quiet.cvbk');
  const good = fs.readFileSync(file);
  const cases = [
    ['a byte of the header', (b) => { b[30] ^= 1; return b; }, /header is damaged|does not open this backup/],
    ['a byte in the middle', (b) => { b[Math.floor(b.length / 2)] ^= 0x40; return b; }, /damaged: chunk \d+ does not authenticate/],
    ['the last byte', (b) => { b[b.length - 1] ^= 0x80; return b; }, /damaged: chunk \d+ does not authenticate/],
    ['the last 100 bytes cut off', (b) => b.subarray(0, b.length - 100), /damaged: chunk \d+ (does not authenticate|is missing)/],
    ['the last chunk cut off', (b) => b.subarray(0, b.length - lastChunkLength(b)), /damaged: chunk \d+ is missing: the file was cut short/],
    ['bytes appended', (b) => Buffer.concat([b, Buffer.from('x')]), /bytes after its end/],
    ['not a backup', () => Buffer.from('hello'), /not a carevault backup/],
  ];
  for (const [what, change, msg] of cases) {
    const bad = tmp(`bad-${what.replace(/\W+/g, '-')}.cvbk`);
    fs.writeFileSync(bad, change(Buffer.from(good)));
    const dir = tmp(`bad-${what.replace(/\W+/g, '-')}`);
    const r = restore(bad, dir);
    assert.equal(r.status, 1, `${what}: refused (exit ${r.status})`);
    assert.match(r.stderr, msg, `${what}: says why`);
    assert.equal(fs.existsSync(path.join(dir, 'store.db')), false, `${what}: nothing written`);
  }
  // another master key
  const other = tmp('other.key');
  fs.writeFileSync(other, Buffer.alloc(32, 7), { mode: 0o600 });
  const r = cli(server, ['restore', '--in', file, '--verify-only', '--master-key', other]);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /master key does not open this backup/);
});

/** The size of the file's last chunk (length prefix included), found by walking the chunk lengths. */
function lastChunkLength(b) {
  const magic = 'carevault backup 1\n'.length;
  let at = magic + 4 + b.readUInt32BE(magic);
  let last = 0;
  while (at < b.length) {
    last = 4 + b.readUInt32BE(at);
    at += last;
  }
  return last;
}

test('a patient erased after the backup was made is not brought back by restoring it', async () => {
  const file = tmp('quiet.cvbk');
  const p = bundles[0].bundle.entry.find((e) => e.resource.resourceType === 'Patient').resource;
  const found = await server.req('GET', `/fhir/Patient?family:exact=${encodeURIComponent(p.name[0].family)}&birthdate=${p.birthDate}`);
  erasedPatient = found.json.entry[0].resource.id;
  const e = cli(server, ['patient', 'erase', '--data', server.dataDir, '--id', erasedPatient, '--yes']);
  assert.equal(e.status, 0, `erase: ${e.stderr}`);
  const dir = tmp('restored-after-erasure');
  const r = restore(file, dir); // the ledger beside the master key is applied
  assert.equal(r.status, 0, `restore: ${r.stderr.slice(-400)}`);
  assert.match(r.stdout, /1 patients erased since \(of 1 in the ledger\) are erased again/);
  const s = await serveRestored(dir, 'backup-erased');
  assert.equal((await s.req('GET', `/fhir/Patient/${erasedPatient}`)).status, 404, 'the erased patient stays erased');
  const obs = await s.req('GET', `/fhir/Observation?patient=${erasedPatient}&_summary=count`);
  assert.equal(obs.json.total, 0, 'none of their Observations is found');
  const other = [...model.keys()].find((k) => k.startsWith('Patient/bk-0'));
  assert.equal((await s.req('GET', `/fhir/${other}`)).status, 200, 'the others are there');
  assert.match(fs.readFileSync(path.join(dir, 'erasures'), 'utf8'), /^[0-9a-f]{32} \d+\n$/, 'the restored ledger has the erasure');
  await s.stop();
  // a restore that fails after writing (here: a malformed ledger) leaves a directory serve refuses
  fs.writeFileSync(tmp('bad-ledger'), 'not a ledger line\n', { mode: 0o600 });
  const half = tmp('restored-bad-ledger');
  const bad = restore(file, half, ['--erasures', tmp('bad-ledger')]);
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /line 1 is not/);
  assert.match(bad.stderr, /serve refuses it/);
  const refused = cli(server, ['serve', '--data', half, '--listen', '127.0.0.1:1'], { env: { CAREVAULT_STORE: '' } });
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /unfinished restore/);
  // a restore without a ledger must be an explicit choice
  fs.copyFileSync(keyFile(), tmp('lonely.key'));
  fs.chmodSync(tmp('lonely.key'), 0o600);
  const none = cli(server, ['restore', '--in', file, '--data', tmp('no-ledger'), '--master-key', tmp('lonely.key')],
    { env: { CAREVAULT_STORE: '' } });
  assert.equal(none.status, 1);
  assert.match(none.stderr, /give --erasures LEDGER/);
});

test('after a master key rotation an old backup opens with the retired key file', () => {
  const file = tmp('quiet.cvbk');
  const rot = cli(server, ['keys', 'rotate-master', '--data', server.dataDir]);
  assert.equal(rot.status, 0, `rotate-master: ${rot.stderr}`);
  // the new master key alone (copied away from the retired versions) does not open it
  const alone = tmp('alone');
  fs.mkdirSync(alone, { mode: 0o700 });
  fs.copyFileSync(keyFile(), path.join(alone, 'master.key'));
  fs.chmodSync(path.join(alone, 'master.key'), 0o600);
  const withNew = cli(server, ['restore', '--in', file, '--verify-only', '--master-key', path.join(alone, 'master.key')]);
  assert.equal(withNew.status, 1, 'the new master key alone does not open it');
  assert.match(withNew.stderr, /made under master key version 0/);
  const withRetired = cli(server, ['restore', '--in', file, '--verify-only', '--master-key',
    path.join(server.dataDir, 'master-retired.key')]);
  assert.equal(withRetired.status, 0, `the retired key file opens it: ${withRetired.stderr}`);
  // beside the master key, the retired versions are read with it
  const beside = cli(server, ['restore', '--in', file, '--verify-only', '--master-key', keyFile()]);
  assert.equal(beside.status, 0, `master.key with master-retired.key beside it: ${beside.stderr}`);
  // and a new backup opens with the new key
  const file2 = tmp('after-rotation.cvbk');
  backup(file2);
  const v = cli(server, ['restore', '--in', file2, '--verify-only', '--master-key', keyFile()]);
  assert.equal(v.status, 0, `${v.stderr}`);
});
