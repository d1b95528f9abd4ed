// Test harness for the carevault end-to-end suites.
//
// start(opts) creates a fresh data directory, runs `carevault init`, spawns
// `carevault serve` on a free loopback port and waits for /healthz to answer
// 200.  The returned object carries everything a test needs to talk to it:
//
//   { base, origin, token, ca, dataDir, tmpDir, port, logFile, pid,
//     req(), stop(), kill9(), restart(), cleanup() }
//
// Environment:
//   CV_BIN           path to the carevault binary (default ../../build/carevault
//                    relative to tests/e2e; relative values are resolved
//                    against tests/e2e as well)
//   CV_KEEP_DATA=1   keep temp dirs (data + server log) after the run
//   CV_E2E_VERBOSE=1 print where the server log lives

import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';

export const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export { pgStore };

export function binPath() {
  const fromEnv = process.env.CV_BIN;
  if (fromEnv && fromEnv.length > 0) return path.resolve(E2E_DIR, fromEnv);
  return path.resolve(E2E_DIR, '../../build/carevault');
}

const READY_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 20_000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Children still alive when the test process exits get SIGKILLed so a failed
// suite never leaves a server listening.
const liveChildren = new Set();
process.on('exit', () => {
  for (const c of liveChildren) {
    try { c.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

export async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

function tailFile(file, bytes = 4000) {
  try {
    const buf = fs.readFileSync(file);
    return buf.subarray(Math.max(0, buf.length - bytes)).toString('utf8');
  } catch {
    return '(no log)';
  }
}

/**
 * Low-level HTTPS request against an origin.
 *   opts.ca       PEM CA to trust (required for verification)
 *   opts.headers  object; a value of null/undefined removes a default header
 *   opts.body     object/array → JSON; string/Buffer → sent as-is
 *   opts.token    bearer token (omitted when falsy)
 *   opts.agent    https.Agent to use (default: fresh connection, agent:false)
 *   opts.timeout  ms before the request is aborted (default 15000)
 * Resolves {status, headers, body, raw, json}.  Rejects on network errors.
 */
export function httpsRequest(origin, method, reqPath, opts = {}) {
  const url = new URL(reqPath, origin);
  const headers = {};
  let payload;
  if (opts.body !== undefined) {
    if (Buffer.isBuffer(opts.body) || typeof opts.body === 'string') {
      payload = Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body, 'utf8');
    } else {
      payload = Buffer.from(JSON.stringify(opts.body), 'utf8');
    }
    headers['content-type'] = 'application/fhir+json';
    headers['content-length'] = String(payload.length);
  }
  headers.accept = 'application/fhir+json';
  if (opts.token) headers.authorization = `Bearer ${opts.token}`;
  for (const [k, v] of Object.entries(opts.headers || {})) {
    const lk = k.toLowerCase();
    if (v === null || v === undefined) delete headers[lk];
    else headers[lk] = v;
  }
  return new Promise((resolve, reject) => {
    const r = https.request({
      protocol: 'https:',
      hostname: url.hostname,
      port: url.port,
      path: opts.rawPath ?? (url.pathname + url.search),
      method,
      headers,
      ca: opts.ca,
      agent: opts.agent ?? false,
      timeout: opts.timeout ?? 15_000,
      maxHeaderSize: 64 * 1024,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const raw = Buffer.concat(chunks);
        const body = raw.toString('utf8');
        let json;
        if (body.length > 0) {
          try { json = JSON.parse(body); } catch { json = undefined; }
        }
        resolve({ status: res.statusCode, headers: res.headers, body, raw, json, socket: res.socket });
      });
    });
    r.on('timeout', () => r.destroy(new Error(`request timed out: ${method} ${reqPath}`)));
    r.on('error', reject);
    if (payload) r.end(payload); else r.end();
  });
}

/**
 * Sends raw bytes over TLS and collects everything until the server closes
 * the connection (or timeout).  Use "Connection: close" in the request.
 * Resolves {status, statusLine, headers, body, json, raw, closed, error}.
 * status is undefined when no HTTP response arrived.
 */
export function rawTlsRequest(server, data, { timeout = 15_000 } = {}) {
  return new Promise((resolve) => {
    const chunks = [];
    let done = false;
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, ca: server.ca, servername: 'localhost' });
    const finish = (error, closed) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      const raw = Buffer.concat(chunks);
      resolve({ ...parseHttpResponse(raw), raw, closed, error });
    };
    const timer = setTimeout(() => finish(new Error('timeout'), false), timeout);
    sock.on('secureConnect', () => { sock.end(data); });
    sock.on('data', (c) => chunks.push(c));
    sock.on('end', () => finish(undefined, true));
    sock.on('close', () => finish(undefined, true));
    sock.on('error', (e) => finish(e, true));
  });
}

