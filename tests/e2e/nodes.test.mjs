// Two carevault nodes on one PostgreSQL behave as one server: a write on one
// is read at once on the other, an update on one conflicts correctly with a
// stale If-Match on the other, a node killed under write load loses no
// acknowledged write, and a PostgreSQL restart under load gives 503s (never a
// crash) from which both nodes recover by themselves.
// Runs on the PostgreSQL pass of `make test` (CV_PG_BASE); the embedded store
// is one node by design.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, httpsRequest, start } from './lib/server.mjs';

const PG = process.env.CV_PG_BASE;
const skip = PG ? false : 'needs CV_PG_BASE (the PostgreSQL pass of make test)';
const JSONH = { 'content-type': 'application/fhir+json' };
let a;
let b;

before(async () => {
  if (skip) return;
  a = await start({ name: 'node-a' });
  b = await start({ name: 'node-b', shareWith: a });
});

after(async () => {
  for (const s of [b, a]) {
    if (!s) continue;
    try { await s.stop(); } catch { /* reported by the tests */ } finally { await s.cleanup(); }
  }
});

const obs = (i) => JSON.stringify({ resourceType: 'Observation', status: 'final', code: { text: `n${i}` }, valueInteger: i });

test('a write on one node is read at once on the other', { skip }, async () => {
  const put = await a.req('PUT', '/fhir/Patient/shared-1', { body: JSON.stringify({ resourceType: 'Patient', id: 'shared-1', active: true }), headers: JSONH });
  assert.equal(put.status, 201);
  const got = await b.req('GET', '/fhir/Patient/shared-1');
  assert.equal(got.status, 200);
  assert.equal(JSON.parse(got.body.toString()).active, true);
  const upd = await b.req('PUT', '/fhir/Patient/shared-1', { body: JSON.stringify({ resourceType: 'Patient', id: 'shared-1', active: false }), headers: { ...JSONH, 'if-match': 'W/"1"' } });
  assert.equal(upd.status, 200);
  const stale = await a.req('PUT', '/fhir/Patient/shared-1', { body: JSON.stringify({ resourceType: 'Patient', id: 'shared-1' }), headers: { ...JSONH, 'if-match': 'W/"1"' } });
  assert.equal(stale.status, 412);
  const hist = await a.req('GET', '/fhir/Patient/shared-1/_history');
  assert.equal(JSON.parse(hist.body.toString()).entry.length, 2);
});

test('concurrent unconditional updates through both nodes all land as versions', { skip }, async () => {
  await a.req('PUT', '/fhir/Patient/race', { body: JSON.stringify({ resourceType: 'Patient', id: 'race' }), headers: JSONH });
  const body = JSON.stringify({ resourceType: 'Patient', id: 'race', active: true });
  const res = await Promise.all(Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).req('PUT', '/fhir/Patient/race', { body, headers: JSONH })));
  const ok = res.filter((r) => r.status === 200).length;
  const conflicts = res.filter((r) => r.status === 409).length;
  assert.equal(ok + conflicts, 12, `statuses: ${res.map((r) => r.status)}`);
  const cur = JSON.parse((await b.req('GET', '/fhir/Patient/race')).body.toString());
  assert.equal(Number(cur.meta.versionId), 1 + ok);
});

async function writeLoad(nodes, ms) {
  const acked = [];
  const statuses = new Map();
  const stopAt = Date.now() + ms;
  await Promise.all(Array.from({ length: 8 }, async (_, w) => {
    for (let i = 0; Date.now() < stopAt; i++) {
      const node = nodes[(w + i) % nodes.length];
      try {
        const r = await node.req('POST', '/fhir/Observation', { body: obs(i), headers: JSONH });
        statuses.set(r.status, (statuses.get(r.status) || 0) + 1);
        if (r.status === 201) acked.push(JSON.parse(r.body.toString()).id);
        if (r.status === 503) {
          assert.equal(JSON.parse(r.body.toString()).resourceType, 'OperationOutcome');
          assert.ok(r.headers['retry-after'], '503 carries Retry-After');
        }
      } catch {
        statuses.set('error', (statuses.get('error') || 0) + 1);
        await new Promise((res) => setTimeout(res, 50));
      }
    }
  }));
  return { acked, statuses };
}

test('kill -9 of one node under load loses no acknowledged write', { skip }, async () => {
  const load = writeLoad([a, b], 3000);
  await new Promise((res) => setTimeout(res, 1200));
  await b.kill9();
  const { acked } = await load;
  assert.ok(acked.length > 50, `only ${acked.length} writes acknowledged`);
  for (const id of acked) {
    const r = await a.req('GET', `/fhir/Observation/${id}`);
    assert.equal(r.status, 200, `acknowledged ${id} is lost`);
  }
  await b.restart();
});

