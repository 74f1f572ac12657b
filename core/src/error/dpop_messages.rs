//! The texts of a DPoP proof refusal: `DpopError::class` (its SQLSTATE
//! family), `message`, `detail`, `hint` and `Display`. The extension will
//! show them to SQL callers, so the tests below pin every variant's.
//!
//! No text ever contains the proof, the access token, a key or the request
//! URL (whose query may carry secrets): only the name of the check that
//! failed, numbers, and short attacker-chosen names through `shown`.
//!
//! Uses `error` and the leaf `limits` (the numbers it states).

use std::fmt;

use super::{shown, Class, DpopError};
use crate::limits::MAX_DPOP_JTI_BYTES;

impl DpopError {
    /// The SQLSTATE family. Exhaustive on purpose: a new variant must be
    /// classified by whoever adds it.
    pub fn class(&self) -> Class {
        use DpopError::*;
        match self {
            Empty
            | TooLarge { .. }
            | NotCompact
            | Base64(_)
            | Json(..)
            | HeaderType(_)
            | BadRequestUrl => Class::Malformed,
            BadTyp(_)
            | Unsecured
            | SymmetricAlg(_)
            | UnsupportedAlg(_)
            | UnsupportedHeader(_)
            | NoJwk
            | PrivateJwk(_)
            | SymmetricJwk
            | JwkMismatch(_)
            | BadJwk(_)
            | BadSignature
            | MissingClaim(_)
            | ClaimType { .. }
            | BadJti(_)
            | MethodMismatch { .. }
            | BadHtu
            | UrlMismatch(_)
            | IatTooOld { .. }
            | IatInFuture { .. }
            | AthMismatch
            | JktMismatch
            | Replayed
            | MadeBeforeRecording { .. } => Class::Rejected,
        }
    }

    /// Short, stable message (Postgres style: lower case, no period).
    pub fn message(&self) -> String {
        use DpopError::*;
        match self {
            Empty => "DPoP proof is empty".into(),
            TooLarge { .. } => "DPoP proof is too large".into(),
            NotCompact => "DPoP proof is not a JWS compact serialization".into(),
            Base64(p) => format!("DPoP proof {p} is not canonical unpadded base64url"),
            Json(p, _) => format!("DPoP proof {p} is not a strict JSON object"),
            HeaderType(_) => "DPoP proof header has a member of the wrong type".into(),
            BadRequestUrl => "request URL is not an absolute http or https URL".into(),
            BadTyp(_) => "DPoP proof type is not dpop+jwt".into(),
            Unsecured => "unsecured DPoP proof (alg \"none\") is never accepted".into(),
            SymmetricAlg(_) | UnsupportedAlg(_) => "DPoP proof algorithm is not accepted".into(),
            UnsupportedHeader(_) => "DPoP proof header uses an unsupported extension".into(),
            NoJwk => "DPoP proof header has no jwk".into(),
            PrivateJwk(_) | SymmetricJwk => "DPoP proof jwk is not a public key".into(),
            JwkMismatch(_) => "DPoP proof jwk does not match its algorithm".into(),
            BadJwk(_) => "DPoP proof jwk is not a usable key".into(),
            BadSignature => "DPoP proof signature is invalid".into(),
            MissingClaim(_) => "DPoP proof lacks a required claim".into(),
            ClaimType { .. } => "DPoP proof claim has the wrong JSON type".into(),
            BadJti(_) => "DPoP proof jti has an unacceptable length".into(),
            MethodMismatch { .. } => "DPoP proof is for another HTTP method".into(),
            BadHtu => "DPoP proof htu is not an absolute http or https URL".into(),
            UrlMismatch(_) => "DPoP proof is for another URL".into(),
            IatTooOld { .. } => "DPoP proof is too old".into(),
            IatInFuture { .. } => "DPoP proof was issued in the future".into(),
            AthMismatch => "DPoP proof is for another access token".into(),
            JktMismatch => "DPoP proof key is not the key the access token is bound to".into(),
            Replayed => "DPoP proof was used before".into(),
            MadeBeforeRecording { .. } => {
                "DPoP proof was made before this server began recording proofs".into()
            }
        }
    }

