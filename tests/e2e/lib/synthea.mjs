// The Synthea test patients (tests/data/synthea/*.json.gz, Apache-2.0): 41
// transaction Bundles of POST entries with urn:uuid fullUrls and references.
//
// The records are synthetic but shaped like real PHI: never print their
// contents (names, identifiers, dates of birth, addresses) in test output or
// assertion messages; report counts and server-assigned ids only.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { E2E_DIR } from './server.mjs';

export const SYNTHEA_DIR = path.join(E2E_DIR, '../data/synthea');

/** [{file, bundle}] for every *.json.gz, sorted by file name. */
export function loadSyntheaBundles(dir = SYNTHEA_DIR) {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.json.gz')).sort().map((file) => ({
    file,
    raw: zlib.gunzipSync(fs.readFileSync(path.join(dir, file))),
  })).map(({ file, raw }) => ({ file, raw, bundle: JSON.parse(raw.toString('utf8')) }));
}

/** {type, id, vid} from a response location .../fhir/Type/id/_history/N (absolute or relative). */
export function parseLocation(loc) {
  const m = /(?:^|\/)([A-Z][A-Za-z]+)\/([A-Za-z0-9\-.]{1,64})\/_history\/(\d+)$/.exec(loc || '');
  assert.ok(m, `malformed response location: ${String(loc).slice(0, 200)}`);
  return { type: m[1], id: m[2], vid: m[3] };
}

/** Deep copy of `resource` with every reference found in `map` (fullUrl → Type/id) rewritten. */
export function rewriteRefs(resource, map) {
  return JSON.parse(JSON.stringify(resource), (k, v) => (k === 'reference' && typeof v === 'string' && map.has(v) ? map.get(v) : v));
}
