//! SHA-256 fingerprints: of a token (the key a verification is shared
//! under across backends) and of keys and policies (what a shared
//! verification must have been made with to be used).
//!
//! A leaf: it uses nothing else of the crate. The key stores and the policy
//! fingerprint themselves and the cache stores verifications; with the
//! hashing here, neither side needs to import the other.

use aws_lc_rs::digest::{digest, SHA256};

/// A fingerprint: the first 16 bytes of a SHA-256.
pub type Fingerprint = [u8; 16];

/// SHA-256 of a token: the key a verification is shared under across
/// backends (a token is up to 1 MiB; its digest is what a shared slot can
/// hold, and finding another token with the same digest is infeasible).
pub fn token_digest(token: &str) -> [u8; 32] {
    let d = digest(&SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A fingerprint of parts separated unambiguously (length-prefixed).
pub fn fingerprint(parts: &[&[u8]]) -> Fingerprint {
    let mut out = [0u8; 16];
    out.copy_from_slice(&parts_digest(parts)[..16]);
    out
}

/// SHA-256 of parts separated unambiguously: each is preceded by its length
/// (8 bytes, little-endian), so ("ab", "c") and ("a", "bc") differ, whatever
/// bytes the parts hold (a separator character could occur inside one).
pub fn parts_digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&SHA256);
    for part in parts {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}