test('a PostgreSQL restart under load gives 503s, never a crash, and both nodes recover', { skip }, async () => {
  const dir = decodeURIComponent(/host=([^&]+)/.exec(PG)[1]);
  const pgbin = spawnSync('bash', ['-c', 'ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1'], { encoding: 'utf8' }).stdout.trim();
  const load = writeLoad([a, b], 4000);
  await new Promise((res) => setTimeout(res, 800));
  // -l: the restarted server must not inherit (and hold open) our stdout pipe
  const code = await new Promise((resolve) => {
    const p = spawn('runuser', ['-u', 'postgres', '--', `${pgbin}/pg_ctl`, '-D', `${dir}/data`, '-l', `${dir}/log`,
      '-m', 'fast', '-w', 'restart'], { stdio: 'ignore' });
    p.on('exit', resolve);
  });
  assert.equal(code, 0, 'pg_ctl restart');
  const { acked, statuses } = await load;
  process.stderr.write(`[e2e] during the PostgreSQL restart: ${JSON.stringify([...statuses])}\n`);
  // a crashed node's log ends with the sanitizer's report (no PHI: synthetic bodies)
  for (const n of [a, b]) assert.equal(n.exit, null, `a node crashed:\n${n.logTail(6000)}`);
  for (const k of statuses.keys()) assert.ok([201, 503].includes(k), `unexpected outcome ${k}: ${[...statuses]}`);
  // every acknowledged write, including those answered while the database went down
  for (const id of acked) assert.equal((await b.req('GET', `/fhir/Observation/${id}`)).status, 200, `acknowledged ${id} is lost`);
  // recovering: a 503 says "retry" (Retry-After); each node must take a write again within seconds
  const writeAfter = async (n, i) => {
    for (let tries = 0; ; tries++) {
      const r = await n.req('POST', '/fhir/Observation', { body: obs(i), headers: JSONH });
      if (r.status !== 503 || tries === 10) return r;
      process.stderr.write(`[e2e] after the restart, 503 (try ${tries + 1}): ${r.body}\n`);
      await new Promise((res) => setTimeout(res, 500));
    }
  };
  const after1 = await writeAfter(a, 1);
  const after2 = await writeAfter(b, 2);
  assert.equal(after1.status, 201, `${after1.body}\n${a.logTail(3000)}`);
  assert.equal(after2.status, 201, `${after2.body}\n${b.logTail(3000)}`);
  assert.equal((await a.req('GET', '/readyz')).status, 200);
});

test('behind HAProxy (round robin): a write through the balancer reads back from either node', { skip }, async () => {
  const port = await freePort();
  const cfg = path.join(a.tmpDir, 'haproxy.cfg');
  fs.writeFileSync(cfg, [
    'global', '  maxconn 256', 'defaults', '  mode tcp', '  timeout connect 2s', '  timeout client 30s',
    '  timeout server 30s', 'frontend fhir', `  bind 127.0.0.1:${port}`, '  default_backend carevault',
    'backend carevault', '  balance roundrobin', `  server a ${new URL(a.origin).host}`, `  server b ${new URL(b.origin).host}`, '',
  ].join('\n'));
  const ha = spawn('haproxy', ['-f', cfg, '-db'], { stdio: 'ignore' });
  try {
    const origin = `https://127.0.0.1:${port}`;
    const opts = (o = {}) => ({ ca: a.ca, servername: 'localhost', ...o, headers: { authorization: `Bearer ${a.token}`, ...(o.headers || {}) } });
    let up = false;
    for (let i = 0; i < 50 && !up; i++) {
      try { up = (await httpsRequest(origin, 'GET', '/healthz', opts())).status === 200; } catch { await new Promise((r) => setTimeout(r, 100)); }
    }
    assert.ok(up, 'haproxy forwards');
    const linesBefore = [a, b].map((n) => fs.readFileSync(n.logFile, 'utf8').split('\n').filter((l) => l.includes('"access"')).length);
    for (let i = 0; i < 10; i++) {
      const id = `lb-${i}`;
      const w = await httpsRequest(origin, 'PUT', `/fhir/Patient/${id}`, opts({ body: JSON.stringify({ resourceType: 'Patient', id }), headers: JSONH }));
      assert.equal(w.status, 201);
      for (let k = 0; k < 2; k++) {
        const r = await httpsRequest(origin, 'GET', `/fhir/Patient/${id}`, opts());
        assert.equal(r.status, 200, `read ${k} of ${id} through the balancer`);
      }
    }
    const served = [a, b].map((n, i) => fs.readFileSync(n.logFile, 'utf8').split('\n').filter((l) => l.includes('"access"')).length - linesBefore[i]);
    assert.ok(served[0] > 0 && served[1] > 0, `both nodes served requests: ${served}`);
  } finally {
    ha.kill('SIGTERM');
  }
});

test('the audit trail both nodes wrote, through the kill and the restart, is one whole chain', { skip }, async () => {
  // every request above was recorded by one node or the other in the one chain the database
  // serialises; each node's own checkpoint file must agree with it too
  for (const node of [a, b]) {
    const c = spawnSync(node.bin, ['audit', 'checkpoint', '--data', node.dataDir], { encoding: 'utf8', env: node.env, timeout: 60_000 });
    assert.equal(c.status, 0, `${c.stdout}${c.stderr}`);
    const r = spawnSync(node.bin, ['audit', 'verify', '--data', node.dataDir, '--checkpoints',
      path.join(node.dataDir, 'audit-checkpoints.jsonl')], { encoding: 'utf8', env: node.env, timeout: 60_000 });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /the audit trail is whole: \d+ records/);
  }
});
