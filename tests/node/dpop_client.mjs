// A DPoP client (RFC 9449) as a browser would be one, made with jose only
// (and the Web Crypto API that browsers and Node share), for
// tests/test_dpop_e2e.py.
//
//   node dpop_client.mjs [--alg ES256|EdDSA]
//
// It makes one key pair whose private key cannot be exported, and prints
// one JSON line: {"alg", "jwk" (the public key), "jkt" (its RFC 7638
// SHA-256 thumbprint), "extractable" (the private key's: false)}. Then,
// for each JSON line on stdin,
//   {"htm": "GET", "htu": "https://...", "access_token": "..." (optional)}
// it prints one line: a DPoP proof for that request, with a new jti, iat
// now, and ath (base64url of the SHA-256 of the access token) when an
// access token is given. It ends when stdin closes.

import { createInterface } from 'node:readline';
import { SignJWT, base64url, calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';

const flag = process.argv.indexOf('--alg');
const alg = flag === -1 ? 'ES256' : process.argv[flag + 1];
if (alg !== 'ES256' && alg !== 'EdDSA') {
  throw new Error(`unsupported --alg ${alg}: ES256 or EdDSA`);
}

// extractable: false is jose's default, said here because it is the point:
// the private key can sign but never be read out (EdDSA: Ed25519).
const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: false });
const jwk = await exportJWK(publicKey);
const jkt = await calculateJwkThumbprint(jwk, 'sha256');
const extractable = privateKey.extractable;
process.stdout.write(JSON.stringify({ alg, jwk, jkt, extractable }) + '\n');

async function ath(accessToken) {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(accessToken));
  return base64url.encode(new Uint8Array(digest));
}

async function proof({ htm, htu, access_token: accessToken }) {
  const claims = { htm, htu };
  if (accessToken !== undefined && accessToken !== null) {
    claims.ath = await ath(accessToken);
  }
  return new SignJWT(claims)
    .setProtectedHeader({ alg, typ: 'dpop+jwt', jwk })
    .setJti(crypto.randomUUID())
    .setIssuedAt()
    .sign(privateKey);
}

// One request at a time, in order: each line is answered before the next is read.
for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
  if (line.trim() === '') continue;
  process.stdout.write((await proof(JSON.parse(line))) + '\n');
}
