//! RFC 7638 JWK thumbprints: the SHA-256 of a key's required public
//! members, written in one canonical way, as unpadded base64url.
//!
//! A DPoP-bound access token names its key by this value (`cnf.jkt`, RFC
//! 9449 section 6.1); a proof is acceptable only when the key in its header
//! has the same thumbprint. Computed here rather than by jsonwebtoken's
//! `Jwk::thumbprint` so that what is hashed is exactly what the proof's
//! header said, member by member, with nothing re-encoded on the way.
//!
//! A leaf: it uses nothing else of the crate.

use aws_lc_rs::digest::{digest, SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// The members of each key type that the thumbprint covers, already in
/// lexicographic order (RFC 7638 section 3.2; RFC 8037 section 2 for OKP).
fn required_members(kty: &str) -> Option<&'static [&'static str]> {
    match kty {
        "EC" => Some(&["crv", "kty", "x", "y"]),
        "RSA" => Some(&["e", "kty", "n"]),
        "OKP" => Some(&["crv", "kty", "x"]),
        "oct" => Some(&["k", "kty"]),
        _ => None,
    }
}

/// The thumbprint of a JWK given as a JSON object, or None when its `kty` is
/// unknown or a required member is missing or not a string.
///
/// Every other member (`alg`, `kid`, `use`, private members) is left out,
/// as RFC 7638 section 3.1 requires: two spellings of the same key have the
/// same thumbprint.
pub fn jwk_thumbprint(jwk: &Map<String, Value>) -> Option<String> {
    let kty = jwk.get("kty")?.as_str()?;
    // Written by hand, member by member in the order of the table, rather
    // than through a serde_json Map: whether a Map keeps insertion or key
    // order depends on a crate feature some other crate of the build may
    // turn on. Each value is a JSON string with serde_json's escaping, and
    // there is no whitespace: the form of RFC 7638 section 3.3.
    let mut text = String::from("{");
    for (i, member) in required_members(kty)?.iter().enumerate() {
        let value = jwk.get(*member)?.as_str()?;
        if i > 0 {
            text.push(',');
        }
        text.push_str(&format!("\"{member}\":"));
        text.push_str(&serde_json::to_string(value).ok()?);
    }
    text.push('}');
    Some(URL_SAFE_NO_PAD.encode(digest(&SHA256, text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn thumbprint(json: &str) -> Option<String> {
        match serde_json::from_str::<Value>(json).unwrap() {
            Value::Object(map) => jwk_thumbprint(&map),
            _ => panic!("not an object"),
        }
    }

    /// RFC 7638 section 3.1: the RSA key of RFC 7517 appendix A.1, with its
    /// alg and kid (which the thumbprint leaves out).
    const RFC7638_RSA: &str = r#"{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}"#;

    #[test]
    fn rfc7638_rsa_example() {
        assert_eq!(
            thumbprint(RFC7638_RSA).as_deref(),
            Some("NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
        );
    }

    /// RFC 8037 appendix A.3: the Ed25519 public key of appendix A.2.
    #[test]
    fn rfc8037_ed25519_example() {
        assert_eq!(
            thumbprint(
                r#"{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
            )
            .as_deref(),
            Some("kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k")
        );
    }

    /// RFC 9449 section 6.1: the cnf.jkt of the EC key in the proofs of
    /// sections 4.1 and 7.1.
    #[test]
    fn rfc9449_ec_example() {
        assert_eq!(
            thumbprint(
                r#"{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}"#
            )
            .as_deref(),
            Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
        );
    }

    #[test]
    fn other_members_and_order_do_not_matter() {
        let reordered = r#"{"kid":"x","use":"sig","e":"AQAB","alg":"PS256","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","kty":"RSA"}"#;
        assert_eq!(thumbprint(reordered), thumbprint(RFC7638_RSA));
    }

    #[test]
    fn incomplete_or_unknown_keys_have_none() {
        assert_eq!(thumbprint(r#"{"kty":"EC","crv":"P-256","x":"AA"}"#), None);
        assert_eq!(
            thumbprint(r#"{"kty":"EC","crv":"P-256","x":"AA","y":7}"#),
            None
        );
        assert_eq!(thumbprint(r#"{"kty":"XYZ","x":"AA"}"#), None);
        assert_eq!(thumbprint(r#"{"x":"AA"}"#), None);
    }
}
