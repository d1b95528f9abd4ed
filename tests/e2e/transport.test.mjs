// TLS and connection-level behaviour: protocol versions, cipher suites,
// certificate, plain HTTP on the TLS port, keep-alive reuse, graceful stop.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { start, httpsRequest } from './lib/server.mjs';
import { assertSecurityHeaders } from './lib/fhir.mjs';

let server;
before(async () => { server = await start({ name: 'transport' }); });
after(async () => { if (server) await server.cleanup(); });

/** Try a TLS handshake; resolves {ok, protocol, cipher, cert, error}. */
function handshake(port, opts = {}) {
  return new Promise((resolve) => {
    let settled = false;
    const sock = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', ...opts });
    const done = (v) => {
      if (settled) return;
      settled = true;
      clearTimeout(t);
      sock.destroy();
      resolve(v);
    };
    const t = setTimeout(() => done({ ok: false, error: new Error('handshake timeout') }), 8000);
    sock.once('secureConnect', () => done({
      ok: true,
      authorized: sock.authorized,
      protocol: sock.getProtocol(),
      cipher: sock.getCipher(),
      cert: sock.getPeerCertificate(),
    }));
    sock.once('error', (error) => done({ ok: false, error }));
    sock.once('close', () => done({ ok: false, error: new Error('closed during handshake') }));
  });
}

// Legacy-protocol probe options: SECLEVEL=0 lets OpenSSL 3 offer TLS 1.0/1.1.
const LEGACY = (max) => ({
  minVersion: 'TLSv1', maxVersion: max, ciphers: 'DEFAULT:@SECLEVEL=0', rejectUnauthorized: false,
});

/**
 * Control: can this node/OpenSSL build negotiate `max` at all?  We check by
 * starting a throwaway node TLS server that allows it, using the server's own
 * cert.  If not, legacy tests are skipped (they would pass vacuously).
 */
async function clientCanSpeak(max) {
  const key = fs.readFileSync(path.join(server.dataDir, 'tls', 'key.pem'));
  const cert = fs.readFileSync(path.join(server.dataDir, 'tls', 'cert.pem'));
  let srv;
  try {
    srv = tls.createServer({ key, cert, minVersion: 'TLSv1', maxVersion: max, ciphers: 'DEFAULT:@SECLEVEL=0' }, (s) => s.end());
  } catch {
    return false;
  }
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const res = await handshake(srv.address().port, LEGACY(max));
  await new Promise((r) => srv.close(r));
  return res.ok && res.protocol === max;
}

function hasBin(name) {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0;
}

