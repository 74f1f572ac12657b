//! What a stored key must satisfy, in numbers: shared by the key stores
//! (`keys`, `jwe_keys`), which enforce them, and by `error`, whose messages
//! state them.
//!
//! A leaf: it uses nothing else of the crate, so that `error` can quote a
//! limit without importing the modules that raise errors.

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Longest kid accepted, in bytes.
pub const MAX_KID_BYTES: usize = 256;
