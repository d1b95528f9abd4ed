// Key custody and rotation, on a running server over TLS:
// - the master key in a PKCS#11 token (SoftHSM2, set up by this test): no key
//   file exists, the server reads and writes through the token, a wrong PIN is
//   refused at start, and the master key rotates inside the token;
// - the master key in an environment variable: it works, it is wiped from the
//   process's environment (/proc/PID/environ), a wrong one is refused; the
//   process cannot dump core;
// - rotation of a key file's master key under load (writers making new
//   patients, readers checking what they read) loses and corrupts nothing,
//   and a rotation killed in the middle resumes when run again; after a
//   restart every resource still reads back equal.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { freePort, start } from './lib/server.mjs';
import { mapLimit, sleep } from './lib/fhir.mjs';
import { cli } from './lib/audit.mjs';

const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const JSONH = { 'content-type': 'application/fhir+json' };
const servers = [];
after(async () => {
  for (const s of servers) {
    try { if (s.child && s.exit === null) await s.stop(); } finally { await s.cleanup(); }
  }
});

async function launch(opts) {
  const s = await start(opts);
  servers.push(s);
  return s;
}

const put = (s, r) => s.req('PUT', `/fhir/${r.resourceType}/${r.id}`, { body: JSON.stringify(r), headers: JSONH });

/** n patients with one Observation each, as transactions of 50 patients. */
async function loadPatients(s, prefix, n, model) {
  const batches = [];
  for (let b = 0; b < n; b += 50) {
    const entry = [];
    for (let i = b; i < Math.min(n, b + 50); i++) {
      const p = { resourceType: 'Patient', id: `${prefix}p${i}`, name: [{ family: `Fam${i}`, given: ['Given'] }], birthDate: '1970-01-01' };
      const o = { resourceType: 'Observation', id: `${prefix}o${i}`, status: 'final', code: { text: 'hr' },
        subject: { reference: `Patient/${p.id}` }, valueQuantity: { value: i, unit: '/min' } };
      for (const r of [p, o]) {
        entry.push({ resource: r, request: { method: 'PUT', url: `${r.resourceType}/${r.id}` } });
        model.set(`${r.resourceType}/${r.id}`, r);
      }
    }
    batches.push({ resourceType: 'Bundle', type: 'transaction', entry });
  }
  await mapLimit(batches, 2, async (bundle) => {
    const r = await s.req('POST', '/fhir', { body: JSON.stringify(bundle), headers: JSONH, timeout: 300_000 });
    assert.equal(r.status, 200, `transaction: ${r.status} ${r.body?.toString().slice(0, 200)}`);
  });
}

/** Every resource of the model reads back equal (server meta aside). */
async function readAllEqual(s, model, what) {
  let n = 0;
  await mapLimit([...model.entries()], 8, async ([ref, want]) => {
    const r = await s.req('GET', `/fhir/${ref}`);
    assert.equal(r.status, 200, `${what}: ${ref} answers ${r.status}`);
    const { meta, ...got } = r.json;
    void meta;
    assert.ok(isDeepStrictEqual(got, want), `${what}: ${ref} differs`);
    n++;
  });
  return n;
}

