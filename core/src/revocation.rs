//! Whether a verified token is revoked, given the revocation lists: the
//! one decision both the extension's per-read check (lists read from its
//! tables) and the OAuth login (lists copied into shared memory) take, so
//! that a token refused by one is refused by the other.
//!
//! Fail closed: when a subject has a cutoff, a token of that subject
//! without `iat` cannot prove it was issued after it, and is refused. A
//! token without `jti` cannot be revoked by jti (revoke its subject).
//!
//! Uses `error` and `verify` (the verified token's claims).

use crate::error::{Error, Result};
use crate::verify::Verified;

/// The revocation lists as the caller holds them. Each `has_*` says
/// whether a list may hold anything, so that an empty one costs no lookup
/// (a caller that does not know answers true).
pub trait Lists {
    fn has_tokens(&self) -> bool;
    fn has_sessions(&self) -> bool;
    fn has_subjects(&self) -> bool;
    /// Whether the token with this `jti` is revoked.
    fn jti_revoked(&self, jti: &str) -> bool;
    /// Whether the session (refresh-token family) `sid` is revoked.
    fn session_revoked(&self, sid: &str) -> bool;
    /// Microseconds since the Unix epoch before which the subject's tokens
    /// are revoked, if it has a cutoff.
    fn subject_cutoff(&self, sub: &str) -> Option<i64>;
}

/// Refuses a verified token that the lists name.
pub fn check(verified: &Verified, lists: &impl Lists) -> Result<()> {
    if lists.has_tokens() {
        if let Some(jti) = verified.claim("jti") {
            if lists.jti_revoked(&jti) {
                return Err(Error::Revoked);
            }
        }
    }
    if lists.has_sessions() {
        if let Some(sid) = verified.claim("sid") {
            if lists.session_revoked(&sid) {
                return Err(Error::Revoked);
            }
        }
    }
    if lists.has_subjects() {
        if let Some(sub) = verified.claim("sub") {
            if let Some(cutoff) = lists.subject_cutoff(&sub) {
                match verified.times.iat {
                    None => return Err(Error::RevokedSubjectNoIat),
                    Some(iat) if iat.saturating_mul(1_000_000) < cutoff => {
                        return Err(Error::RevokedSubject)
                    }
                    Some(_) => {}
                }
            }
        }
    }
    Ok(())
}

/// Whether `sid` has the shape of a session id (a uuid in its text form,
/// any case): a sid of another shape (another issuer's) names no session.
pub fn is_session_id(sid: &str) -> bool {
    sid.len() == 36
        && sid.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}
