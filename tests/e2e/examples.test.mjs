// Round-trips every official R4 example in tests/data/examples through the
// server with a real FHIR client (fhir-kit-client): PUT with its own id
// (update-as-create), read back, compare deep-equal ignoring server-managed
// meta.versionId / meta.lastUpdated (and meta entirely if the example had none).
// Bundles of type searchset/history are skipped (not storable resources), and so are
// AuditEvents (the audit trail is written by the server only).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { start, E2E_DIR } from './lib/server.mjs';
import { fhirClient, mapLimit, stripServerMeta } from './lib/fhir.mjs';

const EXAMPLES_DIR = path.resolve(E2E_DIR, process.env.CV_EXAMPLES_DIR || '../data/examples');
const CONCURRENCY = Number(process.env.CV_EXAMPLES_CONCURRENCY || 8);

function loadExamples() {
  if (!fs.existsSync(EXAMPLES_DIR)) {
    throw new Error(`example corpus not found at ${EXAMPLES_DIR} (set CV_EXAMPLES_DIR)`);
  }
  const files = fs.readdirSync(EXAMPLES_DIR).filter((f) => f.endsWith('.json')).sort();
  const out = [];
  for (const file of files) {
    const resource = JSON.parse(fs.readFileSync(path.join(EXAMPLES_DIR, file), 'utf8'));
    if (resource.resourceType === 'Bundle' && ['searchset', 'history'].includes(resource.type)) {
      out.push({ file, resource, skip: `Bundle type ${resource.type}` });
    } else if (resource.resourceType === 'AuditEvent') {
      // the audit trail is written by the server only: a client's AuditEvent is refused (audit.test.mjs)
      out.push({ file, resource, skip: 'AuditEvents are written by the server, not stored from clients' });
    } else {
      out.push({ file, resource });
    }
  }
  return out;
}

// Short textual diff: first differing JSON paths.
function diffPaths(a, b, p = '$', out = []) {
  if (out.length >= 8) return out;
  if (isDeepStrictEqual(a, b)) return out;
  if (a && b && typeof a === 'object' && typeof b === 'object' && Array.isArray(a) === Array.isArray(b)) {
    const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
    for (const k of keys) {
      if (!(k in a)) out.push(`${p}.${k}: added by server`);
      else if (!(k in b)) out.push(`${p}.${k}: missing in read-back`);
      else diffPaths(a[k], b[k], `${p}.${k}`, out);
      if (out.length >= 8) break;
    }
    return out;
  }
  out.push(`${p}: sent ${JSON.stringify(a)?.slice(0, 80)} got ${JSON.stringify(b)?.slice(0, 80)}`);
  return out;
}

const examples = loadExamples();
let server;
let client;
const results = new Map(); // file -> {ok, error}
let roundTrip; // promise of all round trips

// Official examples that break the base R4 rules themselves: the server must
// refuse them with 422 naming the element (and accept all others).
const KNOWN_INVALID = {
  // nested items lack the required Questionnaire.item.linkId (min 1)
  'Questionnaire-qs1.json': 'Questionnaire.item[0].item[0].linkId',
};

async function refusedAsExpected(file, resource) {
  const want = KNOWN_INVALID[file];
  try {
    await client.update({ resourceType: resource.resourceType, id: resource.id, body: resource });
    return { ok: false, error: `accepted, but it is invalid (${want})` };
  } catch (e) {
    const status = e?.response?.status;
    const issues = e?.response?.data?.issue || [];
    const named = issues.some((i) => (i.expression || []).includes(want));
    return status === 422 && named ? { ok: true }
      : { ok: false, error: `expected 422 naming ${want}, got ${status} ${JSON.stringify(e?.response?.data).slice(0, 200)}` };
  }
}

async function roundTripOne({ file, resource }) {
  const { resourceType, id } = resource;
  if (KNOWN_INVALID[file]) return refusedAsExpected(file, resource);
  try {
    const written = await client.update({ resourceType, id, body: resource });
    if (!written || written.resourceType !== resourceType || written.id !== id) {
      // Servers may answer with an empty body (return=minimal); only check when present.
      if (written && Object.keys(written).length > 0 && (written.resourceType !== resourceType || written.id !== id)) {
        return { ok: false, error: `PUT answered ${written.resourceType}/${written.id}` };
      }
    }
    const read = await client.read({ resourceType, id });
    if (!read || !read.meta || typeof read.meta.versionId !== 'string' || typeof read.meta.lastUpdated !== 'string') {
      return { ok: false, error: 'read-back lacks meta.versionId/meta.lastUpdated' };
    }
    const expected = stripServerMeta(resource, resource.meta !== undefined);
    const actual = stripServerMeta(read, resource.meta !== undefined);
    if (!isDeepStrictEqual(expected, actual)) {
      return { ok: false, error: `content differs: ${diffPaths(expected, actual).join('; ')}` };
    }
    return { ok: true };
  } catch (e) {
    const status = e?.response?.status;
    const body = e?.response?.data ? JSON.stringify(e.response.data).slice(0, 300) : '';
    return { ok: false, error: status ? `HTTP ${status} ${body}` : `${e?.name}: ${e?.message}` };
  }
}

before(async () => {
  server = await start({ name: 'examples' });
  client = await fhirClient(server, { connections: CONCURRENCY });
  const todo = examples.filter((e) => !e.skip);
  roundTrip = mapLimit(todo, CONCURRENCY, async (ex) => {
    results.set(ex.file, await roundTripOne(ex));
  });
  await roundTrip;
});

after(async () => {
  try {
    await client?.__dispatcher?.close();
  } catch { /* ignore */ }
  if (server) {
    try { await server.stop(); } finally { await server.cleanup(); }
  }
});

test('example corpus is present', () => {
  assert.ok(examples.length >= 400, `expected ~494 examples in ${EXAMPLES_DIR}, found ${examples.length}`);
});

for (const ex of examples) {
  test(`round-trip ${ex.file}`, { skip: ex.skip || false }, () => {
    const r = results.get(ex.file);
    assert.ok(r, 'no result recorded');
    assert.ok(r.ok, r.error);
  });
}

test('all examples round-trip (summary)', () => {
  const failures = [...results.entries()].filter(([, r]) => !r.ok);
  if (failures.length > 0) {
    const lines = failures.map(([f, r]) => `  ${f}: ${r.error}`).join('\n');
    assert.fail(`${failures.length}/${results.size} examples failed to round-trip:\n${lines}`);
  }
});

test('server is still healthy after the corpus', async () => {
  assert.equal(await server.healthy(), true);
});