export function parseHttpResponse(raw) {
  const text = raw.toString('latin1');
  const sep = text.indexOf('\r\n\r\n');
  if (!/^HTTP\/1\.[01] \d{3}/.test(text)) return { status: undefined, headers: {}, body: '' };
  const head = sep >= 0 ? text.slice(0, sep) : text;
  const lines = head.split('\r\n');
  const statusLine = lines[0];
  const status = Number(statusLine.split(' ')[1]);
  const headers = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let bodyBuf = sep >= 0 ? raw.subarray(Buffer.byteLength(text.slice(0, sep + 4), 'latin1')) : Buffer.alloc(0);
  if ((headers['transfer-encoding'] || '').toLowerCase().includes('chunked')) bodyBuf = dechunk(bodyBuf);
  const body = bodyBuf.toString('utf8');
  let json;
  try { json = body ? JSON.parse(body) : undefined; } catch { json = undefined; }
  return { status, statusLine, headers, body, json };
}

function dechunk(buf) {
  const out = [];
  let i = 0;
  while (i < buf.length) {
    const eol = buf.indexOf('\r\n', i, 'latin1');
    if (eol < 0) break;
    const size = parseInt(buf.subarray(i, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(buf.subarray(eol + 2, eol + 2 + size));
    i = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

// With CV_PG_BASE (a postgresql:// URL of a throwaway cluster, as scripts/test
// starts one), every server gets a database of its own on it, so the suites run
// against the PostgreSQL back end; without it, against the embedded store.
function pgStore(name) {
  const base = process.env.CV_PG_BASE;
  if (!base) return null;
  const db = `cv_${name.toLowerCase().replace(/[^a-z0-9_]/g, "_")}_${process.pid}_${Math.random().toString(36).slice(2, 8)}`;
  const r = spawnSync('psql', [base, '-v', 'ON_ERROR_STOP=1', '-qc', `CREATE DATABASE ${db}`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`cannot create database ${db}: ${r.stderr}`);
  // base is postgresql://user@/postgres?host=/socket/dir: swap the database name
  return base.replace(/\/([^/?]*)\?/, `/${db}?`);
}

function runInit(bin, dataDir, env) {
  const r = spawnSync(bin, ['init', '--data', dataDir], { encoding: 'utf8', timeout: 60_000, env });
  if (r.error) throw new Error(`carevault init could not run (${bin}): ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(`carevault init exited ${r.status} (signal ${r.signal})\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  const keyFile = !env.CAREVAULT_MASTER_KEY_SOURCE || env.CAREVAULT_MASTER_KEY_SOURCE === 'file';
  for (const f of [...(keyFile ? ['master.key'] : []), 'tls/cert.pem', 'tls/key.pem', 'bootstrap-token']) {
    if (!fs.existsSync(path.join(dataDir, f))) throw new Error(`carevault init did not create ${f} in ${dataDir}`);
  }
}

/**
 * Start a server.
 *   opts.env        extra environment for `serve` (e.g. {CAREVAULT_MAX_BODY: '1048576'})
 *   opts.name       label used for temp dir / log names
 *   opts.threads    shortcut for CAREVAULT_THREADS
 *   opts.readyTimeoutMs  default 10000
 */
export async function start(opts = {}) {
  const bin = binPath();
  if (!fs.existsSync(bin)) {
    throw new Error(`carevault binary not found at ${bin} (set CV_BIN)`);
  }
  const name = (opts.name || 'suite').replace(/[^A-Za-z0-9_-]/g, '_');
  const tmpDir = await fsp.mkdtemp(path.join(os.tmpdir(), `carevault-e2e-${name}-`));
  // opts.existingDataDir: serve a data directory made elsewhere (a restore), with opts.token
  const dataDir = opts.existingDataDir ?? path.join(tmpDir, 'data');
  // opts.shareWith: a second node of an existing server (same data directory
  // copy, so the same master key and token, and the same database)
  const peer = opts.shareWith;
  const store = peer ? peer.env.CAREVAULT_STORE : opts.embedded ? null : pgStore(name);
  const baseEnv = { ...process.env };
  delete baseEnv.CAREVAULT_STORE;
  if (store) baseEnv.CAREVAULT_STORE = store;
  if (peer) await fsp.cp(peer.dataDir, dataDir, { recursive: true });
  else if (opts.existingDataDir) { /* nothing to make */ }
  else runInit(bin, dataDir, { ...baseEnv, ...(opts.env || {}) }); // opts.env: the master key's source too

  // the first administrator account retires the bootstrap token and removes its file
  const tokenFile = path.join(dataDir, 'bootstrap-token');
  const token = fs.existsSync(tokenFile) ? fs.readFileSync(tokenFile, 'utf8').trim() : (peer?.token ?? opts.token ?? '');
  if (!token && !peer && !opts.existingDataDir) throw new Error('bootstrap-token is empty');
  const ca = fs.readFileSync(path.join(dataDir, 'tls', 'cert.pem'), 'utf8');
  const logFile = path.join(tmpDir, 'serve.stderr.log');
  const env = { ...baseEnv, ...(opts.env || {}) };
  if (opts.threads) env.CAREVAULT_THREADS = String(opts.threads);
  const readyTimeoutMs = opts.readyTimeoutMs ?? READY_TIMEOUT_MS;

  const server = {
    bin, tmpDir, dataDir, token, ca, logFile, env,
    port: 0, origin: '', base: '', child: null, pid: 0, exit: null, starts: 0,
  };

  async function spawnServe(preferredPort) {
    let lastErr;
    for (let attempt = 0; attempt < 4; attempt++) {
      const port = attempt === 0 && preferredPort ? preferredPort : await freePort();
      const fd = fs.openSync(logFile, 'a');
      fs.writeSync(fd, `\n==== [e2e] serve start #${++server.starts} on port ${port} at ${new Date().toISOString()} ====\n`);
      const child = spawn(bin, ['serve', '--data', dataDir, '--listen', `127.0.0.1:${port}`], {
        env, stdio: ['ignore', fd, fd],
      });
      fs.closeSync(fd);
      liveChildren.add(child);
      const exited = new Promise((resolve) => {
        child.on('exit', (code, signal) => {
          liveChildren.delete(child);
          server.exit = { code, signal };
          resolve({ code, signal });
        });
        child.on('error', (e) => {
          liveChildren.delete(child);
          server.exit = { code: null, signal: null, error: e };
          resolve(server.exit);
        });
      });
      server.child = child;
      server.exited = exited;
      server.exit = null;
      server.pid = child.pid;
      server.port = port;
      server.origin = `https://127.0.0.1:${port}`;
      server.base = `${server.origin}/fhir`;
      try {
        await waitReady(readyTimeoutMs);
        return;
      } catch (e) {
        lastErr = e;
        if (server.exit === null) {
          // Still running but never got healthy: that is a real failure.
          child.kill('SIGKILL');
          await exited;
          throw e;
        }
        // Exited early (probably port race): retry on another port.
      }
    }
    throw lastErr;
  }

  async function waitReady(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    let last = 'no attempt';
    while (Date.now() < deadline) {
      if (server.exit !== null) {
        throw new Error(`carevault serve exited before ready (${JSON.stringify(server.exit)})\n--- log tail ---\n${tailFile(logFile)}`);
      }
      try {
        const r = await httpsRequest(server.origin, 'GET', '/healthz', { ca, timeout: 2000 });
        if (r.status === 200) return;
        last = `status ${r.status}`;
      } catch (e) {
        last = e.code || e.message;
      }
      await sleep(100);
    }
    throw new Error(`carevault serve not healthy within ${timeoutMs} ms (last: ${last})\n--- log tail ---\n${tailFile(logFile)}`);
  }

  server.req = (method, reqPath, o = {}) => httpsRequest(server.origin, method, reqPath, {
    ...o,
    ca: o.ca ?? ca,
    token: o.token === undefined ? token : o.token,
  });

  server.healthy = async () => {
    const r = await httpsRequest(server.origin, 'GET', '/healthz', { ca, timeout: 5000 });
    return r.status === 200;
  };

  server.logTail = (bytes) => tailFile(logFile, bytes);

  /** SIGTERM, wait for exit, throw unless exit code 0. */
  server.stop = async () => {
    const child = server.child;
    if (!child || server.exit !== null) {
      const ex = server.exit;
      server.child = null;
      if (ex && ex.code !== 0) throw new Error(`server had already exited: ${JSON.stringify(ex)}\n${tailFile(logFile)}`);
      return ex;
    }
    child.kill('SIGTERM');
    let handle;
    const timer = new Promise((r) => { handle = setTimeout(() => r('timeout'), STOP_TIMEOUT_MS); });
    const res = await Promise.race([server.exited, timer]);
    clearTimeout(handle); // a pending timer would keep the test process alive after its last test
    server.child = null;
    if (res === 'timeout') {
      child.kill('SIGKILL');
      await server.exited;
      throw new Error(`server did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM\n--- log tail ---\n${tailFile(logFile)}`);
    }
    if (res.code !== 0) {
      throw new Error(`server exited with ${JSON.stringify(res)} after SIGTERM (expected code 0)\n--- log tail ---\n${tailFile(logFile)}`);
    }
    return res;
  };

  /** SIGKILL, wait for the process to be gone. */
  server.kill9 = async () => {
    const child = server.child;
    if (!child || server.exit !== null) return server.exit;
    child.kill('SIGKILL');
    const res = await server.exited;
    server.child = null;
    return res;
  };

  /** Start serve again on the same data dir (same port if possible). */
  server.restart = async () => {
    if (server.child && server.exit === null) await server.stop();
    await spawnServe(server.port);
    return server;
  };

  /** Kill anything still running and remove the temp dir (unless CV_KEEP_DATA). */
  server.cleanup = async () => {
    if (server.child && server.exit === null) await server.kill9();
    if (process.env.CV_KEEP_DATA) {
      process.stderr.write(`[e2e] kept ${tmpDir}\n`);
      return;
    }
    await fsp.rm(tmpDir, { recursive: true, force: true });
  };

  try {
    await spawnServe(0);
  } catch (e) {
    if (!process.env.CV_KEEP_DATA) {
      // keep the log for debugging when start fails
      process.stderr.write(`[e2e] start failed, data/log kept in ${tmpDir}\n`);
    }
    throw e;
  }
  if (process.env.CV_E2E_VERBOSE) process.stderr.write(`[e2e] ${name}: ${server.base} (log ${logFile})\n`);
  return server;
}

/** Convenience: standalone request bound to a server (alias of server.req). */
export function req(server, method, reqPath, o = {}) {
  return server.req(method, reqPath, o);
}
