//! `Error`: every way a token (or a key given to the store, via `Key`) is
//! refused. The texts shown for each variant are in `token_messages`.
//!
//! Uses `error` (`Part`, `KeyError`) only.

use super::{KeyError, Part};

/// Why a token was refused, with the specifics its detail shows;
/// `Error::class` gives its SQLSTATE family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    // --- malformed input -------------------------------------------------
    Empty,
    TooLarge {
        size: usize,
        limit: usize,
    },
    BadCharacter,
    SegmentCount(usize),
    Base64(Part),
    Json(Part, String),
    NotObject(Part),
    DuplicateKey(Part),
    NulCharacter(Part),
    TooDeep(Part),
    HeaderType(&'static str),
    /// A JWE was given and no decryption key is configured and active.
    EncryptedNotAccepted,
    /// A JWE segment has a length its algorithm does not allow.
    JweLength {
        part: Part,
        len: usize,
        expected: usize,
    },
    /// The ECDH-ES ephemeral public key is missing or unusable (the reason).
    BadEpk(&'static str),
    // --- well formed, not acceptable ------------------------------------
    UnsecuredToken,
    UnsupportedAlg(String),
    UnsupportedHeader(&'static str),
    BadTyp(String),
    /// Access tokens only (RFC 9068) and the header `typ` is not `at+jwt`
    /// (as given, None when absent).
    NotAccessToken(Option<String>),
    NoKeys,
    AmbiguousKey(usize),
    UnknownKid(String),
    KeyDisabled(String),
    KeyNotInWindow(String),
    AlgMismatch {
        kid: String,
        key_alg: &'static str,
        token_alg: &'static str,
    },
    BadSignature,
    ClaimType {
        claim: String,
        expected: &'static str,
    },
    MissingClaim(String),
    Expired {
        exp: i64,
        now: i64,
    },
    NotYetValid {
        nbf: i64,
        now: i64,
    },
    IssuedInFuture {
        iat: i64,
        now: i64,
    },
    LifetimeTooLong {
        lifetime: i64,
        max: i64,
    },
    Issuer,
    Audience,
    /// The token carries `aud` and no audience is configured.
    UnexpectedAudience,
    // --- revoked (checked by the extension against its lists) -----------
    /// The token's jti is on the revocation list.
    Revoked,
    /// The token's subject has a cutoff and the token was issued before it.
    RevokedSubject,
    /// The token's subject has a cutoff and the token has no iat.
    RevokedSubjectNoIat,
    /// A token without jti was presented for revocation by jti.
    NoJti,
    // --- sender-constrained tokens (DPoP, RFC 9449; checked by the extension)
    /// The token names a proof key (`cnf.jkt`) and was bound without a
    /// DPoP proof by that key.
    ProofRequired,
    /// A DPoP proof came with a token that names no proof key (`cnf.jkt`).
    NotSenderConstrained,
    // --- encrypted tokens (JWE) ----------------------------------------
    /// The JWE key-management algorithm is not one that is accepted.
    UnsupportedKeyAlg(String),
    /// The JWE content encryption is not one that is accepted.
    UnsupportedEnc(String),
    /// The JWE does not say it holds a JWT (`cty`), so it is not a nested
    /// (signed, then encrypted) token; the cty as given, if a string.
    NotNested(Option<String>),
    /// The decrypted content is itself a JWE.
    NestedJwe,
    UnknownDecryptionKid(String),
    DecryptionKeyDisabled(String),
    DecryptionKeyNotInWindow(String),
    AmbiguousDecryptionKey(usize),
    /// A dir key is bound to another content encryption than the token's.
    EncMismatch {
        kid: String,
        key_enc: &'static str,
        token_enc: &'static str,
    },
    /// Any failure to decrypt: tag, key unwrap, OAEP, padding. One variant
    /// on purpose, so that no caller can tell them apart (no oracle).
    DecryptionFailed,
    // --- key store -------------------------------------------------------
    Key(KeyError),
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Error {
        Error::Key(e)
    }
}

impl std::error::Error for Error {}
