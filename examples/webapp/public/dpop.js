// The browser's DPoP key (RFC 9449) and its proofs, with WebCrypto only.
//
// The key pair is ECDSA P-256 (ES256), made with extractable = false: the
// private key signs, and no script, this page's or an injected one, can
// read it out (exportKey refuses). IndexedDB stores the CryptoKey object
// itself, not its bytes, so a reload finds the same key, still not
// extractable, and the session goes on.

const DATABASE = 'jwt_rls-webapp';
const STORE = 'keys';
const NAME = 'dpop';

function withStore(mode, action) {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(DATABASE, 1);
    open.onupgradeneeded = () => open.result.createObjectStore(STORE);
    open.onerror = () => reject(open.error);
    open.onsuccess = () => {
      const tx = open.result.transaction(STORE, mode);
      const request = action(tx.objectStore(STORE));
      tx.oncomplete = () => { open.result.close(); resolve(request.result); };
      tx.onerror = () => { open.result.close(); reject(tx.error); };
    };
  });
}

// The stored key pair, or undefined.
export function loadKey() {
  return withStore('readonly', (store) => store.get(NAME));
}

// A new key pair for a new login, replacing any stored one.
export async function newKey() {
  const pair = await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']);
  await withStore('readwrite', (store) => store.put(pair, NAME));
  return pair;
}

export function forgetKey() {
  return withStore('readwrite', (store) => store.delete(NAME));
}

const encoder = new TextEncoder();

function base64url(bytes) {
  let text = '';
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function encodeJson(value) {
  return base64url(encoder.encode(JSON.stringify(value)));
}

// A proof for one request: a JWT signed by the private key, carrying its
// public key, a new jti, iat now, the method and URL (without query or
// fragment) and, with an access token, ath: the base64url SHA-256 of it.
export async function proof(pair, method, url, accessToken) {
  const { kty, crv, x, y } = await crypto.subtle.exportKey('jwk', pair.publicKey);
  const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: { kty, crv, x, y } };
  const claims = { jti: crypto.randomUUID(), htm: method, htu: url, iat: Math.floor(Date.now() / 1000) };
  if (accessToken) {
    claims.ath = base64url(await crypto.subtle.digest('SHA-256', encoder.encode(accessToken)));
  }
  const input = `${encodeJson(header)}.${encodeJson(claims)}`;
  // WebCrypto's ECDSA signature is r || s, which is what a JWS carries.
  const signature = await crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-256' }, pair.privateKey, encoder.encode(input));
  return `${input}.${base64url(signature)}`;
}