    /// Specifics for the DETAIL line: which check failed, and on what.
    /// Attacker-chosen text only via `shown()`. The variants without one are
    /// listed, not caught by `_`, for the same reason as in `class`.
    pub fn detail(&self) -> Option<String> {
        use DpopError::*;
        Some(match self {
            TooLarge { size, limit } => {
                format!("The proof is {size} bytes; the limit is {limit}.")
            }
            NotCompact => {
                "Expected 3 '.'-separated segments of base64url (RFC 7515 section 7.1).".into()
            }
            Json(_, why) => format!("The JSON has {why}."),
            HeaderType(m) => format!("Header member \"{m}\" has the wrong JSON type."),
            BadTyp(None) => "The header has no typ; it must be \"dpop+jwt\".".into(),
            BadTyp(Some(t)) => format!("Header typ is {}; it must be \"dpop+jwt\".", shown(t)),
            SymmetricAlg(a) => format!(
                "Header alg is {a}, a symmetric algorithm; a proof must be signed with a private key."
            ),
            UnsupportedAlg(a) => format!(
                "Header alg is {}; accepted are RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA.",
                shown(a)
            ),
            UnsupportedHeader(m) => format!("Header member \"{m}\" is not supported."),
            PrivateJwk(m) => format!("The jwk carries private member \"{m}\"."),
            SymmetricJwk => "The jwk is a symmetric (oct) key.".into(),
            JwkMismatch(want) => format!("The header's alg needs {want}."),
            BadJwk(k) => format!("The jwk is refused: {k}."),
            MissingClaim(c) => format!("Claim \"{c}\" is required."),
            ClaimType { claim, expected } => format!("Claim \"{claim}\" must be {expected}."),
            BadJti(len) => format!(
                "The jti is {len} bytes; it must be 1 to {MAX_DPOP_JTI_BYTES}."
            ),
            MethodMismatch { proof, request } => format!(
                "The proof's htm is {}; the request's method is {}.",
                shown(proof),
                shown(request)
            ),
            UrlMismatch(component) => format!(
                "The proof's htu and the request URL differ in their {component} (compared after RFC 3986 normalisation, without query and fragment)."
            ),
            IatTooOld { iat, now, max_age } => {
                format!("iat is {iat}, now is {now}; proofs older than {max_age} s are refused.")
            }
            IatInFuture { iat, now, max_ahead } => format!(
                "iat is {iat}, now is {now}; proofs more than {max_ahead} s ahead are refused."
            ),
            AthMismatch => "The ath claim is not the SHA-256 of the access token.".into(),
            JktMismatch => {
                "The thumbprint of the proof's jwk is not the access token's cnf.jkt.".into()
            }
            Replayed => "A proof with this key and jti was accepted before, within its iat window.".into(),
            MadeBeforeRecording { iat, accepted_from } => format!(
                "iat is {iat}; this server accepts proofs made from {accepted_from} on: its table of proofs seen was emptied by a restart or a promotion, and an earlier proof may have been accepted before it."
            ),
            Empty | Base64(_) | BadRequestUrl | Unsecured | NoJwk | BadSignature | BadHtu => {
                return None
            }
        })
    }

