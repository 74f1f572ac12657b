//! The one error type of the core. Every variant maps to a SQLSTATE class in
//! the extension (`Error::class`), and no message ever contains the token or
//! any attacker-chosen string that has not passed `shown()`.

use std::fmt;

/// Which SQLSTATE family an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The input is not a well-formed JWS compact token (SQLSTATE 22023).
    Malformed,
    /// The token is well formed but not acceptable (SQLSTATE 28000).
    Rejected,
    /// A key given to the key store is unusable (SQLSTATE 22023).
    BadKey,
}

/// Which part of the token an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Payload,
    Signature,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
        })
    }
}

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
    // --- well formed, not acceptable ------------------------------------
    UnsecuredToken,
    UnsupportedAlg(String),
    UnsupportedHeader(&'static str),
    BadTyp(String),
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
    // --- revoked (checked by the extension against its lists) -----------
    /// The token's jti is on the revocation list.
    Revoked,
    /// The token's subject has a cutoff and the token was issued before it.
    RevokedSubject,
    /// The token's subject has a cutoff and the token has no iat.
    RevokedSubjectNoIat,
    /// A token without jti was presented for revocation by jti.
    NoJti,
    // --- key store -------------------------------------------------------
    Key(String),
}

impl Error {
    pub fn class(&self) -> Class {
        use Error::*;
        match self {
            Empty
            | TooLarge { .. }
            | BadCharacter
            | SegmentCount(_)
            | Base64(_)
            | Json(..)
            | NotObject(_)
            | DuplicateKey(_)
            | NulCharacter(_)
            | TooDeep(_)
            | HeaderType(_) => Class::Malformed,
            Key(_) => Class::BadKey,
            NoJti => Class::Malformed,
            _ => Class::Rejected,
        }
    }

    /// Short, stable message (Postgres style: lower case, no period).
    pub fn message(&self) -> String {
        use Error::*;
        match self {
            Empty => "token is empty".into(),
            TooLarge { .. } => "token is too large".into(),
            BadCharacter => "token contains characters outside base64url and '.'".into(),
            SegmentCount(5) => "token is a JWE (encrypted token), which is not supported".into(),
            SegmentCount(_) => "token is not a JWS compact serialization".into(),
            Base64(p) => format!("token {p} is not canonical unpadded base64url"),
            Json(p, _) => format!("token {p} is not valid JSON"),
            NotObject(p) => format!("token {p} is not a JSON object"),
            DuplicateKey(p) => format!("token {p} has a duplicate member name"),
            NulCharacter(p) => format!("token {p} contains a NUL character"),
            TooDeep(p) => format!("token {p} is nested too deeply"),
            HeaderType(_) => "token header has a member of the wrong type".into(),
            UnsecuredToken => "unsecured token (alg \"none\") is never accepted".into(),
            UnsupportedAlg(_) => "token algorithm is not supported".into(),
            UnsupportedHeader(_) => "token header uses an unsupported extension".into(),
            BadTyp(_) => "token type is not JWT".into(),
            NoKeys => "no verification key is configured".into(),
            AmbiguousKey(_) => "token has no kid and more than one key is active".into(),
            UnknownKid(_) => "token kid names no known key".into(),
            KeyDisabled(_) => "token was signed with a disabled key".into(),
            KeyNotInWindow(_) => "token was signed with a key outside its validity window".into(),
            AlgMismatch { .. } => "token algorithm does not match its key".into(),
            BadSignature => "token signature is invalid".into(),
            ClaimType { .. } => "token claim has the wrong JSON type".into(),
            MissingClaim(_) => "token lacks a required claim".into(),
            Expired { .. } => "token is expired".into(),
            NotYetValid { .. } => "token is not valid yet".into(),
            IssuedInFuture { .. } => "token was issued in the future".into(),
            LifetimeTooLong { .. } => "token lifetime exceeds the maximum".into(),
            Issuer => "token issuer is not accepted".into(),
            Audience => "token audience is not accepted".into(),
            Revoked | RevokedSubject | RevokedSubjectNoIat => "token has been revoked".into(),
            NoJti => "token has no jti claim to revoke it by".into(),
            Key(m) => format!("invalid key: {m}"),
        }
    }

    /// Specifics for the DETAIL line; attacker-chosen text only via `shown()`.
    pub fn detail(&self) -> Option<String> {
        use Error::*;
        Some(match self {
            TooLarge { size, limit } => {
                format!("The token is {size} bytes; jwt_rls.max_token_bytes is {limit}.")
            }
            SegmentCount(n) => format!("Expected 3 '.'-separated segments, found {n}."),
            Json(_, why) => format!("JSON error: {why}."),
            HeaderType(m) => format!("Header member \"{m}\" has the wrong JSON type."),
            UnsupportedAlg(a) => format!("Header alg is {}.", shown(a)),
            UnsupportedHeader(m) => format!("Header member \"{m}\" is not supported."),
            BadTyp(t) => format!("Header typ is {}; accepted are JWT and at+jwt.", shown(t)),
            AmbiguousKey(n) => format!("{n} keys are active; the token must name one with kid."),
            UnknownKid(k) => format!("No key has kid {}.", shown(k)),
            KeyDisabled(k) | KeyNotInWindow(k) => format!("Key kid is {}.", shown(k)),
            AlgMismatch { kid, key_alg, token_alg } => format!(
                "Key {} is bound to {key_alg}; the token says {token_alg}.",
                shown(kid)
            ),
            ClaimType { claim, expected } => {
                format!("Claim \"{}\" must be {expected}.", shown(claim))
            }
            MissingClaim(c) => format!("Claim \"{}\" is required.", shown(c)),
            Expired { exp, now } => format!("exp is {exp}, now is {now}."),
            NotYetValid { nbf, now } => format!("nbf is {nbf}, now is {now}."),
            IssuedInFuture { iat, now } => format!("iat is {iat}, now is {now}."),
            LifetimeTooLong { lifetime, max } => {
                format!("exp - iat is {lifetime} s; jwt_rls.max_lifetime is {max} s.")
            }
            Issuer => "The iss claim is not in jwt_rls.issuer.".into(),
            Audience => "The aud claim names no audience in jwt_rls.audience.".into(),
            Revoked => "Its jti is on the revocation list.".into(),
            RevokedSubject => "Tokens of its subject issued before a revocation are refused.".into(),
            RevokedSubjectNoIat => {
                "Its subject has a revocation cutoff and the token has no iat to show it was issued after it."
                    .into()
            }
            _ => return None,
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())?;
        if let Some(d) = self.detail() {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Quotes an attacker-chosen string for a message only when it is short and
/// made of harmless characters; anything else is replaced, so that messages
/// and logs can never carry token material, control characters or SQL.
pub fn shown(s: &str) -> String {
    let harmless = |c: char| c.is_ascii_alphanumeric() || "-_.:+@".contains(c);
    if !s.is_empty() && s.len() <= 64 && s.chars().all(harmless) {
        format!("\"{s}\"")
    } else {
        "(not shown)".into()
    }
}