describe('TLS protocol versions', () => {
  for (const ver of ['TLSv1.1', 'TLSv1']) {
    test(`${ver} is refused`, async (t) => {
      if (!(await clientCanSpeak(ver))) {
        t.skip(`this node/OpenSSL cannot negotiate ${ver} even with a permissive server`);
        return;
      }
      const r = await handshake(server.port, LEGACY(ver));
      assert.equal(r.ok, false, `server accepted ${r.protocol}`);
      assert.notEqual(r.error?.code, 'ERR_SSL_NO_PROTOCOLS_AVAILABLE', 'probe failed client-side, test is vacuous');
      assert.equal(await server.healthy(), true);
    });
  }

  test('openssl s_client -tls1_1 fails', { skip: !hasBin('openssl') && 'openssl not installed' }, async () => {
    const r = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${server.port}`, '-tls1_1',
      '-cipher', 'DEFAULT:@SECLEVEL=0', '-servername', 'localhost'], { input: '', encoding: 'utf8', timeout: 10000 });
    const out = `${r.stdout}\n${r.stderr}`;
    assert.ok(!/Protocol\s*:\s*TLSv1\.1/.test(out) || /Cipher\s*(is|:)\s*(0000|\(NONE\))/.test(out),
      `openssl negotiated TLS 1.1:\n${out.slice(0, 1500)}`);
    assert.doesNotMatch(out, /New, TLSv1(\.1)?, Cipher is (?!\(NONE\))/);
  });

  test('gnutls-cli TLS 1.1 only fails', { skip: !hasBin('gnutls-cli') && 'gnutls-cli not installed' }, async () => {
    const r = spawnSync('gnutls-cli', ['--insecure', '--priority', 'NORMAL:-VERS-ALL:+VERS-TLS1.1:+VERS-TLS1.0',
      '-p', String(server.port), '127.0.0.1'], { input: '', encoding: 'utf8', timeout: 10000 });
    const out = `${r.stdout}\n${r.stderr}`;
    assert.notEqual(r.status, 0, `gnutls-cli connected with TLS <= 1.1:\n${out.slice(0, 1500)}`);
    assert.doesNotMatch(out, /Handshake was completed/);
  });

  test('gnutls-cli TLS 1.2 succeeds (sanity for the probe above)', { skip: !hasBin('gnutls-cli') && 'gnutls-cli not installed' }, async () => {
    const ca = path.join(server.dataDir, 'tls', 'cert.pem');
    const r = spawnSync('gnutls-cli', ['--x509cafile', ca, '--priority', 'NORMAL:-VERS-ALL:+VERS-TLS1.2',
      '-p', String(server.port), 'localhost'], { input: '', encoding: 'utf8', timeout: 10000 });
    const out = `${r.stdout}\n${r.stderr}`;
    assert.match(out, /Handshake was completed/, out.slice(0, 1500));
  });

  test('TLS 1.2 with AEAD cipher works and serves HTTP', async () => {
    const r = await handshake(server.port, { ca: server.ca, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2' });
    assert.ok(r.ok, `TLS 1.2 handshake failed: ${r.error?.message}`);
    assert.equal(r.protocol, 'TLSv1.2');
    assert.equal(r.authorized, true);
    assert.match(r.cipher.name, /GCM|CHACHA20|CCM/, `cipher ${r.cipher.name} is not AEAD`);
    assert.match(r.cipher.name, /ECDHE|DHE/, `cipher ${r.cipher.name} lacks forward secrecy`);
    const res = await httpsRequest(server.origin, 'GET', '/healthz', {
      ca: server.ca, agent: new https.Agent({ ca: server.ca, maxVersion: 'TLSv1.2', minVersion: 'TLSv1.2' }),
    });
    assert.equal(res.status, 200);
  });

  for (const c of ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305']) {
    test(`TLS 1.2 ${c} accepted`, async () => {
      const r = await handshake(server.port, { ca: server.ca, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: c });
      assert.ok(r.ok, `${c}: ${r.error?.message}`);
      assert.equal(r.cipher.name, c);
    });
  }

  test('TLS 1.2 with only CBC cipher suites is refused', async () => {
    const cbc = [
      'ECDHE-ECDSA-AES128-SHA', 'ECDHE-ECDSA-AES256-SHA', 'ECDHE-ECDSA-AES128-SHA256', 'ECDHE-ECDSA-AES256-SHA384',
      'ECDHE-RSA-AES128-SHA', 'ECDHE-RSA-AES256-SHA', 'AES128-SHA', 'AES256-SHA', 'AES128-SHA256',
    ].join(':');
    const r = await handshake(server.port, { ca: server.ca, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: `${cbc}:@SECLEVEL=0` });
    assert.equal(r.ok, false, `server accepted CBC suite ${r.cipher?.name}`);
    assert.equal(await server.healthy(), true);
  });

  for (const c of ['NULL-SHA256:@SECLEVEL=0', 'RC4-SHA:@SECLEVEL=0', 'DES-CBC3-SHA:@SECLEVEL=0', 'aNULL:@SECLEVEL=0']) {
    test(`TLS 1.2 weak suite ${c.split(':')[0]} refused`, async (t) => {
      let r;
      try {
        r = await handshake(server.port, { rejectUnauthorized: false, minVersion: 'TLSv1.2', maxVersion: 'TLSv1.2', ciphers: c });
      } catch (e) {
        t.skip(`client cannot offer ${c}: ${e.message}`);
        return;
      }
      assert.equal(r.ok, false, `server accepted ${r.cipher?.name}`);
    });
  }

  test('TLS 1.3 works', async () => {
    const r = await handshake(server.port, { ca: server.ca, minVersion: 'TLSv1.3' });
    assert.ok(r.ok, `TLS 1.3 handshake failed: ${r.error?.message}`);
    assert.equal(r.protocol, 'TLSv1.3');
    assert.match(r.cipher.name, /^TLS_(AES_128_GCM|AES_256_GCM|CHACHA20_POLY1305)/);
  });

  test('default negotiation picks TLS 1.3', async () => {
    const r = await handshake(server.port, { ca: server.ca });
    assert.ok(r.ok);
    assert.equal(r.protocol, 'TLSv1.3');
  });
});

describe('certificate', () => {
  test('served certificate is the one from init (ECDSA P-256, SAN localhost + 127.0.0.1)', async () => {
    const r = await handshake(server.port, { ca: server.ca });
    assert.ok(r.ok, r.error?.message);
    const served = new crypto.X509Certificate(r.cert.raw);
    const onDisk = new crypto.X509Certificate(server.ca);
    assert.equal(served.fingerprint256, onDisk.fingerprint256);
    assert.match(served.subject, /CN=localhost/);
    assert.match(served.subjectAltName, /DNS:localhost/);
    assert.match(served.subjectAltName, /IP Address:127\.0\.0\.1/);
    assert.equal(served.publicKey.asymmetricKeyType, 'ec');
    assert.equal(served.publicKey.asymmetricKeyDetails.namedCurve, 'prime256v1');
    assert.ok(served.checkHost('localhost'));
    assert.ok(served.checkIP('127.0.0.1'));
  });

  test('verification with hostname "localhost" works', async () => {
    const r = await handshake(server.port, { ca: server.ca, servername: 'localhost' });
    assert.ok(r.ok && r.authorized, r.error?.message);
  });

  test('a client without the CA rejects the self-signed cert', async () => {
    const r = await handshake(server.port, {});
    assert.equal(r.ok, false);
  });

  test('private key files are not world-readable', () => {
    for (const f of ['master.key', 'tls/key.pem', 'bootstrap-token']) {
      const mode = fs.statSync(path.join(server.dataDir, f)).mode & 0o777;
      assert.equal(mode & 0o077, 0, `${f} has mode ${mode.toString(8)}`);
    }
  });
});

describe('non-TLS traffic', () => {
  async function plainExchange(payload) {
    return new Promise((resolve) => {
      const chunks = [];
      let settled = false;
      const s = net.connect(server.port, '127.0.0.1');
      const done = (why) => {
        if (settled) return;
        settled = true;
        clearTimeout(t);
        s.destroy();
        resolve({ why, data: Buffer.concat(chunks) });
      };
      const t = setTimeout(() => done('timeout'), 8000);
      s.on('connect', () => s.write(payload));
      s.on('data', (c) => chunks.push(c));
      s.on('end', () => done('end'));
      s.on('close', () => done('close'));
      s.on('error', () => done('error'));
    });
  }

  test('plain HTTP request gets no HTTP answer', async () => {
    const r = await plainExchange('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    const text = r.data.toString('latin1');
    assert.ok(!text.startsWith('HTTP/'), `got an HTTP answer over plain TCP: ${text.slice(0, 80)}`);
    if (r.data.length > 0) assert.equal(r.data[0], 0x15, 'only a TLS alert record may be sent back');
    assert.notEqual(r.why, 'timeout', 'connection should be closed, not left hanging');
    assert.equal(await server.healthy(), true);
  });

  test('plain HTTP/1.0 request gets no HTTP answer', async () => {
    const r = await plainExchange('GET /fhir/metadata HTTP/1.0\r\n\r\n');
    assert.ok(!r.data.toString('latin1').startsWith('HTTP/'));
  });

  test('random bytes are dropped and the server stays healthy', async () => {
    const r = await plainExchange(crypto.randomBytes(4096));
    assert.ok(!r.data.toString('latin1').startsWith('HTTP/'));
    assert.equal(await server.healthy(), true);
  });
});

describe('connection handling', () => {
  test('keep-alive: sequential requests on one agent reuse one socket', async () => {
    const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca: server.ca });
    const ports = [];
    const reused = [];
    try {
      for (let i = 0; i < 6; i++) {
        const res = await new Promise((resolve, reject) => {
          const rq = https.request({
            host: '127.0.0.1', port: server.port, path: i % 2 ? '/healthz' : '/fhir/metadata', method: 'GET', agent,
            headers: { accept: 'application/fhir+json' },
          }, (r) => {
            r.resume();
            r.on('end', () => resolve({ status: r.statusCode, headers: r.headers, localPort: rq.socket.localPort }));
          });
          rq.on('error', reject);
          rq.end();
          rq.on('socket', () => reused.push(rq.reusedSocket));
        });
        assert.equal(res.status, 200);
        assert.doesNotMatch(String(res.headers.connection || ''), /close/i, 'server asked to close a keep-alive connection');
        ports.push(res.localPort);
      }
    } finally {
      agent.destroy();
    }
    assert.equal(new Set(ports).size, 1, `used local ports ${ports}`);
    assert.deepEqual(reused.slice(1), [true, true, true, true, true]);
  });

  test('pipelined requests on one TLS connection are all answered in order', async () => {
    const sock = tls.connect({ host: '127.0.0.1', port: server.port, ca: server.ca, servername: 'localhost' });
    await new Promise((r, j) => { sock.once('secureConnect', r); sock.once('error', j); });
    const reqs = 'GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n'.repeat(3)
      + 'GET /readyz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n';
    let got = '';
    sock.on('data', (c) => { got += c.toString('latin1'); });
    sock.write(reqs);
    await new Promise((r) => { sock.on('close', r); setTimeout(r, 8000); });
    sock.destroy();
    const statuses = [...got.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
    assert.deepEqual(statuses, [200, 200, 200, 200]);
  });

  test('many concurrent connections are served', async () => {
    const results = await Promise.all(Array.from({ length: 64 }, () => httpsRequest(server.origin, 'GET', '/healthz', { ca: server.ca })));
    assert.ok(results.every((r) => r.status === 200));
    assertSecurityHeaders(results[0]);
  });

  test('Connection: close is honoured', async () => {
    const r = await httpsRequest(server.origin, 'GET', '/healthz', { ca: server.ca, headers: { connection: 'close' } });
    assert.equal(r.status, 200);
  });

  test('SIGTERM exits 0', async () => {
    await server.stop();
    // Port is closed afterwards.
    const r = await handshake(server.port, { ca: server.ca });
    assert.equal(r.ok, false);
  });
});