    /// The HINT line: what the client (or the caller) can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        use DpopError::*;
        Some(match self {
            Empty | NotCompact | Base64(_) | Json(..) => {
                "Pass the DPoP header's value as it is: one compact JWS, without a prefix or whitespace."
            }
            BadRequestUrl => "Pass the absolute URL of the request, with its scheme and host.",
            BadTyp(_) | UnsupportedHeader(_) | HeaderType(_) => {
                "Create the proof with header typ \"dpop+jwt\", an asymmetric alg and the public key as jwk (RFC 9449 section 4.2)."
            }
            Unsecured | SymmetricAlg(_) | UnsupportedAlg(_) => {
                "Sign the proof with an asymmetric algorithm: RS256, PS256, ES256, ES384 or EdDSA."
            }
            NoJwk | PrivateJwk(_) | SymmetricJwk | JwkMismatch(_) | BadJwk(_) => {
                "Put the public key that signs the proof, and only its public members, in the header's jwk."
            }
            MissingClaim(_) | ClaimType { .. } | BadJti(_) | BadHtu => {
                "A proof carries jti (a unique string), htm, htu, iat (an integer) and, with an access token, ath."
            }
            MethodMismatch { .. } | UrlMismatch(_) => {
                "Create a proof for this request: htm its method, htu its URL."
            }
            IatTooOld { .. } | IatInFuture { .. } => {
                "Create a fresh proof for each request, and check the client's clock."
            }
            AthMismatch => "Set ath to the base64url SHA-256 of the access token sent with the proof.",
            JktMismatch => "Sign the proof with the key the access token was bound to.",
            Replayed => "Create a new proof, with a new jti, for each request.",
            MadeBeforeRecording { .. } => {
                "Create a new proof; right after the server starts, retry until its iat reaches the time in DETAIL."
            }
            TooLarge { .. } | BadSignature => return None,
        })
    }
}

