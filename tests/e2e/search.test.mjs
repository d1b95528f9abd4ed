// Search against a realistic data set: all 41 Synthea patients (12,811
// resources) are loaded over HTTPS as transactions, and every answer is
// compared with one computed independently, in JS, from the input files
// (urn:uuid fullUrls mapped to the server's ids through the response
// locations). At the end, the at-rest check: no patient's names, identifiers,
// phone numbers, address lines or birth dates are in the store's files.
//
// The records are synthetic but shaped like real PHI: assertion messages carry
// counts and server ids only, never the values searched for.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { start } from './lib/server.mjs';
import { assertOperationOutcome, mapLimit, stripServerMeta } from './lib/fhir.mjs';
import { loadSyntheaBundles, parseLocation, rewriteRefs } from './lib/synthea.mjs';

let server;
let agent;
const bundles = loadSyntheaBundles();

// The model: what the server should hold, Type → Map(id → resource), kept up
// to date with every write the tests make.
const model = new Map();
const put = (r) => { if (!model.has(r.resourceType)) model.set(r.resourceType, new Map()); model.get(r.resourceType).set(r.id, r); };
const all = (type) => [...(model.get(type)?.values() ?? [])];
let loaded = false;
const load = { ms: 0, entries: 0, non201: 0 };

before(async () => {
  server = await start({ name: 'search' });
  agent = new https.Agent({ keepAlive: true, maxSockets: 4, ca: server.ca });
});
// a clean SIGTERM stop (exit 0: no sanitizer report) ends the suite
after(async () => {
  agent?.destroy();
  if (server) {
    try { await server.stop(); } finally { await server.cleanup(); }
  }
});

const req = (method, p, o = {}) => server.req(method, p, { agent, timeout: 300_000, ...o });
const rel = (url) => { const u = new URL(url); return u.pathname + u.search; };
const ref = (r) => `${r.resourceType}/${r.id}`;
const fold = (s) => String(s).normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
const sameSet = (got, want, msg) => {
  const g = [...new Set(got)].sort();
  const w = [...new Set(want)].sort();
  const missing = w.filter((x) => !g.includes(x)).length;
  const extra = g.filter((x) => !w.includes(x)).length;
  assert.ok(missing === 0 && extra === 0, `${msg}: expected ${w.length}, got ${g.length} (${missing} missing, ${extra} unexpected)`);
};

/** One searchset page: 200, Bundle searchset, every match of `type`. */
async function page(p, type, o = {}) {
  const r = await req(o.method ?? 'GET', p, o);
  assertStatus(r, 200, `search ${p.split('?')[0]}`);
  const b = r.json;
  assert.equal(b?.resourceType, 'Bundle');
  assert.equal(b.type, 'searchset');
  for (const e of b.entry ?? []) {
    assert.ok(e.search && ['match', 'include', 'outcome'].includes(e.search.mode), `search.mode ${e.search?.mode}`);
    if (e.search.mode === 'match') {
      assert.equal(e.resource?.resourceType, type, `a match of a ${type} search is a ${e.resource?.resourceType}`);
      assert.ok(e.fullUrl?.endsWith(`/${type}/${e.resource.id}`), 'entry.fullUrl ends with Type/id');
    }
  }
  return b;
}

const nextOf = (b) => b.link?.find((l) => l.relation === 'next')?.url;
const matches = (b) => (b.entry ?? []).filter((e) => e.search.mode === 'match').map((e) => e.resource);
const includes = (b) => (b.entry ?? []).filter((e) => e.search.mode === 'include').map((e) => e.resource);

/** Follows next links to the end: every match id (no duplicates allowed), includes, pages. */
async function walk(p, type, { onPage } = {}) {
  const ids = [];
  const seen = new Set();
  const inc = [];
  let pages = 0;
  let first;
  let url = p;
  while (url) {
    const b = await page(url, type);
    first ??= b;
    pages++;
    for (const m of matches(b)) {
      assert.ok(!seen.has(m.id), `${type} ${m.id} returned twice while paging (page ${pages})`);
      seen.add(m.id);
      ids.push(m.id);
    }
    inc.push(...includes(b));
    if (onPage) await onPage(b, pages);
    const n = nextOf(b);
    url = n ? rel(n) : null;
    assert.ok(pages < 5000, 'paging does not end');
  }
  return { ids, includes: inc, pages, first };
}

/** _summary=count total. */
async function count(p, type) {
  const b = await page(`${p}${p.includes('?') ? '&' : '?'}_summary=count`, type);
  assert.equal(typeof b.total, 'number', '_summary=count carries total');
  assert.equal((b.entry ?? []).filter((e) => e.search.mode === 'match').length, 0, '_summary=count has no matches');
  return b.total;
}


// Like lib/fhir.mjs assertStatus, but never prints a response body (it may hold
// the synthetic PHI): the status, and an OperationOutcome's diagnostics only.
function assertStatus(res, expected, msg = '') {
  const list = Array.isArray(expected) ? expected : [expected];
  if (list.includes(res.status)) return;
  const why = res.json?.resourceType === 'OperationOutcome' ? res.json.issue?.map((i) => i.diagnostics).join('; ').slice(0, 300) : `(${res.json?.resourceType ?? 'no JSON'} body)`;
  assert.fail(`expected status ${list.join('|')} ${msg}, got ${res.status}: ${why}`);
}

const need = () => assert.ok(loaded, 'the Synthea data did not load');

// ---------------------------------------------------------------- loading

