//! What a stored key (and a DPoP proof) must satisfy, in numbers: shared
//! by the modules that enforce them (`keys`, `jwe_keys`, `dpop`) and by
//! `error`, whose messages state them.
//!
//! A leaf: it uses nothing else of the crate, so that `error` can quote a
//! limit without importing the modules that raise errors.

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits: the largest the signature
/// algorithms verify (RFC 7518's RS/PS names with aws-lc's 2048-8192 bit
/// range), so a larger key is refused when stored rather than failing
/// every token.
pub const MAX_RSA_BITS: usize = 8192;
/// Longest kid accepted, in bytes.
pub const MAX_KID_BYTES: usize = 256;
/// Longest DPoP proof accepted, in bytes (RFC 9449). A proof is a header
/// with one public key and five short claims: about 1 KB with an RSA-4096
/// key. 8 KiB leaves room and bounds the work done before the signature.
pub const MAX_DPOP_PROOF_BYTES: usize = 8192;
/// Longest DPoP `jti` accepted, in bytes: the caller stores it to refuse
/// replays, so its size is bounded (RFC 9449 suggests 96 bits of randomness,
/// 16 characters of base64url; 256 leaves room for UUIDs and prefixes).
pub const MAX_DPOP_JTI_BYTES: usize = 256;
