// A small stand-in for a web browser, for the SMART App Launch suite: it keeps
// cookies per origin, sends Origin on every POST the way browsers do, never
// follows a redirect on its own (each hop is the test's to look at), and reads
// the forms of an HTML page (hidden inputs, text fields, checked checkboxes,
// submit buttons) so that a test can fill one in and send it back.
//
//   const b = new Browser({ ca });
//   let r = await b.get(url);                       // {status, headers, body, url, location}
//   const form = parseForms(r.body)[0];
//   r = await b.submit(r.url, form, { fields: { username, password }, button: ['decision', 'approve'] });
//   r = await b.follow(r);                          // GETs Location hops until a non-redirect
import http from 'node:http';
import https from 'node:https';

const ENTITIES = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", nbsp: '\u00a0' };

/** Text with the HTML character references it may hold replaced. */
export function decodeEntities(s) {
  return String(s).replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z]+);/gi, (m, e) => {
    if (e[0] === '#') {
      const n = e[1] === 'x' || e[1] === 'X' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10);
      return Number.isFinite(n) ? String.fromCodePoint(n) : m;
    }
    return ENTITIES[e.toLowerCase()] ?? m;
  });
}

/** The attributes of one start tag's text (`<input a="b" c>`), names lower-cased. */
export function parseAttributes(tag) {
  const attrs = {};
  const inner = tag.replace(/^<\s*[a-zA-Z0-9-]+/, '').replace(/\/?>$/, '');
  const re = /([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'=<>`]+)))?/g;
  let m;
  while ((m = re.exec(inner)) !== null) {
    const name = m[1].toLowerCase();
    if (name in attrs) continue; // the first one counts, as in HTML
    attrs[name] = decodeEntities(m[2] ?? m[3] ?? m[4] ?? '');
  }
  return attrs;
}

/**
 * Every <form> of a page: {action, method, attrs, inputs, buttons}.
 * inputs: [{name, type, value, checked, attrs}] for <input>, <select> (its
 * selected or first option) and <textarea>; buttons: [{name, value, type}] for
 * <button> and <input type=submit>.
 */
export function parseForms(html) {
  const forms = [];
  const formRe = /<form\b[^>]*>([\s\S]*?)<\/form\s*>/gi;
  let fm;
  while ((fm = formRe.exec(html)) !== null) {
    const attrs = parseAttributes(fm[0].slice(0, fm[0].indexOf('>') + 1));
    const body = fm[1];
    const inputs = [];
    const buttons = [];
    const fieldRe = /<input\b[^>]*>|<button\b[^>]*>[\s\S]*?<\/button\s*>|<textarea\b[^>]*>[\s\S]*?<\/textarea\s*>|<select\b[^>]*>[\s\S]*?<\/select\s*>/gi;
    let m;
    while ((m = fieldRe.exec(body)) !== null) {
      const text = m[0];
      const open = text.slice(0, text.indexOf('>') + 1);
      const a = parseAttributes(open);
      const tag = /^<\s*([a-z]+)/i.exec(text)[1].toLowerCase();
      if (tag === 'button') {
        buttons.push({ name: a.name, value: a.value ?? '', type: (a.type ?? 'submit').toLowerCase(), attrs: a,
          label: decodeEntities(text.replace(/<[^>]*>/g, '').trim()) });
      } else if (tag === 'input') {
        const type = (a.type ?? 'text').toLowerCase();
        if (type === 'submit') buttons.push({ name: a.name, value: a.value ?? '', type, attrs: a });
        else inputs.push({ name: a.name, type, value: a.value ?? (type === 'checkbox' ? 'on' : ''), checked: 'checked' in a, attrs: a });
      } else if (tag === 'textarea') {
        inputs.push({ name: a.name, type: 'textarea', value: decodeEntities(text.replace(/^<textarea\b[^>]*>/i, '').replace(/<\/textarea\s*>$/i, '')), checked: false, attrs: a });
      } else {
        const opts = [...text.matchAll(/<option\b[^>]*>/gi)].map((o) => parseAttributes(o[0]));
        const sel = opts.find((o) => 'selected' in o) ?? opts[0];
        inputs.push({ name: a.name, type: 'select', value: sel?.value ?? '', checked: false, attrs: a, options: opts.map((o) => o.value) });
      }
    }
    forms.push({ action: attrs.action ?? '', method: (attrs.method ?? 'get').toLowerCase(), attrs, inputs, buttons });
  }
  return forms;
}

/** The form's hidden inputs as an object (the last value of a repeated name). */
export function hiddenFields(form) {
  const out = {};
  for (const i of form.inputs) if (i.type === 'hidden' && i.name) out[i.name] = i.value;
  return out;
}

/**
 * What a browser would send for form: hidden and text-like inputs with their
 * values (fields overrides or adds values by name), checkboxes and radios that
 * are checked (those whose value is in uncheckValues left out: an unticked box), and the
 * pressed button [name, value].
 */
export function formBody(form, { fields = {}, uncheckValues = [], button } = {}) {
  const body = new URLSearchParams();
  const used = new Set();
  for (const i of form.inputs) {
    if (!i.name || 'disabled' in i.attrs) continue;
    if (i.type === 'checkbox' || i.type === 'radio') {
      if (i.checked && !uncheckValues.includes(i.value)) body.append(i.name, i.value);
      continue;
    }
    if (i.type === 'submit' || i.type === 'button' || i.type === 'image' || i.type === 'file') continue;
    if (Object.hasOwn(fields, i.name)) {
      if (!used.has(i.name)) body.append(i.name, fields[i.name]);
      used.add(i.name);
    } else {
      body.append(i.name, i.value);
    }
  }
  for (const [k, v] of Object.entries(fields)) if (!used.has(k) && v !== undefined) body.append(k, v);
  if (button) body.append(button[0], button[1]);
  return body;
}

export class Browser {
  /** ca: PEM to trust for https; log: optional array that records every hop. */
  constructor({ ca, log } = {}) {
    this.ca = ca;
    this.jar = new Map(); // origin → Map(name → value)
    this.log = log ?? [];
  }

  cookies(url) {
    return this.jar.get(new URL(url).origin) ?? new Map();
  }

  cookie(url, name) {
    return this.cookies(url).get(name);
  }

  #store(url, setCookie) {
    const origin = new URL(url).origin;
    for (const sc of [].concat(setCookie ?? [])) {
      const [pair, ...attrs] = sc.split(';');
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (!this.jar.has(origin)) this.jar.set(origin, new Map());
      const expired = attrs.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a)) ||
        attrs.some((a) => /^\s*expires\s*=/i.test(a) && Date.parse(a.split('=').slice(1).join('=')) < Date.now());
      if (expired || value === '') this.jar.get(origin).delete(name);
      else this.jar.get(origin).set(name, value);
    }
  }

  /**
   * One request, no redirect followed. opts: method, headers (null removes a
   * default), body (string or URLSearchParams: sent form-encoded), origin
   * (the Origin header of a POST: defaults to the target's origin, as when a
   * page of that origin posts a form; null sends none).
   * Resolves {status, headers, body, url, location (absolute), setCookie}.
   */
  request(url, opts = {}) {
    const u = new URL(url);
    const method = opts.method ?? 'GET';
    const headers = { accept: 'text/html,application/xhtml+xml,*/*;q=0.8', 'user-agent': 'carevault-e2e-browser' };
    const jar = this.cookies(u);
    if (jar.size) headers.cookie = [...jar].map(([k, v]) => `${k}=${v}`).join('; ');
    let payload;
    if (opts.body !== undefined) {
      payload = Buffer.from(String(opts.body), 'utf8');
      headers['content-type'] = 'application/x-www-form-urlencoded';
      headers['content-length'] = String(payload.length);
    }
    if (method !== 'GET' && method !== 'HEAD') {
      const origin = opts.origin === undefined ? u.origin : opts.origin;
      if (origin !== null) headers.origin = origin;
    }
    for (const [k, v] of Object.entries(opts.headers ?? {})) {
      if (v === null || v === undefined) delete headers[k.toLowerCase()];
      else headers[k.toLowerCase()] = v;
    }
    const mod = u.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const r = mod.request({
        hostname: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port || (u.protocol === 'https:' ? 443 : 80),
        path: u.pathname + u.search,
        method,
        headers,
        ca: this.ca,
        agent: false,
        family: u.hostname === 'localhost' ? 4 : undefined,
        timeout: 30_000,
      }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          this.#store(u, res.headers['set-cookie']);
          const loc = res.headers.location;
          const out = {
            status: res.statusCode,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            url: u.href,
            location: loc ? new URL(loc, u).href : undefined,
            setCookie: [].concat(res.headers['set-cookie'] ?? []),
          };
          this.log.push(`${method} ${u.href} → ${res.statusCode}${loc ? ` ${loc}` : ''}`);
          resolve(out);
        });
      });
      r.on('timeout', () => r.destroy(new Error(`browser: request timed out: ${method} ${u.href}`)));
      r.on('error', reject);
      if (payload) r.end(payload); else r.end();
    });
  }

  get(url, opts = {}) {
    return this.request(url, { ...opts, method: 'GET' });
  }

  /** GETs each Location of a 3xx answer in turn (at most max hops); the last answer. */
  async follow(res, { max = 10, stopAt } = {}) {
    let r = res;
    for (let i = 0; i < max && r.status >= 300 && r.status < 400 && r.location; i++) {
      if (stopAt && stopAt(r.location)) return r;
      r = await this.get(r.location);
    }
    return r;
  }

  /**
   * Submits form (from the page at pageUrl) as a browser would: POST
   * form-encoded to its action (resolved against pageUrl) with the page's
   * origin as Origin. opts: fields, uncheckValues, button (see formBody),
   * origin, headers.
   */
  submit(pageUrl, form, opts = {}) {
    const target = new URL(form.action || pageUrl, pageUrl).href;
    const body = formBody(form, opts).toString();
    if (form.method === 'get') {
      const t = new URL(target);
      t.search = body;
      return this.get(t.href, { headers: opts.headers });
    }
    return this.request(target, {
      method: 'POST', body, headers: opts.headers,
      origin: opts.origin === undefined ? new URL(pageUrl).origin : opts.origin,
    });
  }
}
