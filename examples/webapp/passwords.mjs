// Password hashing with scrypt (RFC 7914), Node's built-in KDF: no
// dependency. The parameters are OWASP's for scrypt (N = 2^17, r = 8,
// p = 1: 128 MiB and most of a second of one core per check here), and
// each stored hash carries its own, so they can be raised later without
// invalidating the hashes already stored:
//
//   scrypt$<log2 N>$<r>$<p>$<salt, base64url>$<hash, base64url>

import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto';

const LOG2_N = 17;
const R = 8;
const P = 1;
const SALT_BYTES = 16;
const HASH_BYTES = 32;

function derive(password, salt, log2n, r, p) {
  const N = 2 ** log2n;
  // scrypt needs 128 * N * r bytes; Node refuses more than 32 MiB unless told.
  const maxmem = 256 * N * r;
  return new Promise((resolve, reject) =>
    scrypt(password, salt, HASH_BYTES, { N, r, p, maxmem }, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function hashPassword(password) {
  const salt = randomBytes(SALT_BYTES);
  const hash = await derive(password, salt, LOG2_N, R, P);
  return ['scrypt', LOG2_N, R, P, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

// Whether `password` matches `stored` (a hashPassword() result). A stored
// value that is not one (say, undefined for an unknown user) is checked
// against a hash of nothing anyone knows, so an unknown user name takes as
// long to refuse as a wrong password.
export async function verifyPassword(password, stored) {
  const parts = typeof stored === 'string' ? stored.split('$') : [];
  if (parts.length !== 6 || parts[0] !== 'scrypt') {
    await derive(password, randomBytes(SALT_BYTES), LOG2_N, R, P);
    return false;
  }
  const [, log2n, r, p, salt, hash] = parts;
  const expected = Buffer.from(hash, 'base64url');
  const actual = await derive(password, Buffer.from(salt, 'base64url'), Number(log2n), Number(r), Number(p));
  return actual.length === expected.length && timingSafeEqual(actual, expected);
}
