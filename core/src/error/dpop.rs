//! `DpopError`: every way a DPoP proof (RFC 9449) is refused. The texts
//! shown for each variant are in `dpop_messages`.
//!
//! A type of its own rather than more `Error` variants: a proof travels
//! beside the access token, and a caller must be able to tell which of the
//! two was refused (the messages say "DPoP proof", never "token").
//!
//! Uses `error` (`Part`, `KeyError`) only.

use super::{KeyError, Part};

/// Why a DPoP proof was refused, with the specifics its detail shows;
/// `DpopError::class` gives its SQLSTATE family: `Malformed` when the
/// proof (or the request URL the caller gave) cannot be read at all,
/// `Rejected` when it is readable and fails one of the checks of RFC 9449
/// section 4.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DpopError {
    // --- malformed input -------------------------------------------------
    Empty,
    TooLarge {
        size: usize,
        limit: usize,
    },
    /// Not three '.'-separated segments of base64url and '.'.
    NotCompact,
    /// A segment is not canonical unpadded base64url.
    Base64(Part),
    /// The header or payload is not one strict JSON object; what is wrong
    /// (never the input itself).
    Json(Part, &'static str),
    /// A header member has the wrong JSON type (`typ`, `alg`, `jwk`).
    HeaderType(&'static str),
    /// The request URL given by the caller is not an absolute http(s) URL.
    BadRequestUrl,
    // --- well formed, fails a check ---------------------------------------
    /// `typ` is not exactly `dpop+jwt` (as given, None when absent).
    BadTyp(Option<String>),
    /// `alg` is `none` (any case).
    Unsecured,
    /// `alg` is an HMAC algorithm: a proof must show possession of a
    /// private key, which a shared secret cannot.
    SymmetricAlg(&'static str),
    /// `alg` is not a supported asymmetric algorithm (as given).
    UnsupportedAlg(String),
    /// A header member that changes how the proof must be processed.
    UnsupportedHeader(&'static str),
    /// The header has no `jwk`.
    NoJwk,
    /// The header's `jwk` carries a private member (its name).
    PrivateJwk(&'static str),
    /// The header's `jwk` is a symmetric (`oct`) key.
    SymmetricJwk,
    /// The header's `jwk` is not a key of the type (and curve) `alg` needs.
    JwkMismatch(&'static str),
    /// The header's `jwk` cannot be used to verify (too small, off the
    /// curve, missing members...).
    BadJwk(KeyError),
    BadSignature,
    MissingClaim(&'static str),
    ClaimType {
        claim: &'static str,
        expected: &'static str,
    },
    /// `jti` is empty or longer than the limit (its length in bytes).
    BadJti(usize),
    /// `htm` is not the request's method (both as given).
    MethodMismatch {
        proof: String,
        request: String,
    },
    /// `htu` is not an absolute http(s) URL.
    BadHtu,
    /// `htu` names another resource than the request URL: the first
    /// component that differs after normalisation.
    UrlMismatch(&'static str),
    IatTooOld {
        iat: i64,
        now: i64,
        max_age: i64,
    },
    IatInFuture {
        iat: i64,
        now: i64,
        max_ahead: i64,
    },
    /// `ath` is not the hash of the access token presented with the proof.
    AthMismatch,
    /// The proof's key is not the one the access token is bound to.
    JktMismatch,
    // --- checked by the extension, after the proof verified ---------------
    /// The proof (its key and `jti`) was accepted before, inside its window.
    Replayed,
    /// The proof's `iat` lies before `accepted_from`, the first moment
    /// from which this server's replay table has seen every accepted proof
    /// (it was emptied by a restart, a crash or a promotion): the proof
    /// may have been accepted before and cannot be checked.
    MadeBeforeRecording {
        iat: i64,
        accepted_from: i64,
    },
}

impl std::error::Error for DpopError {}
