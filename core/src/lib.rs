//! jwt_rls_core: strict JWT (JWS compact, and JWS nested in a JWE)
//! verification with no PostgreSQL dependency. The extension crate is a
//! thin shell around `verify` (or `verify_any`), `Verified::claim` (`claims::claim_text`) and the key store types here.
//!
//! Keys are read by the `jsonwebtoken` crate and signatures checked by
//! aws-lc-rs (the library behind jsonwebtoken's backend), with each key
//! parsed once (`verifier`); everything jsonwebtoken is lenient about (JSON duplicates and types, time claims,
//! header extensions, base64 spelling) is checked here first.
//!
//! Modules, each using only those on the lines above it (no module imports
//! another that imports it back; `scripts/check-imports.py` checks this):
//! - leaves, using nothing of the crate: `alg` (algorithm names), `verifier`
//!   (a key parsed once for its signature checks), `limits`
//!   (key and proof limits), `fingerprint` (SHA-256 helpers), `thumbprint`
//!   (RFC 7638 JWK thumbprints);
//! - `error`: the error types and their texts;
//! - `json` (strict JSON), `compact` (JWS segments), `select` (choosing a
//!   key by kid);
//! - `header` (the JOSE header), `claims` (policy and claim access);
//! - `keys` (verification keys), then `sign` (signing keys);
//! - `verify` (one JWS), then `cache` (verified tokens kept);
//! - `jwe_keys` (decryption and encryption keys), then `jwe` (nested JWTs);
//! - `dpop` (RFC 9449 proofs of possession), beside `verify`: it uses
//!   `compact`, `json`, `header` and `keys`, and nothing uses it;
//! - `replay` (the table of DPoP proofs seen, laid out for shared memory):
//!   it uses only `fingerprint`; `replay_quota` (each DPoP key's share of
//!   that table) uses `fingerprint` and `replay`, and nothing uses it;
//! - `revocation` (whether the revocation lists refuse a verified token)
//!   uses `error` and `verify`; `login` (a token presented to log in, checked
//!   against a snapshot of the key store) uses it with `claims`, `keys`,
//!   `jwe` and `verify`, and nothing uses `login`.

#![forbid(unsafe_code)]

pub mod alg;
pub mod cache;
pub mod claims;
pub mod compact;
pub mod dpop;
pub mod error;
pub mod fingerprint;
pub mod header;
pub mod json;
pub mod jwe;
pub mod jwe_keys;
pub mod keys;
pub mod limits;
pub mod login;
pub mod replay;
pub mod replay_quota;
pub mod revocation;
pub mod select;
pub mod sign;
pub mod thumbprint;
pub mod verifier;
pub mod verify;

pub use claims::{Policy, Times};
pub use dpop::{verify_proof, Proof, ProofPolicy, Request};
pub use error::{Class, DpopError, Error, KeyError, Result};
pub use jwe::{encrypt, verify_any};
pub use jwe_keys::{DecryptionKey, DecryptionKeySet, EncryptionKey};
pub use keys::{Format, Key, KeySet};
pub use verify::{verify, Verified};
