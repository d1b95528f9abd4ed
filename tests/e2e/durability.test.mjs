// Durability: every write acknowledged with 201 must survive a crash
// (kill -9 mid-load) and a graceful SIGTERM mid-load.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import https from 'node:https';
import { start, httpsRequest } from './lib/server.mjs';
import { mapLimit, sleep, stripServerMeta } from './lib/fhir.mjs';

const WRITERS = 8;

let server;
before(async () => { server = await start({ name: 'durability' }); });
after(async () => { if (server) await server.cleanup(); });

function observation(writer, seq) {
  return {
    resourceType: 'Observation',
    status: 'final',
    identifier: [{ system: 'urn:carevault:e2e', value: crypto.randomUUID() }],
    code: { coding: [{ system: 'http://loinc.org', code: '29463-7', display: 'Body weight' }] },
    subject: { display: `writer ${writer}` },
    effectiveDateTime: new Date().toISOString(),
    valueQuantity: { value: Number((50 + writer + seq / 1000).toFixed(3)), unit: 'kg', system: 'http://unitsofmeasure.org', code: 'kg' },
    note: [{ text: `w${writer} s${seq} ${'x'.repeat(seq % 200)}` }],
  };
}

/**
 * Runs WRITERS concurrent POST loops until `stopAt` resolves or they hit
 * errors after the server disappears.  Returns the acknowledged writes.
 */
async function load(durationMs, { onMidpoint } = {}) {
  const acked = [];
  const errors = { network: 0, status: {} };
  const origin = server.origin;
  const { ca, token } = server;
  const t0 = Date.now();
  let stopped = false;
  const writers = Array.from({ length: WRITERS }, async (_, w) => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
    let seq = 0;
    try {
      while (!stopped && Date.now() - t0 < durationMs) {
        const body = observation(w, seq++);
        let r;
        try {
          r = await httpsRequest(origin, 'POST', '/fhir/Observation', { ca, token, body, agent, timeout: 5000 });
        } catch {
          errors.network++;
          await sleep(50);
          continue;
        }
        if (r.status === 201) {
          const m = /\/fhir\/Observation\/([A-Za-z0-9\-.]{1,64})\/_history\/1$/.exec(r.headers.location || '');
          const id = m ? m[1] : r.json?.id;
          assert.ok(id, `201 without usable Location/id: ${r.headers.location}`);
          acked.push({ id, body });
        } else {
          errors.status[r.status] = (errors.status[r.status] || 0) + 1;
        }
      }
    } finally {
      agent.destroy();
    }
  });
  await sleep(onMidpoint ? durationMs / 2 : durationMs);
  if (onMidpoint) await onMidpoint();
  // Let writers observe the dead server for a moment, then stop them.
  await sleep(300);
  stopped = true;
  await Promise.all(writers);
  return { acked, errors };
}

async function verifyAll(acked) {
  const failures = [];
  await mapLimit(acked, 16, async ({ id, body }) => {
    const r = await server.req('GET', `/fhir/Observation/${id}`);
    if (r.status !== 200) { failures.push(`${id}: status ${r.status}`); return; }
    const got = stripServerMeta(r.json, false);
    delete got.id;
    try {
      assert.deepEqual(got, body);
    } catch {
      failures.push(`${id}: content differs`);
    }
  });
  return failures;
}

test('acknowledged writes survive kill -9 mid-load', async () => {
  const { acked, errors } = await load(3000, { onMidpoint: () => server.kill9() });
  assert.ok(acked.length >= 20, `only ${acked.length} writes acknowledged before the crash (errors ${JSON.stringify(errors)})`);
  assert.equal(new Set(acked.map((a) => a.id)).size, acked.length, 'duplicate ids handed out');
  await server.restart();
  const failures = await verifyAll(acked);
  assert.deepEqual(failures, [], `${failures.length}/${acked.length} acknowledged writes lost or corrupted:\n${failures.slice(0, 20).join('\n')}`);
});

test('after crash recovery, new writes get fresh ids and history is consistent', async () => {
  const r = await server.req('POST', '/fhir/Observation', { body: observation(99, 0) });
  assert.equal(r.status, 201);
  const h = await server.req('GET', '/fhir/Observation/_history?_count=5');
  assert.equal(h.status, 200);
  assert.equal(h.json.type, 'history');
  assert.ok(h.json.entry.length >= 1);
});

test('acknowledged writes survive a second crash (recovery is repeatable)', async () => {
  const { acked } = await load(2000, { onMidpoint: () => server.kill9() });
  assert.ok(acked.length > 0);
  await server.restart();
  const failures = await verifyAll(acked);
  assert.deepEqual(failures, []);
});

test('SIGTERM mid-load drains, exits 0, and keeps every acknowledged write', async () => {
  const { acked } = await load(2000, { onMidpoint: () => server.stop() });
  assert.ok(acked.length > 0);
  await server.restart();
  const failures = await verifyAll(acked);
  assert.deepEqual(failures, []);
  await server.stop();
});
