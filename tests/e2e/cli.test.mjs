// The command line: version, --help on every subcommand, init's files and
// modes, and serve's refusal of a data directory or key others can read.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { binPath } from './lib/server.mjs';

const BIN = binPath();
const run = (...args) => spawnSync(BIN, args, { encoding: 'utf8', timeout: 30_000 });
const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), 'cv-cli-'));

test('version and --help everywhere', () => {
  const v = run('version');
  assert.equal(v.status, 0);
  assert.match(v.stdout, /^carevault \d+\.\d+\.\d+/);
  for (const args of [['--help'], ['init', '--help'], ['serve', '--help'], ['version', '--help'], ['migrate-store', '--help'], ['user', '--help'], ['import', '--help'], ['client', '--help'], ['audit', '--help']]) {
    const r = run(...args);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /usage: carevault/);
  }
  const serveHelp = run('serve', '--help').stdout;
  for (const opt of ['--listen', '--max-body', '--request-timeout', 'CAREVAULT_MAX_BODY', '--config']) {
    assert.ok(serveHelp.includes(opt), `serve --help documents ${opt}`);
  }
  assert.notEqual(run('frobnicate').status, 0);
});

test('init makes a private data directory and refuses to run twice', () => {
  const dir = path.join(tmp(), 'data');
  const r = run('init', '--data', dir);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(fs.statSync(dir).mode & 0o777, 0o700);
  for (const f of ['master.key', 'bootstrap-token', 'tls/key.pem']) {
    assert.equal(fs.statSync(path.join(dir, f)).mode & 0o077, 0, `${f} is private`);
  }
  assert.equal(fs.statSync(path.join(dir, 'master.key')).size, 32);
  assert.match(fs.readFileSync(path.join(dir, 'bootstrap-token'), 'utf8'), /^cvb_[A-Za-z0-9_-]{43}\n$/);
  assert.ok(!r.stdout.includes(fs.readFileSync(path.join(dir, 'bootstrap-token'), 'utf8').trim()),
    'init does not print the token');
  const again = run('init', '--data', dir);
  assert.notEqual(again.status, 0);
  assert.match(again.stderr, /already initialised/);
  fs.rmSync(path.dirname(dir), { recursive: true, force: true });
});

test('serve refuses a data directory or master key open to others, and says how to fix it', () => {
  const dir = path.join(tmp(), 'data');
  assert.equal(run('init', '--data', dir).status, 0);
  fs.chmodSync(dir, 0o755);
  let r = run('serve', '--data', dir, '--listen', '127.0.0.1:1');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /chmod 700/);
  fs.chmodSync(dir, 0o700);
  fs.chmodSync(path.join(dir, 'master.key'), 0o640);
  r = run('serve', '--data', dir, '--listen', '127.0.0.1:1');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /chmod 600/);
  fs.chmodSync(path.join(dir, 'master.key'), 0o600);
  fs.chmodSync(path.join(dir, 'tls/key.pem'), 0o644);
  r = run('serve', '--data', dir, '--listen', '127.0.0.1:1');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /chmod 600/);
  fs.rmSync(path.dirname(dir), { recursive: true, force: true });
});

test('bad configuration is refused with a message naming it', () => {
  const dir = path.join(tmp(), 'data');
  assert.equal(run('init', '--data', dir).status, 0);
  let r = run('serve', '--data', dir, '--max-body', 'lots');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /max-body/);
  r = spawnSync(BIN, ['serve', '--data', dir], { encoding: 'utf8', env: { ...process.env, CAREVAULT_THREADS: 'many' } });
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /CAREVAULT_THREADS/);
  fs.writeFileSync(path.join(dir, 'carevault.conf'), 'no-such-option = 1\n', { mode: 0o600 });
  r = run('serve', '--data', dir);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /no-such-option/);
  fs.rmSync(path.dirname(dir), { recursive: true, force: true });
});

test('init refuses unsafe store URLs and leaves nothing behind', () => {
  const parent = tmp();
  const dir = path.join(parent, 'data');
  let r = run('init', '--data', dir, '--store', 'postgresql://cv@db.example.org/cv');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /sslmode=verify-full/);
  assert.equal(fs.existsSync(dir), false, 'a failed init leaves no data directory');
  r = run('init', '--data', dir, '--store', 'postgresql://cv:hunter2@localhost/cv');
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /PGPASSWORD/);
  assert.ok(!r.stderr.includes('hunter2'), 'the password is not echoed');
  assert.equal(fs.existsSync(dir), false);
  fs.rmSync(parent, { recursive: true, force: true });
});

test('import loads a transaction Bundle and NDJSON, each transaction with its audit record; the trail verifies', () => {
  const dir = path.join(tmp(), 'data');
  assert.equal(run('init', '--data', dir).status, 0);
  const bundle = {
    resourceType: 'Bundle', type: 'transaction',
    entry: [
      { fullUrl: 'urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a', resource: { resourceType: 'Patient', id: 'imp-1', active: true },
        request: { method: 'PUT', url: 'Patient/imp-1' } },
      { resource: { resourceType: 'Observation', status: 'final', code: { text: 'x' }, subject: { reference: 'Patient/imp-1' } },
        request: { method: 'POST', url: 'Observation' } },
    ],
  };
  const files = path.join(path.dirname(dir), 'in');
  fs.mkdirSync(files);
  fs.writeFileSync(path.join(files, 'a.json'), JSON.stringify(bundle));
  fs.writeFileSync(path.join(files, 'b.ndjson'), [1, 2, 3].map((i) =>
    JSON.stringify({ resourceType: 'Observation', id: `imp-o${i}`, status: 'final', code: { text: 'y' },
      subject: { reference: 'Patient/imp-1' } })).join('\n') + '\n');
  const r = run('import', '--data', dir, files);
  assert.equal(r.status, 0, r.stderr);
  // each committed transaction carries its record: agent "import", naming the patient
  const out = path.join(path.dirname(dir), 'trail.ndjson');
  const x = run('audit', 'export', '--data', dir, '--out', out);
  assert.equal(x.status, 0, x.stderr);
  const recs = fs.readFileSync(out, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  const imports = recs.filter((e) => e.agent?.[0]?.who?.identifier?.value === 'import' && e.subtype?.[0]?.code === 'transaction');
  assert.equal(imports.length, 2, 'one record per imported transaction');
  for (const e of imports) {
    assert.equal(e.outcome, '0');
    assert.ok(e.entity.some((en) => en.what?.reference === 'Patient/imp-1'), 'the record names the patient');
  }
  const v = run('audit', 'verify', '--data', dir);
  assert.equal(v.status, 0, v.stdout + v.stderr);
  assert.match(v.stdout, /the audit trail is whole/);
  fs.rmSync(path.dirname(dir), { recursive: true, force: true });
});
