// Key pairs for the tests' clients, made so that exporting them cannot hang the test process.
//
// Node 20 can deadlock when a key made by generateKeyPair(Sync) is exported while the garbage
// collector destroys the job that made it: the export holds the key's mutex, and the job's
// destructor (run by a collection the export's allocations trigger) takes it again (seen in
// audit.test.mjs: main thread in uv_mutex_lock under KeyGenJob::~KeyGenJob under
// SetEncodedValue). The job here encodes the pair as JWKs while it is alive, and the KeyObjects
// returned are made from those, so they share nothing with it.
import crypto from 'node:crypto';

/** {publicKey, privateKey} KeyObjects: type and options as crypto.generateKeyPairSync's. */
export function keyPair(type, options) {
  const k = crypto.generateKeyPairSync(type, { ...options, publicKeyEncoding: { format: 'jwk' },
    privateKeyEncoding: { format: 'jwk' } });
  return { publicKey: crypto.createPublicKey({ key: k.publicKey, format: 'jwk' }),
    privateKey: crypto.createPrivateKey({ key: k.privateKey, format: 'jwk' }) };
}

/** An RSA 2048 pair (the tests' RS384 clients). */
export const rsaKeyPair = () => keyPair('rsa', { modulusLength: 2048 });
