//! What happens to a token after it is issued: revocation by jti or by
//! subject (`revocation`: the lists, their check, their admin functions),
//! and login sessions with rotated refresh tokens and reuse detection
//! (`sessions`).
//!
//! Uses verification (to revoke a token presented whole), keys and `pg`;
//! binding uses its revocation check.

pub mod revocation;
pub mod sessions;