impl fmt::Display for DpopError {
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
    /// will show them to SQL callers.
    #[test]
    fn class_message_and_detail() {
        use Class::*;
        use DpopError::*;
        let s = String::from;
        let cases: Vec<(DpopError, Class, &str, Option<&str>)> = vec![
            (Empty, Malformed, "DPoP proof is empty", None),
            (
                TooLarge {
                    size: 9000,
                    limit: 8192,
                },
                Malformed,
                "DPoP proof is too large",
                Some("The proof is 9000 bytes; the limit is 8192."),
            ),
            (
                NotCompact,
                Malformed,
                "DPoP proof is not a JWS compact serialization",
                Some("Expected 3 '.'-separated segments of base64url (RFC 7515 section 7.1)."),
            ),
            (
                Base64(Part::Signature),
                Malformed,
                "DPoP proof signature is not canonical unpadded base64url",
                None,
            ),
            (
                Json(Part::Header, "a duplicate member name"),
                Malformed,
                "DPoP proof header is not a strict JSON object",
                Some("The JSON has a duplicate member name."),
            ),
            (
                HeaderType("jwk"),
                Malformed,
                "DPoP proof header has a member of the wrong type",
                Some("Header member \"jwk\" has the wrong JSON type."),
            ),
            (
                BadRequestUrl,
                Malformed,
                "request URL is not an absolute http or https URL",
                None,
            ),
            (
                BadTyp(None),
                Rejected,
                "DPoP proof type is not dpop+jwt",
                Some("The header has no typ; it must be \"dpop+jwt\"."),
            ),
            (
                BadTyp(Some(s("JWT"))),
                Rejected,
                "DPoP proof type is not dpop+jwt",
                Some("Header typ is \"JWT\"; it must be \"dpop+jwt\"."),
            ),
            (
                Unsecured,
                Rejected,
                "unsecured DPoP proof (alg \"none\") is never accepted",
                None,
            ),
            (
                SymmetricAlg("HS256"),
                Rejected,
                "DPoP proof algorithm is not accepted",
                Some("Header alg is HS256, a symmetric algorithm; a proof must be signed with a private key."),
            ),
            (
                UnsupportedAlg(s("ES512")),
                Rejected,
                "DPoP proof algorithm is not accepted",
                Some("Header alg is \"ES512\"; accepted are RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA."),
            ),
            (
                UnsupportedHeader("crit"),
                Rejected,
                "DPoP proof header uses an unsupported extension",
                Some("Header member \"crit\" is not supported."),
            ),
            (NoJwk, Rejected, "DPoP proof header has no jwk", None),
            (
                PrivateJwk("d"),
                Rejected,
                "DPoP proof jwk is not a public key",
                Some("The jwk carries private member \"d\"."),
            ),
            (
                SymmetricJwk,
                Rejected,
                "DPoP proof jwk is not a public key",
                Some("The jwk is a symmetric (oct) key."),
            ),
            (
                JwkMismatch("an EC key on P-256"),
                Rejected,
                "DPoP proof jwk does not match its algorithm",
                Some("The header's alg needs an EC key on P-256."),
            ),
            (
                BadJwk(KeyError::RsaTooSmall {
                    min: 2048,
                    bits: 1024,
                }),
                Rejected,
                "DPoP proof jwk is not a usable key",
                Some("The jwk is refused: RSA keys must have at least 2048 bits, this one has 1024."),
            ),
            (BadSignature, Rejected, "DPoP proof signature is invalid", None),
            (
                MissingClaim("ath"),
                Rejected,
                "DPoP proof lacks a required claim",
                Some("Claim \"ath\" is required."),
            ),
            (
                ClaimType {
                    claim: "iat",
                    expected: "an integer NumericDate",
                },
                Rejected,
                "DPoP proof claim has the wrong JSON type",
                Some("Claim \"iat\" must be an integer NumericDate."),
            ),
            (
                BadJti(0),
                Rejected,
                "DPoP proof jti has an unacceptable length",
                Some("The jti is 0 bytes; it must be 1 to 256."),
            ),
            (
                MethodMismatch {
                    proof: s("get"),
                    request: s("GET"),
                },
                Rejected,
                "DPoP proof is for another HTTP method",
                Some("The proof's htm is \"get\"; the request's method is \"GET\"."),
            ),
            (
                BadHtu,
                Rejected,
                "DPoP proof htu is not an absolute http or https URL",
                None,
            ),
            (
                UrlMismatch("path"),
                Rejected,
                "DPoP proof is for another URL",
                Some("The proof's htu and the request URL differ in their path (compared after RFC 3986 normalisation, without query and fragment)."),
            ),
            (
                IatTooOld {
                    iat: 100,
                    now: 200,
                    max_age: 60,
                },
                Rejected,
                "DPoP proof is too old",
                Some("iat is 100, now is 200; proofs older than 60 s are refused."),
            ),
            (
                IatInFuture {
                    iat: 210,
                    now: 200,
                    max_ahead: 5,
                },
                Rejected,
                "DPoP proof was issued in the future",
                Some("iat is 210, now is 200; proofs more than 5 s ahead are refused."),
            ),
            (
                AthMismatch,
                Rejected,
                "DPoP proof is for another access token",
                Some("The ath claim is not the SHA-256 of the access token."),
            ),
            (
                JktMismatch,
                Rejected,
                "DPoP proof key is not the key the access token is bound to",
                Some("The thumbprint of the proof's jwk is not the access token's cnf.jkt."),
            ),
            (
                Replayed,
                Rejected,
                "DPoP proof was used before",
                Some("A proof with this key and jti was accepted before, within its iat window."),
            ),
            (
                MadeBeforeRecording {
                    iat: 100,
                    accepted_from: 110,
                },
                Rejected,
                "DPoP proof was made before this server began recording proofs",
                Some("iat is 100; this server accepts proofs made from 110 on: its table of proofs seen was emptied by a restart or a promotion, and an earlier proof may have been accepted before it."),
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
            // Every refusal a client can fix says how, except the two where
            // the only fix is not to tamper (or a caller's limit).
            assert_eq!(
                e.hint().is_none(),
                matches!(e, TooLarge { .. } | BadSignature),
                "{e:?}"
            );
        }
    }

    /// Attacker-chosen names are quoted only when short and harmless: a
    /// method spelled with a URL, a quote or a newline is not echoed.
    #[test]
    fn attacker_text_is_not_echoed() {
        let e = DpopError::MethodMismatch {
            proof: "GET https://x/?secret=1".into(),
            request: "GET".into(),
        };
        let detail = e.detail().unwrap();
        assert!(!detail.contains("secret"), "{detail}");
        assert!(detail.contains("(not shown)"), "{detail}");
        let e = DpopError::BadTyp(Some("dpop+jwt\n".into()));
        assert!(!e.detail().unwrap().contains('\n'));
    }
}