/** Runs a carevault command and kills it (SIGKILL) when its progress output first matches. */
async function killAtFirstProgress(s, args, progress, { mustKill = true } = {}) {
  const child = spawn(s.bin, args, { env: s.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  await new Promise((resolve) => {
    child.stderr.on('data', (d) => {
      err += d;
      if (progress.test(err)) { child.kill('SIGKILL'); resolve(); }
    });
    child.on('exit', resolve);
  });
  await new Promise((resolve) => (child.exitCode !== null || child.signalCode ? resolve() : child.on('exit', resolve)));
  if (mustKill) assert.equal(child.signalCode, 'SIGKILL', `${args[1]} was killed mid-way (exit ${child.exitCode}: ${err.slice(0, 300)})`);
  else assert.ok(child.signalCode === 'SIGKILL' || child.exitCode === 0, `${args[1]}: exit ${child.exitCode}: ${err.slice(0, 300)}`);
}

/**
 * Kills a rotation at its first progress line until one is caught mid-way (isMid(status)): the
 * kill races the command's next batches, which may all finish first (each such run is a whole
 * rotation). Returns [the status mid-way, how many runs finished before].
 */
async function rotationKilledMidway(s, args, progress, isMid) {
  for (let finished = 0; ; finished++) {
    await killAtFirstProgress(s, args, progress, { mustKill: false });
    const st = status(s);
    if (isMid(st)) return [st, finished];
    assert.ok(finished < 8, `${args[1]} kept finishing before it could be killed`);
    await sleep(200);
  }
}

function status(s, env = {}) {
  const r = cli(s, ['keys', 'status', '--data', s.dataDir], { env });
  assert.equal(r.status, 0, `keys status: ${r.stderr}`);
  const m = /current version (\d+).*\n.*?(\d+) active, (\d+) retired, (\d+) destroyed; (\d+) keys wrapped by another/.exec(r.stdout);
  assert.ok(m, `keys status output: ${r.stdout}`);
  return { source: /master key: (\w+)/.exec(r.stdout)[1], current: Number(m[1]), active: Number(m[2]),
    retired: Number(m[3]), destroyed: Number(m[4]), other: Number(m[5]) };
}

// ---------------------------------------------------------------- PKCS#11

function softhsm() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cv-softhsm-'));
  fs.mkdirSync(path.join(dir, 'tokens'));
  const conf = path.join(dir, 'softhsm2.conf');
  fs.writeFileSync(conf, `directories.tokendir = ${dir}/tokens\nobjectstore.backend = file\nlog.level = ERROR\n`);
  const pin = path.join(dir, 'pin');
  fs.writeFileSync(pin, '5678-pin\n', { mode: 0o600 });
  const r = spawnSync('softhsm2-util', ['--init-token', '--free', '--label', 'carevault-test', '--so-pin', '12345678',
    '--pin', '5678-pin'], { encoding: 'utf8', env: { ...process.env, SOFTHSM2_CONF: conf } });
  assert.equal(r.status, 0, `softhsm2-util: ${r.stderr}`);
  return { dir, conf, pin };
}

test('the master key in a PKCS#11 token (SoftHSM2): serve, rotate inside the token, restart', async () => {
  assert.ok(fs.existsSync(SOFTHSM_MODULE), 'softhsm2 is installed (make test installs it)');
  const hsm = softhsm();
  const env = { SOFTHSM2_CONF: hsm.conf, CAREVAULT_MASTER_KEY_SOURCE: 'pkcs11', CAREVAULT_PKCS11_MODULE: SOFTHSM_MODULE,
    CAREVAULT_PKCS11_TOKEN: 'carevault-test', CAREVAULT_PKCS11_PIN_FILE: hsm.pin };
  const s = await launch({ name: 'custody-hsm', env });
  assert.equal(fs.existsSync(path.join(s.dataDir, 'master.key')), false, 'no master key file exists');
  const model = new Map();
  await loadPatients(s, 'h', 60, model);
  assert.equal(await readAllEqual(s, model, 'through the token'), 120);
  const st = status(s, env);
  assert.equal(st.source, 'pkcs11');
  assert.equal(st.current, 0);
  // rotation inside the token while serving
  const rot = cli(s, ['keys', 'rotate-master', '--data', s.dataDir], { env });
  assert.equal(rot.status, 0, `rotate-master: ${rot.stderr}`);
  assert.match(rot.stdout, /version 1 is current; (\d+) keys re-wrapped/);
  const after1 = status(s, env);
  assert.equal(after1.current, 1);
  assert.equal(after1.other, 0, 'every key is wrapped by the new version');
  await loadPatients(s, 'h2', 10, model);
  await s.restart();
  assert.equal(await readAllEqual(s, model, 'after the rotation and a restart'), 140);
  // a wrong PIN: the server refuses to start, and says why
  await s.stop();
  fs.writeFileSync(hsm.pin, 'wrong\n', { mode: 0o600 });
  const bad = spawnSync(s.bin, ['serve', '--data', s.dataDir, '--listen', `127.0.0.1:${await freePort()}`], { encoding: 'utf8', env: { ...s.env }, timeout: 30_000 });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /refused the PIN/);
  // a PIN file others can read is refused too
  fs.writeFileSync(hsm.pin, '5678-pin\n');
  fs.chmodSync(hsm.pin, 0o644);
  const open = spawnSync(s.bin, ['serve', '--data', s.dataDir, '--listen', `127.0.0.1:${await freePort()}`], { encoding: 'utf8', env: { ...s.env }, timeout: 30_000 });
  assert.notEqual(open.status, 0);
  assert.match(open.stderr, /group or others may read it/);
  fs.chmodSync(hsm.pin, 0o600);
  await s.restart();
  assert.equal(await readAllEqual(s, model, 'with the right PIN again'), 140);
  fs.rmSync(hsm.dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- environment

test('the master key in an environment variable: used, wiped from /proc/PID/environ, a wrong one refused', async () => {
  const hex = crypto.randomBytes(32).toString('hex');
  const env = { CAREVAULT_MASTER_KEY_SOURCE: 'env', CAREVAULT_MASTER_KEY: hex };
  const s = await launch({ name: 'custody-env', env });
  assert.equal(fs.existsSync(path.join(s.dataDir, 'master.key')), false, 'no master key file exists');
  const model = new Map();
  await loadPatients(s, 'e', 20, model);
  assert.equal(await readAllEqual(s, model, 'env key'), 40);
  const environ = fs.readFileSync(`/proc/${s.pid}/environ`);
  assert.equal(environ.includes(Buffer.from(hex)), false, 'the key is not in the process environment');
  // and the process cannot dump core (a core would hold the unwrapped keys)
  assert.match(fs.readFileSync(`/proc/${s.pid}/limits`, 'utf8'), /Max core file size\s+0\s+0\s/, 'core size limit 0');
  await s.stop();
  const other = crypto.randomBytes(32).toString('hex');
  const bad = spawnSync(s.bin, ['serve', '--data', s.dataDir, '--listen', `127.0.0.1:${await freePort()}`],
    { encoding: 'utf8', env: { ...s.env, CAREVAULT_MASTER_KEY: other }, timeout: 30_000 });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /master key does not open/);
  const rot = cli(s, ['keys', 'rotate-master', '--data', s.dataDir]);
  assert.equal(rot.status, 1);
  assert.match(rot.stderr, /cannot be rotated by carevault/);
  await s.restart();
  assert.equal(await readAllEqual(s, model, 'env key after restart'), 40);
});

// ---------------------------------------------------------------- rotation under load

test('rotating a key file\'s master key under load loses and corrupts nothing; a killed rotation resumes', async () => {
  const s = await launch({ name: 'custody-rotate' });
  const model = new Map();
  await loadPatients(s, 'r', 1000, model);
  const before = status(s);
  assert.ok(before.active >= 1002, `a key per patient (${before.active})`);
  // load: writers make new patients and update old ones; readers check what they read
  let stop = false;
  let writes = 0;
  let reads = 0;
  const writer = async (w) => {
    for (let i = 0; !stop; i++) {
      const p = { resourceType: 'Patient', id: `w${w}-${i}`, name: [{ family: `W${w}x${i}` }] };
      const r = await put(s, p);
      assert.ok([200, 201].includes(r.status), `write during rotation: ${r.status} ${r.body?.toString().slice(0, 200)}`);
      model.set(`Patient/${p.id}`, p);
      const o = { ...model.get(`Observation/ro${(i * 7 + w) % 1000}`) };
      o.valueQuantity = { value: 1000 + i, unit: '/min' };
      const u = await put(s, o);
      assert.equal(u.status, 200, `update during rotation: ${u.status}`);
      model.set(`Observation/${o.id}`, o);
      writes += 2;
    }
  };
  const reader = async () => {
    for (let i = 0; !stop; i++) {
      const ref = `Patient/rp${(i * 13) % 1000}`;
      const r = await s.req('GET', `/fhir/${ref}`);
      assert.equal(r.status, 200, `read during rotation: ${r.status}`);
      assert.equal(r.json.name[0].family, model.get(ref).name[0].family);
      reads++;
    }
  };
  const load = [writer(1), writer(2), reader(), reader()];
  await sleep(300);
  // 1: a rotation killed in the middle (after its first batch is re-wrapped)
  const [mid, tries] = await rotationKilledMidway(s, ['keys', 'rotate-master', '--data', s.dataDir], /re-wrapping: /,
    (st) => st.other > 0);
  assert.ok(mid.current >= 1, 'the new version is current after the crash');
  assert.ok(mid.other > 0, `some keys are still wrapped by the old version (${mid.other})`);
  assert.ok(mid.other < mid.active, 'and some are re-wrapped already');
  await sleep(300);
  // 2: run it again: it resumes and completes, while the load goes on
  const again = cli(s, ['keys', 'rotate-master', '--data', s.dataDir], { timeout: 300_000 });
  assert.equal(again.status, 0, `rotate-master again: ${again.stderr.slice(-500)}`);
  await sleep(300);
  stop = true;
  await Promise.all(load);
  assert.ok(writes > 10 && reads > 10, `the load ran (${writes} writes, ${reads} reads)`);
  const done = status(s);
  assert.equal(done.current, mid.current + 1);
  assert.equal(done.other, 0, 'every key is wrapped by the current version');
  const retired = fs.readFileSync(path.join(s.dataDir, 'master-retired.key'), 'utf8');
  const want = Array.from({ length: done.current }, (_, v) => `key ${v} [0-9a-f]{64}\n`).join('');
  assert.match(retired, new RegExp(`^carevault master key file 2\n${want}$`), 'every old version is retired, once, not lost');
  assert.equal((fs.statSync(path.join(s.dataDir, 'master-retired.key')).mode & 0o077), 0, 'retired keys are 0600');
  assert.match(fs.readFileSync(path.join(s.dataDir, 'master.key'), 'utf8'),
    new RegExp(`^carevault master key file 2\nkey ${done.current} [0-9a-f]{64}\n$`));
  assert.equal(await readAllEqual(s, model, 'after the rotations'), model.size);
  await s.restart();
  assert.equal(await readAllEqual(s, model, 'after a restart'), model.size);
  // the rotations are in the audit trail
  const r = await s.req('GET', '/fhir/AuditEvent?subtype=master-key-rotated&_count=1000');
  assert.equal(r.status, 200);
  assert.ok((r.json.entry ?? []).length >= 1, 'the rotation is recorded');
  // each run recorded its start before its first change (and before its first progress line): the
  // killed ones show as starts with no outcome
  const started = await s.req('GET', '/fhir/AuditEvent?subtype=master-key-rotation-started&_count=1000');
  const nStarted = (started.json.entry ?? []).length;
  assert.equal(nStarted, tries + 2, `a start per run: ${tries + 1} killed or raced, and the one run again`);
  assert.ok(nStarted > r.json.entry.length, 'the killed run has a start and no outcome');
});

// ---------------------------------------------------------------- data key rotation

test('rotating every data key under load re-encrypts everything, a killed rotation resumes, nothing is lost', async () => {
  const s = await launch({ name: 'custody-data' });
  const model = new Map();
  await loadPatients(s, 'd', 600, model);
  const before = status(s);
  let stop = false;
  let writes = 0;
  const writer = async (w) => {
    for (let i = 0; !stop; i++) {
      const p = { resourceType: 'Patient', id: `dw${w}-${i}`, name: [{ family: `DW${w}x${i}` }] };
      const r = await put(s, p);
      assert.ok([200, 201].includes(r.status), `write during the rotation: ${r.status} ${r.body?.toString().slice(0, 200)}`);
      model.set(`Patient/${p.id}`, p);
      const o = { ...model.get(`Observation/do${(i * 11 + w) % 600}`), valueQuantity: { value: 5000 + i, unit: '/min' } };
      const u = await put(s, o);
      assert.equal(u.status, 200, `update during the rotation: ${u.status} ${u.body?.toString().slice(0, 200)}`);
      model.set(`Observation/${o.id}`, o);
      writes += 2;
    }
  };
  const reader = async () => {
    for (let i = 0; !stop; i++) {
      const ref = `Observation/do${(i * 17) % 600}`;
      const r = await s.req('GET', `/fhir/${ref}`);
      assert.equal(r.status, 200, `read during the rotation: ${r.status}`);
      assert.equal(r.json.subject.reference, model.get(ref).subject.reference);
    }
  };
  // the shared key rotates too: what no patient owns keeps being written, and never gets a conflict
  const orgs = async () => {
    for (let i = 0; !stop; i++) {
      const o = { resourceType: 'Organization', id: `org-${i}`, name: `Org ${i}` };
      const r = await put(s, o);
      assert.equal(r.status, 201, `an Organization during the rotation: ${r.status} ${r.body?.toString().slice(0, 200)}`);
      model.set(`Organization/${o.id}`, o);
      writes++;
    }
  };
  const load = [writer(1), writer(2), reader(), orgs()];
  await sleep(200);
  // a rotation killed after its first batch (a finished one leaves only the shared and audit keys retired)
  const [mid, finished] = await rotationKilledMidway(s, ['keys', 'rotate-data', '--data', s.dataDir],
    /re-encrypting: /, (st) => st.retired >= before.active - 2);
  assert.ok(mid.retired >= before.active - 2, `the patients' old keys are retired (${mid.retired} of ${before.active})`);
  await sleep(300);
  // the server still reads everything, old keys and new (the patients the writers leave alone)
  const quiet = new Map([...model].filter(([k]) => k.startsWith('Patient/dp')));
  assert.equal(await readAllEqual(s, quiet, 'mid-rotation'), 600);
  const again = cli(s, ['keys', 'rotate-data', '--data', s.dataDir], { timeout: 300_000 });
  assert.equal(again.status, 0, `rotate-data again: ${again.stderr.slice(-500)}`);
  assert.match(again.stderr, /interrupted rotation is unfinished: finishing it/);
  assert.match(again.stdout, /versions re-encrypted; the old keys are destroyed/);
  stop = true;
  await Promise.all(load);
  assert.ok(writes > 10, `the load ran (${writes} writes)`);
  const done = status(s);
  assert.equal(done.retired, 2 * (finished + 1), 'no retired key is left but the audit trail\'s and the shared key\'s');
  assert.ok(done.destroyed >= before.active - 1, `the old keys are destroyed (${done.destroyed})`);
  assert.equal(await readAllEqual(s, model, 'after the data key rotation'), model.size);
  await s.restart();
  assert.equal(await readAllEqual(s, model, 'after a restart'), model.size);
  // one patient's keys alone
  const one = cli(s, ['keys', 'rotate-data', '--data', s.dataDir, '--patient', 'dp7']);
  assert.equal(one.status, 0, `rotate-data --patient: ${one.stderr.slice(-300)}`);
  // the Patient and every version of its Observation (the writers may have updated it)
  const m = /1 new keys \(one patient\); (\d+) versions re-encrypted/.exec(one.stdout);
  assert.ok(m && Number(m[1]) >= 2, `one patient's versions re-encrypted: ${one.stdout}`);
  assert.equal(await readAllEqual(s, model, 'after one patient\'s rotation'), model.size);
  const none = cli(s, ['keys', 'rotate-data', '--data', s.dataDir, '--patient', 'nobody']);
  assert.equal(none.status, 1);
  assert.match(none.stderr, /no data of this patient/);
  const r = await s.req('GET', '/fhir/AuditEvent?subtype=data-keys-rotated&_count=1000');
  assert.ok((r.json.entry ?? []).length >= 2, 'the rotations are recorded');
  const started = await s.req('GET', '/fhir/AuditEvent?subtype=data-key-rotation-started&_count=1000');
  const nStarted = (started.json.entry ?? []).length;
  assert.equal(nStarted, finished + 4, 'a start per run: the killed or raced ones, the one run again, one patient\'s, nobody\'s');
  assert.ok(nStarted > r.json.entry.length, 'the killed run has a start and no outcome');
});
