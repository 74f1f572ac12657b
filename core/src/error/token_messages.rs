//! The texts of a token refusal: `Error::class` (its SQLSTATE family),
//! `message`, `detail`, and `Display`. The extension shows them to SQL
//! callers, so the tests below pin every variant's.
//!
//! Uses `error` only (attacker-chosen text goes through `shown`).

use std::fmt;

use super::{shown, Class, Error};

impl Error {
    /// The SQLSTATE family. Exhaustive on purpose: a new variant must be
    /// classified by whoever adds it.
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
            | HeaderType(_)
            | EncryptedNotAccepted
            | JweLength { .. }
            | BadEpk(_)
            | NoJti => Class::Malformed,
            UnsecuredToken
            | UnsupportedAlg(_)
            | UnsupportedHeader(_)
            | BadTyp(_)
            | NoKeys
            | AmbiguousKey(_)
            | UnknownKid(_)
            | KeyDisabled(_)
            | KeyNotInWindow(_)
            | AlgMismatch { .. }
            | BadSignature
            | ClaimType { .. }
            | MissingClaim(_)
            | Expired { .. }
            | NotYetValid { .. }
            | IssuedInFuture { .. }
            | LifetimeTooLong { .. }
            | Issuer
            | Audience
            | UnexpectedAudience
            | Revoked
            | RevokedSubject
            | RevokedSubjectNoIat
            | ProofRequired
            | NotSenderConstrained
            | NotAccessToken(_)
            | UnsupportedKeyAlg(_)
            | UnsupportedEnc(_)
            | NotNested(_)
            | NestedJwe
            | UnknownDecryptionKid(_)
            | DecryptionKeyDisabled(_)
            | DecryptionKeyNotInWindow(_)
            | AmbiguousDecryptionKey(_)
            | EncMismatch { .. }
            | DecryptionFailed => Class::Rejected,
            Key(_) => Class::BadKey,
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
            Audience | UnexpectedAudience => "token audience is not accepted".into(),
            Revoked | RevokedSubject | RevokedSubjectNoIat => "token has been revoked".into(),
            NoJti => "token has no jti claim to revoke it by".into(),
            ProofRequired => "token is bound to a dpop key and needs a dpop proof".into(),
            NotAccessToken(_) => "token is not an access token".into(),
            NotSenderConstrained => "token is not bound to a dpop key".into(),
            EncryptedNotAccepted => "encrypted tokens (JWE) are not accepted".into(),
            JweLength { part, .. } => format!("token {part} has the wrong length"),
            BadEpk(_) => "token ephemeral public key (epk) is invalid".into(),
            UnsupportedKeyAlg(_) => "token key management algorithm is not supported".into(),
            UnsupportedEnc(_) => "token content encryption is not supported".into(),
            NotNested(_) => "encrypted token does not contain a signed JWT".into(),
            NestedJwe => "encrypted token contains another encrypted token".into(),
            UnknownDecryptionKid(_) => "token kid names no known decryption key".into(),
            DecryptionKeyDisabled(_) => "token was encrypted to a disabled key".into(),
            DecryptionKeyNotInWindow(_) => {
                "token was encrypted to a key outside its validity window".into()
            }
            AmbiguousDecryptionKey(_) => {
                "encrypted token has no kid and more than one decryption key is active".into()
            }
            EncMismatch { .. } => "token content encryption does not match its key".into(),
            DecryptionFailed => "token could not be decrypted".into(),
            Key(k) => format!("invalid key: {k}"),
        }
    }

    /// Specifics for the DETAIL line; attacker-chosen text only via `shown()`.
    /// The core does not know where its limits and accepted values are
    /// configured: a caller that does may say so instead (the extension
    /// names its settings for TooLarge, LifetimeTooLong, Issuer, Audience).
    /// The variants without one are listed, not caught by `_`, for the same
    /// reason as in `class`.
    pub fn detail(&self) -> Option<String> {
        use Error::*;
        Some(match self {
            TooLarge { size, limit } => {
                format!("The token is {size} bytes; the limit is {limit}.")
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
                format!("Claim {} must be {expected}.", shown(claim))
            }
            MissingClaim(c) => format!("Claim {} is required.", shown(c)),
            Expired { exp, now } => format!("exp is {exp}, now is {now}."),
            NotYetValid { nbf, now } => format!("nbf is {nbf}, now is {now}."),
            IssuedInFuture { iat, now } => format!("iat is {iat}, now is {now}."),
            LifetimeTooLong { lifetime, max } => {
                format!("exp - iat is {lifetime} s; the limit is {max} s.")
            }
            Issuer => "The iss claim is not an accepted issuer.".into(),
            Audience => "The aud claim names no accepted audience.".into(),
            UnexpectedAudience => "The token has an aud claim and no audience is accepted.".into(),
            Revoked => "Its jti is on the revocation list.".into(),
            NotAccessToken(None) => {
                "The header has no typ; an access token (RFC 9068) has typ \"at+jwt\".".into()
            }
            NotAccessToken(Some(t)) => format!(
                "Header typ is {}; an access token (RFC 9068) has typ \"at+jwt\".",
                shown(t)
            ),
            ProofRequired => {
                "Its cnf.jkt claim names the key of a DPoP proof (RFC 9449), and none was presented with it in this transaction.".into()
            }
            NotSenderConstrained => {
                "A DPoP proof was presented with a token that has no cnf.jkt claim naming the proof's key.".into()
            }
            RevokedSubject => "Tokens of its subject issued before a revocation are refused.".into(),
            RevokedSubjectNoIat => {
                "Its subject has a revocation cutoff and the token has no iat to show it was issued after it."
                    .into()
            }
            EncryptedNotAccepted => "No decryption key is configured and active.".into(),
            JweLength {
                part,
                len,
                expected,
            } => format!("The {part} is {len} bytes; its algorithm needs {expected}."),
            BadEpk(why) => format!("The epk is {why}."),
            UnsupportedKeyAlg(a) => format!(
                "Header alg is {}; accepted are RSA-OAEP-256, ECDH-ES, ECDH-ES+A256KW, A256KW and dir.",
                shown(a)
            ),
            UnsupportedEnc(e) => format!(
                "Header enc is {}; accepted are A256GCM and A128CBC-HS256.",
                shown(e)
            ),
            NotNested(None) => {
                "The header has no cty; only a signed JWT inside a JWE (cty \"JWT\") is accepted."
                    .into()
            }
            NotNested(Some(c)) => format!(
                "Header cty is {}; only a signed JWT inside a JWE (cty \"JWT\") is accepted.",
                shown(c)
            ),
            UnknownDecryptionKid(k) => format!("No decryption key has kid {}.", shown(k)),
            DecryptionKeyDisabled(k) | DecryptionKeyNotInWindow(k) => {
                format!("Decryption key kid is {}.", shown(k))
            }
            AmbiguousDecryptionKey(n) => format!(
                "{n} decryption keys are active; the token must name one with kid."
            ),
            EncMismatch {
                kid,
                key_enc,
                token_enc,
            } => format!(
                "Key {} is bound to {key_enc}; the token says {token_enc}.",
                shown(kid)
            ),
            Empty | BadCharacter | Base64(_) | NotObject(_) | DuplicateKey(_) | NulCharacter(_)
            | TooDeep(_) | UnsecuredToken | NoKeys | BadSignature | NoJti | NestedJwe
            | DecryptionFailed | Key(_) => return None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{KeyError, Part};

    /// Class, message and detail of every variant, pinned: the extension
    /// shows them to SQL callers.
    #[test]
    fn class_message_and_detail() {
        use Class::*;
        use Error::*;
        let s = String::from;
        let cases: Vec<(Error, Class, &str, Option<&str>)> = vec![
            (Empty, Malformed, "token is empty", None),
            (
                TooLarge {
                    size: 9000,
                    limit: 8192,
                },
                Malformed,
                "token is too large",
                Some("The token is 9000 bytes; the limit is 8192."),
            ),
            (
                BadCharacter,
                Malformed,
                "token contains characters outside base64url and '.'",
                None,
            ),
            (
                SegmentCount(5),
                Malformed,
                "token is a JWE (encrypted token), which is not supported",
                Some("Expected 3 '.'-separated segments, found 5."),
            ),
            (
                SegmentCount(2),
                Malformed,
                "token is not a JWS compact serialization",
                Some("Expected 3 '.'-separated segments, found 2."),
            ),
            (
                Base64(Part::Signature),
                Malformed,
                "token signature is not canonical unpadded base64url",
                None,
            ),
            (
                Json(Part::Header, s("EOF while parsing")),
                Malformed,
                "token header is not valid JSON",
                Some("JSON error: EOF while parsing."),
            ),
            (
                NotObject(Part::Payload),
                Malformed,
                "token payload is not a JSON object",
                None,
            ),
            (
                DuplicateKey(Part::Header),
                Malformed,
                "token header has a duplicate member name",
                None,
            ),
            (
                NulCharacter(Part::Payload),
                Malformed,
                "token payload contains a NUL character",
                None,
            ),
            (
                TooDeep(Part::Payload),
                Malformed,
                "token payload is nested too deeply",
                None,
            ),
            (
                HeaderType("kid"),
                Malformed,
                "token header has a member of the wrong type",
                Some("Header member \"kid\" has the wrong JSON type."),
            ),
            (
                UnsecuredToken,
                Rejected,
                "unsecured token (alg \"none\") is never accepted",
                None,
            ),
            (
                UnsupportedAlg(s("ES512")),
                Rejected,
                "token algorithm is not supported",
                Some("Header alg is \"ES512\"."),
            ),
            (
                UnsupportedHeader("crit"),
                Rejected,
                "token header uses an unsupported extension",
                Some("Header member \"crit\" is not supported."),
            ),
            (
                BadTyp(s("JWE")),
                Rejected,
                "token type is not JWT",
                Some("Header typ is \"JWE\"; accepted are JWT and at+jwt."),
            ),
            (NoKeys, Rejected, "no verification key is configured", None),
            (
                AmbiguousKey(2),
                Rejected,
                "token has no kid and more than one key is active",
                Some("2 keys are active; the token must name one with kid."),
            ),
            (
                UnknownKid(s("k 1")),
                Rejected,
                "token kid names no known key",
                Some("No key has kid (not shown)."),
            ),
            (
                KeyDisabled(s("k1")),
                Rejected,
                "token was signed with a disabled key",
                Some("Key kid is \"k1\"."),
            ),
            (
                KeyNotInWindow(s("k1")),
                Rejected,
                "token was signed with a key outside its validity window",
                Some("Key kid is \"k1\"."),
            ),
            (
                AlgMismatch {
                    kid: s("k1"),
                    key_alg: "RS256",
                    token_alg: "HS256",
                },
                Rejected,
                "token algorithm does not match its key",
                Some("Key \"k1\" is bound to RS256; the token says HS256."),
            ),
            (BadSignature, Rejected, "token signature is invalid", None),
            (
                ClaimType {
                    claim: s("exp"),
                    expected: "an integer",
                },
                Rejected,
                "token claim has the wrong JSON type",
                Some("Claim \"exp\" must be an integer."),
            ),
            (
                MissingClaim(s("iat")),
                Rejected,
                "token lacks a required claim",
                Some("Claim \"iat\" is required."),
            ),
            (
                Expired { exp: 10, now: 20 },
                Rejected,
                "token is expired",
                Some("exp is 10, now is 20."),
            ),
            (
                NotYetValid { nbf: 30, now: 20 },
                Rejected,
                "token is not valid yet",
                Some("nbf is 30, now is 20."),
            ),
            (
                IssuedInFuture { iat: 30, now: 20 },
                Rejected,
                "token was issued in the future",
                Some("iat is 30, now is 20."),
            ),
            (
                LifetimeTooLong {
                    lifetime: 7200,
                    max: 3600,
                },
                Rejected,
                "token lifetime exceeds the maximum",
                Some("exp - iat is 7200 s; the limit is 3600 s."),
            ),
            (
                Issuer,
                Rejected,
                "token issuer is not accepted",
                Some("The iss claim is not an accepted issuer."),
            ),
            (
                Audience,
                Rejected,
                "token audience is not accepted",
                Some("The aud claim names no accepted audience."),
            ),
            (
                UnexpectedAudience,
                Rejected,
                "token audience is not accepted",
                Some("The token has an aud claim and no audience is accepted."),
            ),
            (
                Revoked,
                Rejected,
                "token has been revoked",
                Some("Its jti is on the revocation list."),
            ),
            (
                RevokedSubject,
                Rejected,
                "token has been revoked",
                Some("Tokens of its subject issued before a revocation are refused."),
            ),
            (
                RevokedSubjectNoIat,
                Rejected,
                "token has been revoked",
                Some("Its subject has a revocation cutoff and the token has no iat to show it was issued after it."),
            ),
            (NoJti, Malformed, "token has no jti claim to revoke it by", None),
            (
                NotAccessToken(Some("JWT".into())),
                Rejected,
                "token is not an access token",
                Some("Header typ is \"JWT\"; an access token (RFC 9068) has typ \"at+jwt\"."),
            ),
            (
                NotAccessToken(None),
                Rejected,
                "token is not an access token",
                Some("The header has no typ; an access token (RFC 9068) has typ \"at+jwt\"."),
            ),
            (
                ProofRequired,
                Rejected,
                "token is bound to a dpop key and needs a dpop proof",
                Some("Its cnf.jkt claim names the key of a DPoP proof (RFC 9449), and none was presented with it in this transaction."),
            ),
            (
                NotSenderConstrained,
                Rejected,
                "token is not bound to a dpop key",
                Some("A DPoP proof was presented with a token that has no cnf.jkt claim naming the proof's key."),
            ),
            (
                EncryptedNotAccepted,
                Malformed,
                "encrypted tokens (JWE) are not accepted",
                Some("No decryption key is configured and active."),
            ),
            (
                JweLength {
                    part: Part::Iv,
                    len: 16,
                    expected: 12,
                },
                Malformed,
                "token iv has the wrong length",
                Some("The iv is 16 bytes; its algorithm needs 12."),
            ),
            (
                BadEpk("not on the curve"),
                Malformed,
                "token ephemeral public key (epk) is invalid",
                Some("The epk is not on the curve."),
            ),
            (
                UnsupportedKeyAlg(s("RSA1_5")),
                Rejected,
                "token key management algorithm is not supported",
                Some("Header alg is \"RSA1_5\"; accepted are RSA-OAEP-256, ECDH-ES, ECDH-ES+A256KW, A256KW and dir."),
            ),
            (
                UnsupportedEnc(s("A128GCM")),
                Rejected,
                "token content encryption is not supported",
                Some("Header enc is \"A128GCM\"; accepted are A256GCM and A128CBC-HS256."),
            ),
            (
                NotNested(None),
                Rejected,
                "encrypted token does not contain a signed JWT",
                Some("The header has no cty; only a signed JWT inside a JWE (cty \"JWT\") is accepted."),
            ),
            (
                NotNested(Some(s("json"))),
                Rejected,
                "encrypted token does not contain a signed JWT",
                Some("Header cty is \"json\"; only a signed JWT inside a JWE (cty \"JWT\") is accepted."),
            ),
            (
                NestedJwe,
                Rejected,
                "encrypted token contains another encrypted token",
                None,
            ),
            (
                UnknownDecryptionKid(s("e1")),
                Rejected,
                "token kid names no known decryption key",
                Some("No decryption key has kid \"e1\"."),
            ),
            (
                DecryptionKeyDisabled(s("e1")),
                Rejected,
                "token was encrypted to a disabled key",
                Some("Decryption key kid is \"e1\"."),
            ),
            (
                DecryptionKeyNotInWindow(s("e1")),
                Rejected,
                "token was encrypted to a key outside its validity window",
                Some("Decryption key kid is \"e1\"."),
            ),
            (
                AmbiguousDecryptionKey(2),
                Rejected,
                "encrypted token has no kid and more than one decryption key is active",
                Some("2 decryption keys are active; the token must name one with kid."),
            ),
            (
                EncMismatch {
                    kid: s("e1"),
                    key_enc: "A256GCM",
                    token_enc: "A128CBC-HS256",
                },
                Rejected,
                "token content encryption does not match its key",
                Some("Key \"e1\" is bound to A256GCM; the token says A128CBC-HS256."),
            ),
            (DecryptionFailed, Rejected, "token could not be decrypted", None),
            (
                Key(KeyError::BadKid),
                BadKey,
                "invalid key: kid must be 1 to 256 bytes without control characters",
                None,
            ),
        ];
        for (e, class, message, detail) in cases {
            assert_eq!(e.class(), class, "{e:?}");
            assert_eq!(e.message(), message, "{e:?}");
            assert_eq!(e.detail().as_deref(), detail, "{e:?}");
            let shown = match detail {
                Some(d) => format!("{message} ({d})"),
                None => message.to_string(),
            };
            assert_eq!(e.to_string(), shown);
        }
    }
}