test('all 41 Synthea bundles load as transactions: every entry 201 Created', async (t) => {
  assert.equal(bundles.length, 41, 'the 41 Synthea bundles are in tests/data/synthea');
  const t0 = Date.now();
  // fullUrl → Type/id, per bundle: the bundles share the fullUrls of their
  // Organizations and Practitioners, and each creates its own copies
  const maps = bundles.map(() => new Map());
  await mapLimit(bundles, 2, async ({ file, raw, bundle }, i) => {
    const r = await req('POST', '/fhir', { body: raw });
    assertStatus(r, 200, `transaction of bundle #${i}`);
    assert.equal(r.json?.type, 'transaction-response');
    assert.equal(r.json.entry?.length, bundle.entry.length, `bundle #${i}: one response entry per request entry`);
    r.json.entry.forEach((e, k) => {
      load.entries++;
      if (!/^201\b/.test(e.response?.status ?? '')) { load.non201++; return; }
      const loc = parseLocation(e.response.location);
      assert.equal(loc.type, bundle.entry[k].resource.resourceType, `bundle #${i} entry ${k}: location type`);
      assert.equal(loc.vid, '1');
      maps[i].set(bundle.entry[k].fullUrl, `${loc.type}/${loc.id}`);
    });
    void file;
  });
  load.ms = Date.now() - t0;
  t.diagnostic(`loaded ${load.entries} entries from ${bundles.length} bundles in ${load.ms} ms (${(load.entries / (load.ms / 1000)).toFixed(0)} resources/s)`);
  assert.equal(load.non201, 0, `${load.non201} entries were not 201 Created`);
  assert.equal(load.entries, 12811);
  bundles.forEach(({ bundle }, i) => {
    for (const e of bundle.entry) {
      const r = rewriteRefs(e.resource, maps[i]);
      r.id = maps[i].get(e.fullUrl).split('/')[1];
      put(r);
    }
  });
  // every urn:uuid reference was to an entry of the same bundle: none is left
  const left = JSON.stringify([...model.values()].map((m) => [...m.values()])).match(/"reference":"urn:uuid:/g);
  assert.equal(left, null, 'every reference maps to a created resource');
  loaded = true;
});

test('the server holds exactly what was loaded, type by type', async () => {
  need();
  for (const [type, m] of model) assert.equal(await count(`/fhir/${type}`, type), m.size, `${type} count`);
});

test('a created Observation reads back with its references rewritten to the new ids', async () => {
  need();
  const o = all('Observation')[123];
  const r = await req('GET', `/fhir/Observation/${o.id}`);
  assertStatus(r, 200);
  assert.equal(r.json.subject.reference, o.subject.reference);
  assert.equal(r.json.encounter.reference, o.encounter.reference);
  assert.match(r.json.subject.reference, /^Patient\/[A-Za-z0-9\-.]+$/);
});

test('resources read back as sent (ids and references rewritten, contained and nested references too)', async () => {
  need();
  for (const [type, m] of model) {
    const rs = [...m.values()];
    for (const r of [rs[0], rs[Math.floor(rs.length / 2)], rs[rs.length - 1]]) {
      const g = await req('GET', `/fhir/${type}/${r.id}`);
      assertStatus(g, 200, `read ${type}/${r.id}`);
      assert.ok(!g.body.includes('urn:uuid:'), `${type}/${r.id} still holds a urn:uuid reference`);
      assert.ok(isDeepStrictEqual(stripServerMeta(g.json, true), r), `${type}/${r.id} differs from what was sent`);
    }
  }
});

test('_tag, _id lists and _elements', async () => {
  need();
  for (const type of ['Observation', 'Encounter', 'Patient']) {
    assert.equal(await count(`/fhir/${type}?_tag=https://smarthealthit.org/tags|synthea-5-2019`, type),
      all(type).filter((r) => r.meta?.tag?.some((t) => t.code === 'synthea-5-2019')).length, `_tag on ${type}`);
  }
  const ps = all('Patient').slice(0, 5);
  const w = await walk(`/fhir/Patient?_id=${ps.map((p) => p.id).join(',')}`, 'Patient');
  sameSet(w.ids, ps.map((p) => p.id), '_id=a,b,c,d,e');
  const e = await page(`/fhir/Patient?_id=${ps[0].id}&_elements=gender`, 'Patient');
  const got = matches(e)[0];
  assert.ok(got.gender === ps[0].gender, '_elements=gender keeps gender');
  assert.ok(got.name === undefined, '_elements=gender leaves out name');
  assert.ok(got.birthDate === undefined, '_elements=gender leaves out birthDate');
  assert.ok(got.meta?.tag?.some((t) => t.code === 'SUBSETTED'), '_elements marks the resource SUBSETTED');
});

test('identifier, phone, address and code:text searches', async () => {
  need();
  const pats = all('Patient');
  for (const p of pats.filter((_, i) => i % 6 === 0)) {
    const mrn = p.identifier.find((i) => i.type?.coding?.[0]?.code === 'MR');
    const hits = (sys, v) => pats.filter((x) => (x.identifier ?? []).some((i) => i.value === v && (sys === undefined || i.system === sys))).map((x) => x.id);
    sameSet((await walk(`/fhir/Patient?identifier=${encodeURIComponent(`${mrn.system}|${mrn.value}`)}`, 'Patient')).ids, hits(mrn.system, mrn.value), `identifier=system|MRN of Patient/${p.id}`);
    sameSet((await walk(`/fhir/Patient?identifier=${encodeURIComponent(mrn.value)}`, 'Patient')).ids, hits(undefined, mrn.value), `identifier=MRN of Patient/${p.id}`);
    sameSet((await walk(`/fhir/Patient?identifier:of-type=${encodeURIComponent(`http://terminology.hl7.org/CodeSystem/v2-0203|MR|${mrn.value}`)}`, 'Patient')).ids,
      pats.filter((x) => (x.identifier ?? []).some((i) => i.value === mrn.value && i.type?.coding?.some((c) => c.code === 'MR'))).map((x) => x.id), `identifier:of-type of Patient/${p.id}`);
    const phone = p.telecom[0].value;
    sameSet((await walk(`/fhir/Patient?phone=${encodeURIComponent(phone)}`, 'Patient')).ids, pats.filter((x) => (x.telecom ?? []).some((t) => t.value === phone)).map((x) => x.id), `phone of Patient/${p.id}`);
    const city = p.address[0].city;
    sameSet((await walk(`/fhir/Patient?address-city=${encodeURIComponent(city.toLowerCase())}`, 'Patient')).ids,
      pats.filter((x) => (x.address ?? []).some((a) => a.city && fold(a.city).startsWith(fold(city)))).map((x) => x.id), `address-city of Patient/${p.id}`);
  }
  const obs = all('Observation');
  for (const v of ['body h', 'Blood Pressure', 'HEMOGLOBIN']) {
    const want = obs.filter((o) => [o.code.text, ...o.code.coding.map((c) => c.display)].some((t) => t && fold(t).startsWith(fold(v)))).length;
    assert.equal(await count(`/fhir/Observation?code:text=${encodeURIComponent(v)}`, 'Observation'), want, `code:text=${v}`);
  }
});

// ------------------------------------------------------------ references and tokens

const obsOf = (pref) => all('Observation').filter((o) => o.subject?.reference === pref);
const synthPatients = () => all('Patient').filter((p) => p.birthDate); // the test adds a few without
const hasCoding = (cc, sys, code) => (cc?.coding ?? []).some((c) => (sys === undefined || c.system === sys) && c.code === code);

function pickPatients() {
  const ps = synthPatients().map((p) => ({ p, n: obsOf(ref(p)).length })).sort((a, b) => a.n - b.n || (a.p.id < b.p.id ? -1 : 1));
  return [ps[0].p, ps[Math.floor(ps.length / 2)].p, ps[ps.length - 1].p];
}

describe('Observations per patient', () => {
  test('_summary=count, _total=accurate and walking pages agree with the input files', async () => {
    need();
    for (const p of pickPatients()) {
      const want = obsOf(ref(p)).map((o) => o.id);
      assert.ok(want.length > 0);
      for (const q of [`subject=Patient/${p.id}`, `patient=${p.id}`, `subject:Patient=${p.id}`,
        `subject=${encodeURIComponent(`${server.base}/Patient/${p.id}`)}`]) {
        assert.equal(await count(`/fhir/Observation?${q}`, 'Observation'), want.length, `count Observation?${q.split('=')[0]}= for Patient/${p.id}`);
      }
      const acc = await page(`/fhir/Observation?subject=Patient/${p.id}&_total=accurate&_count=10`, 'Observation');
      assert.equal(acc.total, want.length, `_total=accurate for Patient/${p.id}`);
      assert.equal(matches(acc).length, Math.min(10, want.length), '_count=10 page size');
      const w = await walk(`/fhir/Observation?subject=Patient/${p.id}&_count=25`, 'Observation');
      sameSet(w.ids, want, `walked Observations of Patient/${p.id}`);
      assert.equal(w.pages, Math.max(1, Math.ceil(want.length / 25)), 'number of pages');
    }
  });

  test('POST _search (form body) answers like GET', async () => {
    need();
    const p = pickPatients()[1];
    const want = obsOf(ref(p)).filter((o) => hasCoding(o.category?.[0], undefined, 'vital-signs')).map((o) => o.id);
    const body = `subject=${encodeURIComponent(`Patient/${p.id}`)}&category=vital-signs&_count=1000`;
    const b = await page('/fhir/Observation/_search', 'Observation', {
      method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' },
    });
    sameSet(matches(b).map((o) => o.id), want, 'POST _search');
    const g = await page(`/fhir/Observation?${body}`, 'Observation');
    sameSet(matches(g).map((o) => o.id), want, 'GET search');
  });
});

describe('Observations per LOINC code', () => {
  function codes() {
    const c = new Map();
    for (const o of all('Observation')) for (const x of o.code.coding) if (x.system === 'http://loinc.org') c.set(x.code, (c.get(x.code) ?? 0) + 1);
    const sorted = [...c.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
    return [sorted[0][0], '8302-2', '2093-3', sorted[Math.floor(sorted.length / 2)][0], sorted[sorted.length - 1][0]];
  }

  test('code=system|code, code=code; _summary=count, _total=accurate and pages', async () => {
    need();
    for (const code of codes()) {
      const want = all('Observation').filter((o) => hasCoding(o.code, 'http://loinc.org', code)).map((o) => o.id);
      assert.equal(await count(`/fhir/Observation?code=http://loinc.org|${code}`, 'Observation'), want.length, `count code ${code}`);
      assert.equal(await count(`/fhir/Observation?code=${code}`, 'Observation'), want.length, `count code (no system) ${code}`);
      const acc = await page(`/fhir/Observation?code=${encodeURIComponent(`http://loinc.org|${code}`)}&_total=accurate&_count=1`, 'Observation');
      assert.equal(acc.total, want.length, `_total=accurate code ${code}`);
      const w = await walk(`/fhir/Observation?code=http://loinc.org|${code}&_count=100`, 'Observation');
      sameSet(w.ids, want, `walked code ${code}`);
    }
  });

  test('OR (comma) and AND (repeated / combined parameters)', async () => {
    need();
    const [a, b] = ['8302-2', '29463-7'];
    const want = all('Observation').filter((o) => hasCoding(o.code, 'http://loinc.org', a) || hasCoding(o.code, 'http://loinc.org', b));
    assert.equal(await count(`/fhir/Observation?code=http://loinc.org|${a},http://loinc.org|${b}`, 'Observation'), want.length, 'OR');
    const p = pickPatients()[2];
    const both = want.filter((o) => o.subject.reference === ref(p)).map((o) => o.id);
    const w = await walk(`/fhir/Observation?code=${a},${b}&patient=${p.id}&_count=200`, 'Observation');
    sameSet(w.ids, both, 'OR and AND');
    // a repeated parameter is an AND: no Observation has both codes
    assert.equal(await count(`/fhir/Observation?code=${a}&code=${b}`, 'Observation'), 0, 'AND of two codes');
  });

  test('|code (no system) and system| (any code of the system)', async () => {
    need();
    assert.equal(await count('/fhir/Observation?code=|8302-2', 'Observation'), 0, 'every code has a system');
    const want = all('Observation').filter((o) => o.code.coding.some((c) => c.system === 'http://loinc.org')).length;
    assert.equal(await count('/fhir/Observation?code=http://loinc.org|', 'Observation'), want, 'system|');
  });

  test('token :not and :missing', async () => {
    need();
    const obs = all('Observation');
    assert.equal(await count('/fhir/Observation?code:not=http://loinc.org|8302-2', 'Observation'),
      obs.filter((o) => !hasCoding(o.code, 'http://loinc.org', '8302-2')).length, 'code:not');
    const pats = all('Patient');
    assert.equal(await count('/fhir/Patient?gender:not=male', 'Patient'), pats.filter((p) => p.gender !== 'male').length, 'gender:not=male');
    assert.equal(await count('/fhir/Patient?gender=female', 'Patient'), pats.filter((p) => p.gender === 'female').length, 'gender=female');
    assert.equal(await count('/fhir/Observation?value-quantity:missing=false', 'Observation'), obs.filter((o) => o.valueQuantity).length, 'value-quantity:missing=false');
    assert.equal(await count('/fhir/Observation?value-quantity:missing=true', 'Observation'), obs.filter((o) => !o.valueQuantity).length, 'value-quantity:missing=true');
    assert.equal(await count('/fhir/Patient?death-date:missing=false', 'Patient'), pats.filter((p) => p.deceasedDateTime).length, 'death-date:missing=false');
    assert.equal(await count('/fhir/Patient?death-date:missing=true', 'Patient'), pats.filter((p) => !p.deceasedDateTime).length, 'death-date:missing=true');
  });

  // R4 3.1.1.5.6 (number, and quantity by reference to it): eq and ne compare
  // with the range the value's precision implies ("170" is [169.5, 170.5)),
  // while gt, ge, lt and le compare with the exact value ("values that are
  // greater than exactly 100").
  test('quantity and composite prefixes: eq/ne use the implicit range, gt/ge/lt/le the exact value', async () => {
    need();
    const obs = all('Observation');
    const height = (o) => hasCoding(o.code, 'http://loinc.org', '8302-2') && o.valueQuantity ? o.valueQuantity.value : undefined;
    const cm = (o) => (o.valueQuantity?.code === 'cm' && o.valueQuantity.system === 'http://unitsofmeasure.org' ? o.valueQuantity.value : undefined);
    const kg = (o) => (o.valueQuantity?.code === 'kg' ? o.valueQuantity.value : undefined);
    const cmp = {
      gt: (v, x) => v > x, ge: (v, x) => v >= x, lt: (v, x) => v < x, le: (v, x) => v <= x,
      eq: (v, x) => v >= x - 0.5 && v < x + 0.5, ne: (v, x) => !(v >= x - 0.5 && v < x + 0.5),
    };
    const cases = [];
    for (const prefix of Object.keys(cmp)) {
      cases.push([`code-value-quantity=loinc|8302-2$${prefix}170`, `code-value-quantity=${encodeURIComponent(`http://loinc.org|8302-2$${prefix}170`)}`, height, prefix, 170]);
      cases.push([`value-quantity=${prefix}170|ucum|cm`, `value-quantity=${prefix}170|http://unitsofmeasure.org|cm`, cm, prefix, 170]);
      cases.push([`value-quantity=${prefix}60||kg`, `value-quantity=${prefix}60||kg`, kg, prefix, 60]);
    }
    const wrong = [];
    for (const [label, q, val, prefix, x] of cases) {
      const want = obs.filter((o) => val(o) !== undefined && cmp[prefix](val(o), x)).length;
      const got = await count(`/fhir/Observation?${q}`, 'Observation');
      if (got !== want) wrong.push(`${label}: expected ${want}, got ${got}`);
    }
    assert.deepEqual(wrong, [], `quantity searches with wrong counts:\n${wrong.join('\n')}`);
  });
});

// ------------------------------------------------------------ strings

describe('strings', () => {
  const tag = `Qz${crypto.randomBytes(4).toString('hex').replace(/\d/g, (d) => 'ghijklmnop'[d])}`;
  const extra = [`${tag}Čapek`, `${tag}Lefèvre`, `${tag}Müller`, `${tag}Muller`];

  test('family-name prefixes of the Synthea patients, case-insensitive', async () => {
    need();
    const pats = all('Patient');
    const famOf = (p) => p.name.map((n) => n.family).filter(Boolean);
    for (const p of pats.filter((_, i) => i % 5 === 0)) {
      const fam = famOf(p)[0];
      for (const len of [1, 3, fam.length]) {
        const prefix = fam.slice(0, len);
        const want = pats.filter((x) => famOf(x).some((f) => fold(f).startsWith(fold(prefix)))).map((x) => x.id);
        for (const v of [prefix, prefix.toLowerCase(), prefix.toUpperCase()]) {
          const w = await walk(`/fhir/Patient?family=${encodeURIComponent(v)}`, 'Patient');
          sameSet(w.ids, want, `family prefix (length ${len}) of Patient/${p.id}`);
        }
      }
    }
  });

  test('name= matches any part of any name (given, family, prefix)', async () => {
    need();
    const pats = all('Patient');
    const parts = (x) => x.name.flatMap((n) => [n.family, ...(n.given ?? []), ...(n.prefix ?? []), ...(n.suffix ?? []), n.text]).filter(Boolean);
    for (const p of pats.filter((_, i) => i % 7 === 3)) {
      for (const v of [p.name[0].given[0].slice(0, 4), p.name[0].family.slice(0, 2)]) {
        const want = pats.filter((x) => parts(x).some((s) => fold(s).startsWith(fold(v)))).map((x) => x.id);
        const w = await walk(`/fhir/Patient?name=${encodeURIComponent(v.toLowerCase())}`, 'Patient');
        sameSet(w.ids, want, `name prefix of Patient/${p.id}`);
      }
    }
  });

  test('accent-insensitive prefix match, :exact and :contains', async () => {
    need();
    for (const family of extra) {
      const r = await req('POST', '/fhir/Patient', { body: { resourceType: 'Patient', name: [{ family }] } });
      assertStatus(r, 201);
      put({ resourceType: 'Patient', id: parseLocation(r.headers.location).id, name: [{ family }] });
    }
    const pats = all('Patient');
    const fams = (x) => x.name.map((n) => n.family).filter(Boolean);
    const prefix = async (v) => (await walk(`/fhir/Patient?family=${encodeURIComponent(v)}`, 'Patient')).ids;
    const want = (pred) => pats.filter((x) => fams(x).some(pred)).map((x) => x.id);
    sameSet(await prefix(`${tag}capek`), want((f) => fold(f).startsWith(fold(`${tag}capek`))), 'unaccented query, accented value');
    assert.equal((await prefix(`${tag}capek`)).length, 1);
    sameSet(await prefix(`${tag.toUpperCase()}LÉFÈ`), want((f) => fold(f).startsWith(fold(`${tag}lefe`))), 'accented upper-case query');
    assert.equal((await prefix(`${tag}lefe`)).length, 1);
    assert.equal((await prefix(`${tag}müll`)).length, 2, 'Müller and Muller both match müll');
    assert.equal((await prefix(`${tag}MULLER`)).length, 2, 'Müller and Muller both match MULLER');
    assert.equal((await prefix(tag.toLowerCase())).length, 4);
    // :exact is case- and accent-sensitive, whole value
    const exact = async (v) => (await walk(`/fhir/Patient?family:exact=${encodeURIComponent(v)}`, 'Patient')).ids;
    sameSet(await exact(`${tag}Müller`), want((f) => f === `${tag}Müller`), ':exact with accent');
    assert.equal((await exact(`${tag}Müller`)).length, 1);
    assert.equal((await exact(`${tag}müller`)).length, 0, ':exact is case-sensitive');
    assert.equal((await exact(`${tag}Mül`)).length, 0, ':exact is not a prefix match');
    // :contains: anywhere in the value, case- and accent-insensitive
    const contains = async (v) => (await walk(`/fhir/Patient?family:contains=${encodeURIComponent(v)}`, 'Patient')).ids;
    sameSet(await contains('APEK'), want((f) => fold(f).includes('apek')), ':contains APEK');
    sameSet(await contains('èvr'), want((f) => fold(f).includes('evr')), ':contains èvr');
    sameSet(await contains(tag.slice(2)), want((f) => fold(f).includes(fold(tag.slice(2)))), ':contains the middle of the tag');
    assert.equal((await contains(tag.slice(2))).length, 4);
    // and on the Synthea names: a middle substring of a family name
    for (const p of pats.filter((_, i) => i % 9 === 1)) {
      const f = fams(p)[0];
      if (f.length < 5) continue;
      const mid = f.slice(1, 4);
      sameSet(await contains(mid.toUpperCase()), want((x) => fold(x).includes(fold(mid))), `:contains of Patient/${p.id}'s family`);
      sameSet(await exact(f), want((x) => x === f), `:exact of Patient/${p.id}'s family`);
    }
  });

  test('searches never cross types: a Practitioner name search returns Practitioners only', async () => {
    need();
    const prs = all('Practitioner');
    const v = prs[0].name[0].family.slice(0, 2);
    const w = await walk(`/fhir/Practitioner?name=${encodeURIComponent(v)}`, 'Practitioner');
    sameSet(w.ids, prs.filter((x) => x.name.some((n) => [n.family, ...(n.given ?? []), ...(n.prefix ?? [])].some((s) => s && fold(s).startsWith(fold(v))))).map((x) => x.id), 'Practitioner name prefix');
    const p = all('Patient')[0];
    const o = all('Observation')[0];
    assert.equal(await count(`/fhir/Patient?_id=${o.id}`, 'Patient'), 0, 'Patient?_id=<an Observation id>');
    assert.equal(await count(`/fhir/Observation?_id=${p.id}`, 'Observation'), 0, 'Observation?_id=<a Patient id>');
    assert.equal(await count(`/fhir/Patient?_id=${p.id}`, 'Patient'), 1, 'Patient?_id');
    assert.equal(await count(`/fhir/Encounter?subject=Patient/${o.id}`, 'Encounter'), 0, 'reference to the wrong type');
  });
});

// ------------------------------------------------------------ dates

const ms = (s) => Date.parse(s);
// [lo, hi] in ms of a date/dateTime value with its precision
function range(v) {
  let m = /^(\d{4})$/.exec(v);
  if (m) return [Date.UTC(+m[1], 0, 1), Date.UTC(+m[1] + 1, 0, 1) - 1];
  m = /^(\d{4})-(\d{2})$/.exec(v);
  if (m) return [Date.UTC(+m[1], +m[2] - 1, 1), Date.UTC(+m[1], +m[2], 1) - 1];
  m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(v);
  if (m) return [Date.UTC(+m[1], +m[2] - 1, +m[3]), Date.UTC(+m[1], +m[2] - 1, +m[3] + 1) - 1];
  m = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(Z|[+-]\d{2}:\d{2})$/.exec(v);
  if (m) return [ms(v), ms(v) + 999];
  throw new Error(`range(): unexpected date form ${v.length}`);
}
// Both readings of the spec's range comparisons: `strict` (gt/lt overlap, or
// the search range contains the target) and `inclusive` (ge: the target is not
// wholly before the value; le: not wholly after). They differ only when the
// target ends / starts inside the search value's precision.
function dateMatch(prefix, [plo, phi], [rlo, rhi]) {
  const contains = plo <= rlo && rhi <= phi;
  switch (prefix) {
    case 'eq': return [contains, contains];
    case 'ne': return [!contains, !contains];
    case 'gt': return [rhi > phi, rhi > phi];
    case 'lt': return [rlo < plo, rlo < plo];
    case 'ge': return [rhi > phi || contains, rhi >= plo];
    case 'le': return [rlo < plo || contains, rlo <= phi];
    case 'sa': return [rlo > phi, rlo > phi];
    case 'eb': return [rhi < plo, rhi < plo];
    default: throw new Error(prefix);
  }
}
const isoSec = (t) => new Date(t).toISOString().replace(/\.\d{3}Z$/, 'Z');

describe('dates', () => {
  const encRange = (e) => [range(e.period.start)[0], range(e.period.end ?? e.period.start)[1]];

  async function checkEnc(q, wantFn, msg) {
    const encs = all('Encounter');
    const strict = encs.filter((e) => wantFn(e)[0]).map((e) => e.id);
    const incl = encs.filter((e) => wantFn(e)[1]).map((e) => e.id);
    const w = await walk(`/fhir/Encounter?${q}&_count=1000`, 'Encounter');
    const got = [...w.ids].sort().join();
    if (got === [...strict].sort().join()) return;
    sameSet(w.ids, incl, msg);
  }

  test('Encounter.period against ge/gt/le/lt/sa/eb/eq boundaries (instants)', async () => {
    need();
    const encs = all('Encounter');
    const ends = new Set(encs.flatMap((e) => [range(e.period.start)[0], range(e.period.end)[0]]));
    const longest = [...encs].sort((a, b) => (ms(b.period.end) - ms(b.period.start)) - (ms(a.period.end) - ms(a.period.start)))[0];
    let mid = Math.floor((ms(longest.period.start) + ms(longest.period.end)) / 2000) * 1000;
    while (ends.has(mid)) mid += 1000;
    const boundaries = [
      isoSec(mid), // inside the longest encounter
      isoSec(ms(encs[100].period.start)), // exactly a start
      isoSec(ms(encs[200].period.end)), // exactly an end
      '2015-06-01T12:00:00Z',
    ];
    for (const b of boundaries) {
      for (const prefix of ['ge', 'gt', 'le', 'lt', 'sa', 'eb', 'eq']) {
        await checkEnc(`date=${prefix}${encodeURIComponent(b)}`, (e) => dateMatch(prefix, range(b), encRange(e)), `Encounter date=${prefix}<boundary ${boundaries.indexOf(b)}>`);
      }
    }
    // the longest encounter straddles `mid`: it is in both ge and le, gt and lt
    for (const prefix of ['ge', 'le', 'gt', 'lt']) {
      const w = await walk(`/fhir/Encounter?patient=${longest.subject.reference.split('/')[1]}&date=${prefix}${isoSec(mid)}`, 'Encounter');
      assert.ok(w.ids.includes(longest.id), `a period that straddles the value matches ${prefix}`);
    }
  });

  test('Encounter date ranges at day, month and year precision (AND of two bounds)', async () => {
    need();
    const cases = [['ge2015-03-01', 'lt2015-04-01'], ['gt2012-07-14', 'le2013-01-31'], ['ge2010', 'lt2011'], ['ge2016-02', 'le2016-04']];
    for (const [a, b] of cases) {
      const pa = a.slice(0, 2); const pb = b.slice(0, 2);
      await checkEnc(`date=${a}&date=${b}`, (e) => {
        const x = dateMatch(pa, range(a.slice(2)), encRange(e)); const y = dateMatch(pb, range(b.slice(2)), encRange(e));
        return [x[0] && y[0], x[1] && y[1]];
      }, `Encounter date=${a}&date=${b}`);
    }
    for (const v of ['2016', '2014-05', '2013-11-07']) {
      await checkEnc(`date=${v}`, (e) => dateMatch('eq', range(v), encRange(e)), `Encounter date=${v}`);
    }
  });

  test('Observation date (dateTime) with ge/lt and _lastUpdated', async () => {
    need();
    const p = pickPatients()[2];
    const obs = obsOf(ref(p));
    const t = obs[Math.floor(obs.length / 2)].effectiveDateTime;
    for (const prefix of ['ge', 'gt', 'le', 'lt']) {
      const want = obs.filter((o) => dateMatch(prefix, range(t), range(o.effectiveDateTime))[1]).map((o) => o.id);
      const w = await walk(`/fhir/Observation?patient=${p.id}&date=${prefix}${encodeURIComponent(t)}&_count=500`, 'Observation');
      sameSet(w.ids, want, `Observation date=${prefix}<an effective time of Patient/${p.id}>`);
    }
    assert.equal(await count('/fhir/Observation?_lastUpdated=gt2000-01-01', 'Observation'), all('Observation').length, '_lastUpdated=gt2000');
    assert.equal(await count('/fhir/Observation?_lastUpdated=lt2000-01-01', 'Observation'), 0, '_lastUpdated=lt2000');
  });

  test('Patient birthdate: exact day, year, year-month and ranges', async () => {
    need();
    const pats = all('Patient');
    const bd = (x) => x.birthDate;
    for (const p of synthPatients()) {
      assert.equal(await count(`/fhir/Patient?birthdate=${bd(p)}`, 'Patient'), pats.filter((x) => bd(x) === bd(p)).length, `birthdate=<day> of Patient/${p.id}`);
      assert.equal(await count(`/fhir/Patient?birthdate=eq${bd(p)}`, 'Patient'), pats.filter((x) => bd(x) === bd(p)).length, `birthdate=eq<day> of Patient/${p.id}`);
    }
    for (const p of synthPatients().filter((_, i) => i % 4 === 0)) {
      const y = bd(p).slice(0, 4); const ym = bd(p).slice(0, 7);
      sameSet((await walk(`/fhir/Patient?birthdate=${y}`, 'Patient')).ids, pats.filter((x) => bd(x)?.startsWith(y)).map((x) => x.id), `birthdate=<year> of Patient/${p.id}`);
      sameSet((await walk(`/fhir/Patient?birthdate=${ym}`, 'Patient')).ids, pats.filter((x) => bd(x)?.startsWith(ym)).map((x) => x.id), `birthdate=<year-month> of Patient/${p.id}`);
      // ranges with the boundary on a patient's own birth date
      const day = bd(p);
      const rng = { ge: (x) => x >= day, gt: (x) => x > day, le: (x) => x <= day, lt: (x) => x < day };
      for (const [prefix, f] of Object.entries(rng)) {
        sameSet((await walk(`/fhir/Patient?birthdate=${prefix}${day}`, 'Patient')).ids, pats.filter((x) => bd(x) && f(bd(x))).map((x) => x.id), `birthdate=${prefix}<day of Patient/${p.id}>`);
      }
    }
    const want = pats.filter((x) => bd(x) && bd(x) >= '1960' && bd(x) < '1980').map((x) => x.id);
    sameSet((await walk('/fhir/Patient?birthdate=ge1960&birthdate=lt1980', 'Patient')).ids, want, 'birthdate=ge1960&birthdate=lt1980');
    const want2 = pats.filter((x) => bd(x) && bd(x) > '1985-06-30').map((x) => x.id);
    sameSet((await walk('/fhir/Patient?birthdate=gt1985-06', 'Patient')).ids, want2, 'birthdate=gt1985-06');
  });
});

// ------------------------------------------------------------ _sort

describe('_sort', () => {
  function pickSortable() {
    const byPat = new Map();
    for (const e of all('Encounter')) { const k = e.subject.reference; if (!byPat.has(k)) byPat.set(k, []); byPat.get(k).push(e); }
    // a patient with many encounters whose start order and end order agree
    const ok = [...byPat.entries()].filter(([, es]) => {
      const a = [...es].sort((x, y) => ms(x.period.start) - ms(y.period.start)).map((e) => e.id).join();
      const b = [...es].sort((x, y) => ms(x.period.end) - ms(y.period.end)).map((e) => e.id).join();
      return a === b && es.length >= 20;
    }).sort((x, y) => y[1].length - x[1].length);
    return ok[0];
  }

  for (const dir of ['-date', 'date']) {
    test(`Encounter?patient=X&_sort=${dir}, walked in pages of 7`, async () => {
      need();
      const [pref, encs] = pickSortable();
      const got = [];
      const w = await walk(`/fhir/Encounter?patient=${pref.split('/')[1]}&_sort=${dir}&_count=7`, 'Encounter', {
        onPage: (b) => { got.push(...matches(b)); },
      });
      sameSet(w.ids, encs.map((e) => e.id), 'sorted walk');
      const sign = dir.startsWith('-') ? -1 : 1;
      for (let i = 1; i < got.length; i++) {
        assert.ok(sign * (ms(got[i].period.start) - ms(got[i - 1].period.start)) >= 0, `_sort=${dir}: entry ${i} (Encounter/${got[i].id}) out of order`);
      }
    });
  }

  test('_sort=-_lastUpdated and a second key', async () => {
    need();
    const p = pickPatients()[0];
    const w = [];
    await walk(`/fhir/Observation?patient=${p.id}&_sort=-date,_lastUpdated&_count=9`, 'Observation', { onPage: (b) => { w.push(...matches(b)); } });
    sameSet(w.map((o) => o.id), obsOf(ref(p)).map((o) => o.id), 'two sort keys');
    for (let i = 1; i < w.length; i++) assert.ok(ms(w[i].effectiveDateTime) <= ms(w[i - 1].effectiveDateTime), `entry ${i} out of order`);
    const l = [];
    await walk(`/fhir/Observation?patient=${p.id}&_sort=-_lastUpdated&_count=9`, 'Observation', { onPage: (b) => { l.push(...matches(b)); } });
    for (let i = 1; i < l.length; i++) assert.ok(ms(l[i].meta.lastUpdated) <= ms(l[i - 1].meta.lastUpdated), `_lastUpdated entry ${i} out of order`);
  });
});

// ------------------------------------------------------------ _include, _revinclude, chains, _has

describe('_include, _revinclude, chains and _has', () => {
  const encsOf = (pref) => all('Encounter').filter((e) => e.subject.reference === pref);
  const practsOf = (encs) => [...new Set(encs.flatMap((e) => (e.participant ?? []).map((x) => x.individual?.reference).filter(Boolean)))];

  test('Encounter?patient=X&_include=Encounter:practitioner returns exactly the referenced practitioners', async () => {
    need();
    for (const p of pickPatients()) {
      const encs = encsOf(ref(p));
      const b = await page(`/fhir/Encounter?patient=${p.id}&_include=Encounter:practitioner&_count=1000`, 'Encounter');
      sameSet(matches(b).map((e) => e.id), encs.map((e) => e.id), `Encounters of Patient/${p.id}`);
      sameSet(includes(b).map(ref), practsOf(encs), `included practitioners of Patient/${p.id}'s encounters`);
      // page by page: each page includes what its own matches reference
      await walk(`/fhir/Encounter?patient=${p.id}&_include=Encounter:practitioner&_count=4`, 'Encounter', {
        onPage: (pg) => sameSet(includes(pg).map(ref), practsOf(matches(pg).map((e) => model.get('Encounter').get(e.id))), 'per-page includes'),
      });
      const s = await page(`/fhir/Encounter?patient=${p.id}&_include=Encounter:subject&_count=1000`, 'Encounter');
      sameSet(includes(s).map(ref), [ref(p)], '_include=Encounter:subject');
    }
  });

  test('_revinclude and _include:iterate', async () => {
    need();
    for (const p of pickPatients().slice(0, 2)) {
      const encs = encsOf(ref(p));
      const b = await page(`/fhir/Patient?_id=${p.id}&_revinclude=Encounter:patient`, 'Patient');
      sameSet(matches(b).map((x) => x.id), [p.id], 'the patient');
      sameSet(includes(b).map(ref), encs.map(ref), `_revinclude Encounters of Patient/${p.id}`);
      const o = await page(`/fhir/Patient?_id=${p.id}&_revinclude=Observation:subject`, 'Patient');
      sameSet(includes(o).map(ref), obsOf(ref(p)).map(ref), `_revinclude Observations of Patient/${p.id}`);
      const it = await page(`/fhir/Patient?_id=${p.id}&_revinclude=Encounter:patient&_include:iterate=Encounter:practitioner`, 'Patient');
      sameSet(includes(it).map(ref), [...encs.map(ref), ...practsOf(encs)], `_include:iterate practitioners of Patient/${p.id}`);
    }
  });

  test('chaining: Observation?subject:Patient.family=<prefix>', async () => {
    need();
    const pats = all('Patient');
    for (const p of pickPatients()) {
      const fam = p.name[0].family.slice(0, 4);
      const hits = new Set(pats.filter((x) => x.name.some((n) => n.family && fold(n.family).startsWith(fold(fam)))).map(ref));
      const want = all('Observation').filter((o) => hits.has(o.subject.reference)).map((o) => o.id);
      const w = await walk(`/fhir/Observation?subject:Patient.family=${encodeURIComponent(fam.toLowerCase())}&_count=1000`, 'Observation');
      sameSet(w.ids, want, `chain on the family of Patient/${p.id}`);
    }
  });

  test('chaining: Encounter?patient:Patient.birthdate=<day>, Observation?subject:Patient.gender', async () => {
    need();
    const pats = all('Patient');
    for (const p of pickPatients()) {
      const bhits = new Set(pats.filter((x) => x.birthDate === p.birthDate).map(ref));
      const w2 = await walk(`/fhir/Encounter?patient:Patient.birthdate=${p.birthDate}&_count=1000`, 'Encounter');
      sameSet(w2.ids, all('Encounter').filter((e) => bhits.has(e.subject.reference)).map((e) => e.id), `chain on the birth date of Patient/${p.id}`);
    }
    const men = new Set(pats.filter((x) => x.gender === 'male').map(ref));
    assert.equal(await count('/fhir/Observation?subject:Patient.gender=male', 'Observation'), all('Observation').filter((o) => men.has(o.subject.reference)).length, 'chain on gender');
  });

  test('_has:Observation:patient:code', async () => {
    need();
    for (const code of ['2093-3', '8302-2', '72514-3']) {
      const want = new Set(all('Observation').filter((o) => hasCoding(o.code, 'http://loinc.org', code)).map((o) => o.subject.reference));
      const w = await walk(`/fhir/Patient?_has:Observation:patient:code=http://loinc.org|${code}`, 'Patient');
      sameSet(w.ids.map((id) => `Patient/${id}`), [...want], `_has with code ${code}`);
    }
    const pr = practsOf(all('Encounter'))[0];
    const want = new Set(all('Encounter').filter((e) => (e.participant ?? []).some((x) => x.individual?.reference === pr)).map((e) => e.subject.reference));
    const w = await walk(`/fhir/Patient?_has:Encounter:patient:practitioner=${pr}`, 'Patient');
    sameSet(w.ids.map((id) => `Patient/${id}`), [...want], '_has:Encounter:patient:practitioner');
  });
});

// ------------------------------------------------------------ errors

describe('errors and lenient handling', () => {
  const bad = [
    ['unknown parameter', '/fhir/Patient?foo=bar'],
    ['unknown parameter with a known one', '/fhir/Observation?code=8302-2&nosuchparam=1'],
    ['unknown modifier', '/fhir/Patient?family:sideways=x'],
    ['bad date', '/fhir/Encounter?date=2015-13-45'],
    ['not a date', '/fhir/Encounter?date=yesterday'],
    ['bad date prefix', '/fhir/Encounter?date=xx2015-01-01'],
    ['bad quantity prefix', '/fhir/Observation?value-quantity=zz5'],
    ['bad birthdate', '/fhir/Patient?birthdate=1974-02-30x'],
    ['_sort on an unknown parameter', '/fhir/Patient?_sort=nosuchparameter'],
    [':contains with 2 characters', '/fhir/Patient?name:contains=ab'],
    ['_count not a number', '/fhir/Patient?_count=many'],
  ];
  for (const [what, p] of bad) {
    test(`${what} → 400 OperationOutcome`, async () => {
      const r = await req('GET', p);
      assertStatus(r, 400, what);
      assertOperationOutcome(r, what);
    });
  }

  // String, token and reference values are blinded in the index: the server
  // either refuses to sort by them (400), or sorts the opened matches in
  // memory, and then the order must be right.
  const sortCases = [
    ['string', 'family', 'Patient', (x) => x.name.map((n) => n.family).filter(Boolean)],
    ['string, descending', '-family', 'Patient', (x) => x.name.map((n) => n.family).filter(Boolean)],
    ['token', 'gender', 'Patient', (x) => (x.gender ? [x.gender] : [])],
    ['reference', 'subject', 'Encounter', (x) => [x.subject.reference]],
  ];
  for (const [what, key, type, values] of sortCases) {
    test(`_sort on a ${what} parameter (${key}): 400 OperationOutcome, or correctly sorted`, async () => {
      need();
      const q = type === 'Patient' ? '/fhir/Patient?birthdate=ge1900&_count=17' : `/fhir/Encounter?patient=${pickPatients()[1].id},${pickPatients()[2].id}&_count=17`;
      const r = await req('GET', `${q}&_sort=${key}`);
      if (r.status === 400) { assertOperationOutcome(r, `_sort=${key}`); return; }
      assertStatus(r, 200, `_sort=${key}`);
      const got = [];
      await walk(`${q}&_sort=${key}`, type, { onPage: (b) => { got.push(...matches(b).map((x) => model.get(type).get(x.id))); } });
      const desc = key.startsWith('-');
      // the lowest value ascending, the highest descending; a resource without one last
      const k = (x, f) => { const v = values(x).map(f).sort(); return v.length ? (desc ? v[v.length - 1] : v[0]) : null; };
      const outOfOrder = (a, b, f) => {
        const ka = k(a, f); const kb = k(b, f);
        if (ka === null) return kb !== null;
        if (kb === null) return false;
        return desc ? ka < kb : ka > kb;
      };
      let bad = 0;
      for (let i = 1; i < got.length; i++) {
        // out of order under both plausible collations (folded and code point)
        if (outOfOrder(got[i - 1], got[i], fold) && outOfOrder(got[i - 1], got[i], (v) => v)) bad++;
      }
      assert.equal(bad, 0, `_sort=${key}: ${bad} of ${got.length} results out of order`);
    });
  }

  test('Prefer: handling=lenient ignores the unknown parameter and reports it', async () => {
    need();
    const r = await req('GET', '/fhir/Patient?gender=male&foo=bar&_count=1000', { headers: { prefer: 'handling=lenient' } });
    assertStatus(r, 200);
    const out = r.json.entry.filter((e) => e.search?.mode === 'outcome');
    assert.equal(out.length, 1, 'one outcome entry');
    assert.equal(out[0].resource.resourceType, 'OperationOutcome');
    sameSet(matches(r.json).map((x) => x.id), all('Patient').filter((x) => x.gender === 'male').map((x) => x.id), 'lenient results ignore foo');
    assert.ok(matches(r.json).every((x) => x.resourceType === 'Patient'));
  });

  test('a tampered, truncated or foreign _cursor → 400', async () => {
    need();
    const p = pickPatients()[2];
    const b = await page(`/fhir/Observation?patient=${p.id}&_count=5`, 'Observation');
    const next = new URL(nextOf(b));
    const cur = next.searchParams.get('_cursor');
    assert.ok(cur && cur.length > 16, 'the next link carries a _cursor');
    const ok = await req('GET', rel(next.href));
    assertStatus(ok, 200, 'the genuine cursor');
    const flip = (s, i) => s.slice(0, i) + (s[i] === 'A' ? 'B' : 'A') + s.slice(i + 1);
    for (const [what, c] of [['flipped middle', flip(cur, Math.floor(cur.length / 2))], ['flipped last', flip(cur, cur.length - 1)],
      ['truncated', cur.slice(0, -4)], ['garbage', 'not-a-cursor']]) {
      next.searchParams.set('_cursor', c);
      const r = await req('GET', rel(next.href));
      assertStatus(r, 400, `${what} cursor`);
      assertOperationOutcome(r, `${what} cursor`);
    }
    // a cursor of one search replayed on another
    const other = new URL(`${server.base}/Observation?code=8302-2&_count=5`);
    other.searchParams.set('_cursor', cur);
    const r = await req('GET', rel(other.href));
    assertStatus(r, 400, 'cursor of another search');
  });
});

// ------------------------------------------------------------ writes during a walk, deletes

describe('paging while another client writes', () => {
  const writeObs = async (p, t, n) => {
    const r = await req('POST', '/fhir/Observation', {
      body: {
        resourceType: 'Observation', status: 'final',
        code: { coding: [{ system: 'urn:e2e:search', code: 'concurrent' }] },
        subject: { reference: ref(p) }, effectiveDateTime: t, valueQuantity: { value: n, unit: '1', system: 'http://unitsofmeasure.org', code: '1' },
      },
    });
    assertStatus(r, 201, 'concurrent write');
    const id = parseLocation(r.headers.location).id;
    put({ resourceType: 'Observation', id, code: { coding: [{ system: 'urn:e2e:search', code: 'concurrent' }] }, subject: { reference: ref(p) }, effectiveDateTime: t, valueQuantity: { value: n } });
    return id;
  };

  for (const sort of ['', '&_sort=-date', '&_sort=date']) {
    test(`no duplicates, nothing missed${sort ? ` (${sort.slice(1)})` : ''}`, async () => {
      need();
      const p = pickPatients()[2];
      const before = new Set(obsOf(ref(p)).map((o) => o.id));
      const times = obsOf(ref(p)).map((o) => ms(o.effectiveDateTime));
      const lo = Math.min(...times); const hi = Math.max(...times);
      const written = new Set();
      let walking = true;
      let pagesDuringWrites = 0;
      const writer = (async () => {
        let n = 0;
        while (walking && n < 200) {
          const t = new Date(lo + Math.random() * (hi - lo + 86_400_000)).toISOString();
          written.add(await writeObs(p, t, n++));
        }
      })();
      const w = await walk(`/fhir/Observation?subject=Patient/${p.id}&_count=20${sort}`, 'Observation', {
        onPage: async () => { if (written.size > 0) pagesDuringWrites++; },
      });
      walking = false;
      await writer;
      assert.ok(written.size >= 3 && pagesDuringWrites >= 3, `writes happened during the walk (${written.size} writes, ${pagesDuringWrites} pages)`);
      const got = new Set(w.ids);
      const missed = [...before].filter((id) => !got.has(id));
      assert.equal(missed.length, 0, `${missed.length} Observations that existed before the walk were missed`);
      const foreign = [...got].filter((id) => !before.has(id) && !written.has(id));
      assert.equal(foreign.length, 0, `${foreign.length} results are neither pre-existing nor written during the walk`);
      assert.equal(await count(`/fhir/Observation?subject=Patient/${p.id}`, 'Observation'), before.size + written.size, 'count after the walk');
    });
  }
});

describe('paging while another client updates', () => {
  // an update keeps the resource in the result set; the walk must neither
  // repeat it nor skip anything ("paging stays correct while others write"),
  // also when sorted by _lastUpdated, the key an update changes
  for (const sort of ['', '&_sort=-date', '&_sort=_lastUpdated']) {
    test(`no duplicates, nothing missed${sort ? ` (${sort.slice(1)})` : ''}`, async () => {
      need();
      const p = pickPatients()[2];
      const before = obsOf(ref(p)).filter((o) => o.status);
      let walking = true;
      let updates = 0;
      let pagesDuringUpdates = 0;
      const writers = Promise.all([0, 1, 2].map(async () => {
        while (walking && updates < 300) {
          const o = structuredClone(before[Math.floor(Math.random() * before.length)]);
          o.status = o.status === 'final' ? 'amended' : 'final';
          const r = await req('PUT', `/fhir/Observation/${o.id}`, { body: o });
          assertStatus(r, [200, 409], 'concurrent update');
          if (r.status === 200) { put(o); updates++; }
        }
      }));
      const w = await walk(`/fhir/Observation?subject=Patient/${p.id}&_count=5${sort}`, 'Observation', {
        onPage: () => { if (updates > 0) pagesDuringUpdates++; },
      });
      walking = false;
      await writers;
      assert.ok(updates >= 3 && pagesDuringUpdates >= 3, `updates happened during the walk (${updates} updates, ${pagesDuringUpdates} pages)`);
      sameSet(w.ids, obsOf(ref(p)).map((o) => o.id), 'walk during updates');
    });
  }
});

describe('deleted resources', () => {
  test('a deleted Observation is no longer found by any search', async () => {
    need();
    const p = pickPatients()[1];
    const victim = obsOf(ref(p)).find((o) => hasCoding(o.code, 'http://loinc.org', '8302-2')) ?? obsOf(ref(p))[0];
    const code = victim.code.coding[0];
    const d = await req('DELETE', `/fhir/Observation/${victim.id}`);
    assertStatus(d, [200, 204]);
    model.get('Observation').delete(victim.id);
    assert.equal(await count(`/fhir/Observation?_id=${victim.id}`, 'Observation'), 0, '_id of the deleted one');
    const w = await walk(`/fhir/Observation?subject=Patient/${p.id}&_count=1000`, 'Observation');
    assert.ok(!w.ids.includes(victim.id), 'not found by subject');
    sameSet(w.ids, obsOf(ref(p)).map((o) => o.id), 'the others are');
    assert.equal(await count(`/fhir/Observation?code=${encodeURIComponent(`${code.system}|${code.code}`)}`, 'Observation'),
      all('Observation').filter((o) => hasCoding(o.code, code.system, code.code)).length, 'code count without it');
    const inc = await page(`/fhir/Patient?_id=${p.id}&_revinclude=Observation:subject`, 'Patient');
    assert.ok(!includes(inc).some((x) => x.id === victim.id), 'not _revincluded');
    const r = await req('GET', `/fhir/Observation/${victim.id}`);
    assertStatus(r, 410);
  });
});

describe('updated resources', () => {
  test('an update moves the resource from the old index values to the new ones', async () => {
    need();
    const p = pickPatients()[0];
    const o = obsOf(ref(p)).find((x) => x.valueQuantity) ?? obsOf(ref(p))[0];
    const before = { ...o.code.coding[0] };
    const updated = structuredClone(o);
    updated.code = { coding: [{ system: 'urn:e2e:search', code: 'updated' }] };
    updated.effectiveDateTime = '2031-02-03T04:05:06+00:00';
    const r = await req('PUT', `/fhir/Observation/${o.id}`, { body: updated });
    assertStatus(r, 200, 'update');
    put(updated);
    assert.equal(await count(`/fhir/Observation?code=${encodeURIComponent(`${before.system}|${before.code}`)}&subject=Patient/${p.id}`, 'Observation'),
      obsOf(ref(p)).filter((x) => hasCoding(x.code, before.system, before.code)).length, 'old code');
    const w = await walk(`/fhir/Observation?code=urn:e2e:search|updated`, 'Observation');
    sameSet(w.ids, [o.id], 'new code');
    assert.equal(await count(`/fhir/Observation?_id=${o.id}&date=2031-02-03`, 'Observation'), 1, 'new date');
    assert.equal(await count(`/fhir/Observation?_id=${o.id}&date=${o.effectiveDateTime.slice(0, 10)}`, 'Observation'), 0, 'old date');
    // a patient's family name
    const q = all('Patient').find((x) => x.birthDate && x.id !== p.id);
    const oldFam = q.name[0].family;
    const uq = structuredClone(q);
    uq.name[0].family = `Renamed${crypto.randomBytes(3).toString('hex').replace(/\d/g, 'x')}`;
    assertStatus(await req('PUT', `/fhir/Patient/${q.id}`, { body: uq }), 200, 'update Patient');
    put(uq);
    const fams = (x) => x.name.map((n) => n.family).filter(Boolean);
    sameSet((await walk(`/fhir/Patient?family=${encodeURIComponent(oldFam)}`, 'Patient')).ids,
      all('Patient').filter((x) => fams(x).some((f) => fold(f).startsWith(fold(oldFam)))).map((x) => x.id), 'old family');
    sameSet((await walk(`/fhir/Patient?family=${encodeURIComponent(uq.name[0].family.toLowerCase())}`, 'Patient')).ids, [q.id], 'new family');
    sameSet((await walk(`/fhir/Observation?subject:Patient.family=${encodeURIComponent(uq.name[0].family)}&_count=1000`, 'Observation')).ids,
      obsOf(ref(q)).map((x) => x.id), 'chain on the new family');
  });
});

describe('deleted targets of references', () => {
  test('a deleted Patient is neither _included nor reached by chains or _has', async () => {
    need();
    const fam = `Gone${crypto.randomBytes(3).toString('hex').replace(/\d/g, 'y')}`;
    const pu = `urn:uuid:${crypto.randomUUID()}`;
    const b = {
      resourceType: 'Bundle', type: 'transaction', entry: [
        { fullUrl: pu, resource: { resourceType: 'Patient', name: [{ family: fam }], birthDate: '1901-01-01' }, request: { method: 'POST', url: 'Patient' } },
        { resource: { resourceType: 'Encounter', status: 'finished', class: { system: 'http://terminology.hl7.org/CodeSystem/v3-ActCode', code: 'AMB' }, subject: { reference: pu }, period: { start: '2001-01-01T00:00:00Z', end: '2001-01-01T01:00:00Z' } }, request: { method: 'POST', url: 'Encounter' } },
      ],
    };
    const r = await req('POST', '/fhir', { body: b });
    assertStatus(r, 200);
    const pid = parseLocation(r.json.entry[0].response.location).id;
    const eid = parseLocation(r.json.entry[1].response.location).id;
    put({ ...b.entry[1].resource, id: eid, subject: { reference: `Patient/${pid}` } });
    const before = await page(`/fhir/Encounter?_id=${eid}&_include=Encounter:subject`, 'Encounter');
    sameSet(includes(before).map(ref), [`Patient/${pid}`], 'included while it exists');
    const d = await req('DELETE', `/fhir/Patient/${pid}`);
    assertStatus(d, [200, 204, 409], 'delete a referenced Patient');
    if (d.status === 409) return; // referential integrity: the server refuses, nothing to check
    const after = await page(`/fhir/Encounter?_id=${eid}&_include=Encounter:subject`, 'Encounter');
    sameSet(matches(after).map((x) => x.id), [eid], 'the Encounter is still there');
    assert.equal(includes(after).length, 0, 'the deleted Patient is not _included');
    assert.equal(await count(`/fhir/Encounter?subject:Patient.family=${fam}`, 'Encounter'), 0, 'chain through a deleted Patient');
    assert.equal(await count(`/fhir/Patient?family=${fam}`, 'Patient'), 0, 'family of a deleted Patient');
    assert.equal(await count(`/fhir/Patient?_has:Encounter:patient:_id=${eid}`, 'Patient'), 0, '_has to a deleted Patient');
    assert.equal(await count('/fhir/Patient?birthdate=1901-01-01', 'Patient'), 0, 'birth date of a deleted Patient');
    const rev = await page(`/fhir/Patient?_id=${pid}&_revinclude=Encounter:patient`, 'Patient');
    assert.equal((rev.entry ?? []).length, 0, '_id of a deleted Patient matches nothing, includes nothing');
  });
});

describe('limits', () => {
  test('_count above the server maximum is cut to 1000', async () => {
    need();
    const b = await page('/fhir/Observation?_count=5000', 'Observation');
    assert.equal(matches(b).length, 1000);
    assert.ok(nextOf(b), 'a next link');
  });

  test('a chain or _has matching more than 500 resources → 400 too-costly, never a silent cut', async () => {
    need();
    for (const q of ['/fhir/Observation?encounter:Encounter.status=finished', '/fhir/Patient?_has:Observation:patient:status=final']) {
      const r = await req('GET', q);
      assertStatus(r, 400, q.split('?')[1].split('=')[0]);
      assertOperationOutcome(r);
    }
    const r = await req('GET', '/fhir/Nonsense?x=1');
    assertStatus(r, 404, 'unknown type');
    assertOperationOutcome(r);
  });
});

// ------------------------------------------------------------ at rest

test('at rest: no patient name, identifier, phone, address line or birth date is in store.db, -wal or -shm', { skip: process.env.CV_PG_BASE ? 'CV_PG_BASE is set: the data is in PostgreSQL (at-rest for PostgreSQL is covered by at-rest.test.mjs)' : false }, async (t) => {
  need();
  // the direct identifiers, from the input files, labelled by kind (labels are printed, values never)
  const needles = new Map();
  const add = (kind, v) => { if (typeof v === 'string' && v.length >= 4) needles.set(v, kind); };
  for (const { bundle } of bundles) {
    for (const e of bundle.entry) {
      const r = e.resource;
      if (r.resourceType !== 'Patient') continue;
      for (const n of r.name ?? []) { add('family name', n.family); for (const g of n.given ?? []) add('given name', g); }
      for (const i of r.identifier ?? []) add(`identifier (${i.type?.coding?.[0]?.code ?? 'other'})`, i.value);
      for (const tc of r.telecom ?? []) add('phone', tc.value);
      for (const a of r.address ?? []) for (const l of a.line ?? []) add('address line', l);
      add('birth date', r.birthDate);
    }
  }
  // as they would stand in plaintext JSON (quoted), and bare when long enough
  // not to occur by chance
  const words = [];
  for (const [v, kind] of needles) {
    words.push([Buffer.from(`"${v}"`, 'utf8'), kind]);
    if (v.length >= 8) words.push([Buffer.from(v, 'utf8'), kind]);
  }
  assert.ok(needles.size >= 41 * 6, `expected several identifiers per patient, got ${needles.size}`);
  const files = ['store.db', 'store.db-wal', 'store.db-shm'].map((f) => path.join(server.dataDir, f)).filter((f) => fs.existsSync(f));
  assert.ok(files.some((f) => f.endsWith('store.db')), 'store.db exists');
  const heads = new Map();
  for (const [w, kind] of words) {
    const k = w.readUInt32LE(0);
    if (!heads.has(k)) heads.set(k, []);
    heads.get(k).push([w, kind]);
  }
  for (const f of files) {
    const data = fs.readFileSync(f);
    const found = new Map();
    // one pass over the file: a 4-byte rolling key selects the candidate needles
    for (let i = 0; i + 4 <= data.length; i++) {
      const cands = heads.get(data.readUInt32LE(i));
      if (!cands) continue;
      for (const [w, kind] of cands) {
        if (i + w.length <= data.length && data.compare(w, 0, w.length, i, i + w.length) === 0) found.set(kind, (found.get(kind) ?? 0) + 1);
      }
    }
    t.diagnostic(`${path.basename(f)}: ${data.length} bytes searched for ${words.length} strings`);
    assert.equal(found.size, 0, `${path.basename(f)} holds identifiers in plaintext: ${JSON.stringify(Object.fromEntries(found))}`);
    assert.equal(data.includes(Buffer.from('"resourceType"')), false, `${path.basename(f)} holds resource JSON`);
  }
  // the scan itself finds what it looks for
  const probe = Buffer.concat([crypto.randomBytes(64), words[0][0], crypto.randomBytes(64)]);
  let hit = false;
  for (let i = 0; i + 4 <= probe.length && !hit; i++) {
    for (const [w] of heads.get(probe.readUInt32LE(i)) ?? []) if (probe.compare(w, 0, w.length, i, i + w.length) === 0) hit = true;
  }
  assert.ok(hit, 'the scan finds a planted identifier');
});
