//! DPoP proofs (RFC 9449): checking that the client presenting a
//! sender-constrained access token holds the private key it is bound to,
//! for this very request.
//!
//! A proof is a small JWS the client signs for each HTTP request, with its
//! public key in the header. `verify_proof` runs the checks of RFC 9449
//! section 4.3 in the order that does the least work on a hostile proof:
//! size and encoding, then the header (`typ`, `alg`, `jwk`), then the
//! signature, and only then the claims (`jti`, `htm`, `htu`, `iat`, `ath`)
//! and the key's thumbprint against the access token's `cnf.jkt`.
//!
//! What it does not do: remember proofs. A proof can be replayed within its
//! `iat` window, so the caller records the `jti` it returns (with the key's
//! thumbprint) until `iat` leaves the window, and refuses one seen before
//! (RFC 9449 section 11.1). Nor does it handle server nonces (section 8).
//!
//! Uses `compact`, `json`, `header` (a token header's rules for `alg` and
//! refused members), `keys` (the proof's key is held to the rules of a
//! stored key), `error`, and the leaves `alg`, `limits`, `fingerprint` and
//! `thumbprint`.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};
use url::Url;

use crate::alg::algorithm_name;
use crate::compact::{decode, split};
use crate::error::{DpopError, Error, KeyError, Part};
use crate::fingerprint::token_digest;
use crate::header::{check_alg, REFUSED_MEMBERS};
use crate::json::parse_object;
use crate::keys::{Format, Key};
use crate::limits::{MAX_DPOP_JTI_BYTES, MAX_DPOP_PROOF_BYTES};
use crate::thumbprint::jwk_thumbprint;

pub type DpopResult<T> = std::result::Result<T, DpopError>;

/// The request a proof must have been made for, and the access token it
/// accompanies.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The HTTP method as received; compared exactly, since methods are
    /// case-sensitive (RFC 9110 section 9.1).
    pub method: &'a str,
    /// The absolute URL of the request (its query and fragment are not
    /// compared).
    pub url: &'a str,
    /// The access token presented with the proof, whose hash the proof must
    /// carry as `ath`; None when there is none (a proof sent to a token
    /// endpoint), and then `ath` is not checked.
    pub access_token: Option<&'a str>,
    /// The thumbprint the proof's key must have: the access token's
    /// `cnf.jkt`, from its verified claims, or a refresh token's session
    /// key. None accepts any key (a login, where the proof tells which key
    /// to bind the session to); `Proof::jkt` says which it was.
    pub jkt: Option<&'a str>,
}

/// Limits on a proof. `Default` gives RFC 9449's spirit: a proof is made
/// just before its request, so it is accepted for a minute, and a clock a
/// few seconds ahead of the server's is forgiven.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofPolicy {
    /// Longest proof accepted, in bytes.
    pub max_bytes: usize,
    /// Seconds an `iat` may lie in the past.
    pub max_age: i64,
    /// Seconds an `iat` may lie in the future.
    pub max_ahead: i64,
}

impl Default for ProofPolicy {
    fn default() -> ProofPolicy {
        ProofPolicy {
            max_bytes: MAX_DPOP_PROOF_BYTES,
            max_age: 60,
            max_ahead: 5,
        }
    }
}

/// An accepted proof: what the caller records to refuse its replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The RFC 7638 thumbprint of the proof's key (equal to the request's).
    pub jkt: String,
    pub jti: String,
    /// Unix seconds; the record can be dropped once `iat + max_age` is past.
    pub iat: i64,
}

/// Verifies `proof` for `request` under `policy` at `now` (Unix seconds).
pub fn verify_proof(
    proof: &str,
    request: &Request<'_>,
    policy: &ProofPolicy,
    now: i64,
) -> DpopResult<Proof> {
    // The caller's URL first: a bad argument is the caller's error, and is
    // reported as such whatever the proof.
    let request_url = Target::parse(request.url).ok_or(DpopError::BadRequestUrl)?;

    // 1. Well formed, within the size limit.
    let seg = split(proof, policy.max_bytes).map_err(malformed)?;
    let header = decode(seg.header, Part::Header).map_err(malformed)?;
    let header = parse_object(&header, Part::Header).map_err(malformed)?;
    let payload = decode(seg.payload, Part::Payload).map_err(malformed)?;

    // 2 to 4. typ, alg and jwk.
    let (alg, jwk) = check_header(&header)?;
    // After the header, so that an unsecured proof (no signature) is named
    // as such rather than as bad base64.
    let signature = decode(seg.signature, Part::Signature).map_err(malformed)?;

    // 5. The signature, with the key the proof carries.
    let key = proof_key(alg, jwk)?;
    if !key.verify(seg.signing_input.as_bytes(), &signature) {
        return Err(DpopError::BadSignature);
    }

    // 6. The claims, read only from a proof known to be signed.
    let claims = parse_object(&payload, Part::Payload).map_err(malformed)?;
    let jti = check_jti(&claims)?;
    let htm = string_claim(&claims, "htm")?;
    if htm != request.method {
        return Err(DpopError::MethodMismatch {
            proof: htm.to_string(),
            request: request.method.to_string(),
        });
    }
    let htu = string_claim(&claims, "htu")?;
    let htu = Target::parse(htu).ok_or(DpopError::BadHtu)?;
    if let Some(component) = htu.differs_from(&request_url) {
        return Err(DpopError::UrlMismatch(component));
    }
    let iat = check_iat(&claims, policy, now)?;
    if let Some(token) = request.access_token {
        let ath = string_claim(&claims, "ath")?;
        let expected = access_token_hash(token);
        if verify_slices_are_equal(ath.as_bytes(), expected.as_bytes()).is_err() {
            return Err(DpopError::AthMismatch);
        }
    }

    // 7. The key is the one the access token is bound to. Constant time: the
    // expected value is not secret, but nothing is lost by not leaking how
    // much of it a forged key matched.
    let jkt = jwk_thumbprint(jwk).ok_or(DpopError::BadJwk(KeyError::JwkMembers))?;
    if let Some(expected) = request.jkt {
        if verify_slices_are_equal(jkt.as_bytes(), expected.as_bytes()).is_err() {
            return Err(DpopError::JktMismatch);
        }
    }
    Ok(Proof {
        jkt,
        jti: jti.to_string(),
        iat,
    })
}

/// The `ath` a proof for `token` carries: base64url (unpadded) of the
/// SHA-256 of the token's text (RFC 9449 section 4.2).
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(token_digest(token))
}

/// A token-level refusal of the proof's encoding, as a proof refusal.
fn malformed(e: Error) -> DpopError {
    match e {
        Error::Empty => DpopError::Empty,
        Error::TooLarge { size, limit } => DpopError::TooLarge { size, limit },
        Error::Base64(part) => DpopError::Base64(part),
        Error::Json(part, _) => DpopError::Json(part, "a syntax error"),
        Error::NotObject(part) => DpopError::Json(part, "a value other than an object at its top"),
        Error::DuplicateKey(part) => DpopError::Json(part, "a duplicate member name"),
        Error::NulCharacter(part) => DpopError::Json(part, "a NUL character"),
        Error::TooDeep(part) => DpopError::Json(part, "too deep a nesting"),
        // SegmentCount and BadCharacter; `split` and `decode` raise nothing
        // else.
        _ => DpopError::NotCompact,
    }
}

/// Members that only a private or symmetric JWK has (RFC 7518 section 6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Checks `typ`, `alg` and `jwk` (RFC 9449 section 4.3, points 4 to 7);
/// returns the algorithm and the public JWK.
fn check_header(header: &Map<String, Value>) -> DpopResult<(Algorithm, &Map<String, Value>)> {
    // Exactly, not case-insensitively: RFC 9449 section 4.2 fixes the value,
    // and explicit typing is what keeps a proof from being taken for any
    // other JWT signed by the same key (RFC 8725 section 3.11).
    match header.get("typ") {
        Some(Value::String(t)) if t == "dpop+jwt" => {}
        Some(Value::String(t)) => return Err(DpopError::BadTyp(Some(t.clone()))),
        Some(_) => return Err(DpopError::HeaderType("typ")),
        None => return Err(DpopError::BadTyp(None)),
    }
    // Members that change how a JWS must be processed (RFC 7515 section
    // 4.1.11, RFC 7797) or make it a JWE: refused as in a token's header.
    if let Some(member) = REFUSED_MEMBERS.iter().find(|m| header.contains_key(**m)) {
        return Err(DpopError::UnsupportedHeader(member));
    }
    // The token header's own rules for `alg`, with the proof's errors.
    let alg = check_alg(header.get("alg")).map_err(|e| match e {
        Error::UnsecuredToken => DpopError::Unsecured,
        Error::UnsupportedAlg(name) => DpopError::UnsupportedAlg(name),
        _ => DpopError::HeaderType("alg"),
    })?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(DpopError::SymmetricAlg(algorithm_name(alg)));
    }
    let jwk = match header.get("jwk") {
        Some(Value::Object(jwk)) => jwk,
        Some(_) => return Err(DpopError::HeaderType("jwk")),
        None => return Err(DpopError::NoJwk),
    };
    // oct first: its "k" is a private member too, but the clearer refusal
    // is that a symmetric key can prove nothing about a holder.
    if jwk.get("kty").and_then(Value::as_str) == Some("oct") {
        return Err(DpopError::SymmetricJwk);
    }
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(DpopError::PrivateJwk(member));
    }
    let (kty, crv, needs) = key_type(alg);
    let text = |m: &str| jwk.get(m).and_then(Value::as_str);
    if text("kty") != Some(kty) || (crv.is_some() && text("crv") != crv) {
        return Err(DpopError::JwkMismatch(needs));
    }
    Ok((alg, jwk))
}

/// The key type (and curve) an asymmetric algorithm needs, and how the
/// refusal says it.
fn key_type(alg: Algorithm) -> (&'static str, Option<&'static str>, &'static str) {
    match alg {
        Algorithm::ES256 => ("EC", Some("P-256"), "an EC key on P-256"),
        Algorithm::ES384 => ("EC", Some("P-384"), "an EC key on P-384"),
        Algorithm::EdDSA => ("OKP", Some("Ed25519"), "an OKP key on Ed25519"),
        _ => ("RSA", None, "an RSA key"),
    }
}

/// The proof's key as a verification key: the same parsing and checks as a
/// key given to the key store (RSA of at least 2048 bits, points on their
/// curve, a JWK `alg` if any equal to the header's, `use` if any "sig").
fn proof_key(alg: Algorithm, jwk: &Map<String, Value>) -> DpopResult<Key> {
    let material = Value::Object(jwk.clone()).to_string();
    Key::new("dpop", algorithm_name(alg), Format::Jwk, &material).map_err(|e| match e {
        Error::Key(k) => DpopError::BadJwk(k),
        _ => DpopError::BadJwk(KeyError::JwkMembers),
    })
}

fn string_claim<'a>(claims: &'a Map<String, Value>, name: &'static str) -> DpopResult<&'a str> {
    match claims.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(DpopError::ClaimType {
            claim: name,
            expected: "a string",
        }),
        None => Err(DpopError::MissingClaim(name)),
    }
}

/// `jti`: the caller stores it to refuse replays, so it must exist and be of
/// a bounded size.
fn check_jti(claims: &Map<String, Value>) -> DpopResult<&str> {
    let jti = string_claim(claims, "jti")?;
    if jti.is_empty() || jti.len() > MAX_DPOP_JTI_BYTES {
        return Err(DpopError::BadJti(jti.len()));
    }
    Ok(jti)
}

/// `iat`: an integer (as for a token's time claims, floats are refused
/// rather than rounded), inside [now - max_age, now + max_ahead].
fn check_iat(claims: &Map<String, Value>, policy: &ProofPolicy, now: i64) -> DpopResult<i64> {
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n.as_i64().ok_or(DpopError::ClaimType {
            claim: "iat",
            expected: "an integer NumericDate",
        })?,
        Some(_) => {
            return Err(DpopError::ClaimType {
                claim: "iat",
                expected: "an integer NumericDate",
            })
        }
        None => return Err(DpopError::MissingClaim("iat")),
    };
    if iat < now.saturating_sub(policy.max_age) {
        return Err(DpopError::IatTooOld {
            iat,
            now,
            max_age: policy.max_age,
        });
    }
    if iat > now.saturating_add(policy.max_ahead) {
        return Err(DpopError::IatInFuture {
            iat,
            now,
            max_ahead: policy.max_ahead,
        });
    }
    Ok(iat)
}

/// An http(s) URL reduced to what `htu` is compared on (RFC 9449 section
/// 4.3 point 9): normalised per RFC 3986 sections 6.2.2 and 6.2.3, query and
/// fragment dropped.
///
/// The `url` crate (WHATWG parsing) does most of it: scheme and host in
/// lower case, the default port dropped, an empty path made "/", dot
/// segments removed (also when spelled "%2e"). It keeps percent-encodings
/// as written, so `percent_normalised` then decodes those of unreserved
/// characters and writes the others' hex in upper case.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    scheme: String,
    userinfo: String,
    host: String,
    /// None for the scheme's default port.
    port: Option<u16>,
    path: String,
}

impl Target {
    /// None unless `text` is an absolute http or https URL whose part
    /// before any query or fragment is written with RFC 3986 characters only
    /// and has "//" and an authority after the scheme. WHATWG parsing also
    /// accepts spellings RFC 3986 does not (spaces and tabs removed, '\'
    /// read as '/', non-ASCII, "https:host/" and "https:///host/" read as
    /// "https://host/"); a URL that needs them is refused rather than
    /// guessed at. The query and fragment are cut off first, unread: they
    /// are not compared, and clients put characters in queries that RFC
    /// 3986 does not allow ('|', '^', '{').
    fn parse(text: &str) -> Option<Target> {
        let text = &text[..text.find(['?', '#']).unwrap_or(text.len())];
        if !text.bytes().all(is_uri_byte) {
            return None;
        }
        let (_, after_scheme) = text.split_once("://")?;
        if after_scheme.is_empty() || after_scheme.starts_with('/') {
            return None;
        }
        let url = Url::parse(text).ok()?;
        if !matches!(url.scheme(), "http" | "https") {
            return None;
        }
        Some(Target {
            scheme: url.scheme().to_string(),
            userinfo: format!(
                "{}:{}",
                percent_normalised(url.username()),
                percent_normalised(url.password().unwrap_or(""))
            ),
            host: url.host_str()?.to_string(),
            port: url.port(),
            path: percent_normalised(url.path()),
        })
    }

    /// The first component in which two targets differ, as named in the
    /// refusal's detail.
    fn differs_from(&self, other: &Target) -> Option<&'static str> {
        if self.scheme != other.scheme {
            Some("scheme")
        } else if self.userinfo != other.userinfo {
            Some("user information")
        } else if self.host != other.host {
            Some("host")
        } else if self.port != other.port {
            Some("port")
        } else if self.path != other.path {
            Some("path")
        } else {
            None
        }
    }
}

/// The characters of an RFC 3986 URI: unreserved, reserved, and '%'.
fn is_uri_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b)
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~".contains(&b)
}

/// RFC 3986 section 6.2.2.2 on ASCII text: "%7e" becomes "~", "%2f" becomes
/// "%2F". A '%' not followed by two hex digits is kept as it is.
fn percent_normalised(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |j: usize| bytes.get(j).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                let b = (hi * 16 + lo) as u8;
                if is_unreserved(b) {
                    out.push(b as char);
                } else {
                    out.push_str(&format!("%{b:02X}"));
                }
                i += 3;
            }
            (b, _, _) => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    };
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;
    const METHOD: &str = "POST";
    const URL: &str = "https://server.example.com/token";
    const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A fresh P-256 key and its public JWK.
    fn es256_key() -> (EcdsaKeyPair, Value) {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        // The public key is the uncompressed point: 0x04, x, y.
        let point = pair.public_key().as_ref().to_vec();
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64(&point[1..33]),
            "y": b64(&point[33..65]),
        });
        (pair, jwk)
    }

    fn thumbprint_of(jwk: &Value) -> String {
        jwk_thumbprint(jwk.as_object().unwrap()).unwrap()
    }

    /// Valid claims for `URL`, `METHOD` and `TOKEN` at `NOW`.
    fn claims() -> Value {
        json!({
            "jti": "e1j3V_bKic8-LAEB",
            "htm": METHOD,
            "htu": URL,
            "iat": NOW,
            "ath": b64(&token_digest(TOKEN)),
        })
    }

    fn es256_proof(pair: &EcdsaKeyPair, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64(sig.as_ref()))
    }

    /// A key, and a function making a proof with it from a header and
    /// claims (the header's jwk defaulting to the key's).
    struct Signer {
        pair: EcdsaKeyPair,
        jwk: Value,
    }

    impl Signer {
        fn new() -> Signer {
            let (pair, jwk) = es256_key();
            Signer { pair, jwk }
        }
        fn header(&self) -> Value {
            json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk})
        }
        fn sign(&self, header: &Value, claims: &Value) -> String {
            es256_proof(&self.pair, header, claims)
        }
        fn proof(&self, claims: &Value) -> String {
            self.sign(&self.header(), claims)
        }
        fn jkt(&self) -> String {
            thumbprint_of(&self.jwk)
        }
        fn check(&self, proof: &str) -> DpopResult<Proof> {
            let jkt = self.jkt();
            let request = Request {
                method: METHOD,
                url: URL,
                access_token: Some(TOKEN),
                jkt: Some(&jkt),
            };
            verify_proof(proof, &request, &ProofPolicy::default(), NOW)
        }
    }

    fn with(mut value: Value, member: &str, v: Value) -> Value {
        value[member] = v;
        value
    }

    fn without(mut value: Value, member: &str) -> Value {
        value.as_object_mut().unwrap().remove(member);
        value
    }

    #[test]
    fn without_an_expected_key_any_key_is_accepted_and_named() {
        // A login: no token yet, the proof says which key to bind to.
        let (s, other) = (Signer::new(), Signer::new());
        let request = Request {
            method: METHOD,
            url: URL,
            access_token: None,
            jkt: None,
        };
        let claims = without(claims(), "ath");
        for signer in [&s, &other] {
            let proof = verify_proof(
                &signer.proof(&claims),
                &request,
                &ProofPolicy::default(),
                NOW,
            );
            assert_eq!(proof.unwrap().jkt, signer.jkt());
        }
        // Other checks still hold: the method, for one.
        let get = Request {
            method: "GET",
            ..request
        };
        let e = verify_proof(&s.proof(&claims), &get, &ProofPolicy::default(), NOW);
        assert!(matches!(e, Err(DpopError::MethodMismatch { .. })), "{e:?}");
    }

    #[test]
    fn a_valid_proof_is_accepted_and_returns_what_to_record() {
        let s = Signer::new();
        let proof = s.check(&s.proof(&claims())).unwrap();
        assert_eq!(
            proof,
            Proof {
                jkt: s.jkt(),
                jti: "e1j3V_bKic8-LAEB".into(),
                iat: NOW,
            }
        );
    }

    #[test]
    fn eddsa_proof_is_accepted() {
        let rng = SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
        let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        let proof = format!("{input}.{}", b64(pair.sign(input.as_bytes()).as_ref()));
        let jkt = thumbprint_of(&jwk);
        let request = Request {
            method: METHOD,
            url: URL,
            access_token: Some(TOKEN),
            jkt: Some(&jkt),
        };
        let policy = ProofPolicy::default();
        assert_eq!(
            verify_proof(&proof, &request, &policy, NOW).unwrap().jkt,
            jkt
        );
        // And the same proof with the alg of another key type is refused.
        let header = with(header, "alg", json!("ES256"));
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims().to_string().as_bytes())
        );
        let proof = format!("{input}.{}", b64(pair.sign(input.as_bytes()).as_ref()));
        assert_eq!(
            verify_proof(&proof, &request, &policy, NOW).unwrap_err(),
            DpopError::JwkMismatch("an EC key on P-256")
        );
    }

    #[test]
    fn structure_and_size() {
        let s = Signer::new();
        assert_eq!(s.check("").unwrap_err(), DpopError::Empty);
        assert_eq!(s.check("a.b").unwrap_err(), DpopError::NotCompact);
        assert_eq!(s.check("a b.c.d").unwrap_err(), DpopError::NotCompact);
        let proof = s.proof(&claims());
        let padded = format!("{proof}=");
        assert_eq!(s.check(&padded).unwrap_err(), DpopError::NotCompact);
        let big = s.proof(&with(
            claims(),
            "pad",
            json!("x".repeat(MAX_DPOP_PROOF_BYTES)),
        ));
        assert!(matches!(
            s.check(&big),
            Err(DpopError::TooLarge {
                limit: MAX_DPOP_PROOF_BYTES,
                ..
            })
        ));
        let dup = format!(
            "{}.{}.AA",
            b64(br#"{"typ":"dpop+jwt","typ":"dpop+jwt"}"#),
            b64(b"{}")
        );
        assert_eq!(
            s.check(&dup).unwrap_err(),
            DpopError::Json(Part::Header, "a duplicate member name")
        );
        // A duplicate inside the jwk is caught too: the key verified must be
        // the key thumbprinted, and a last-one-wins parser could differ.
        let header =
            s.header()
                .to_string()
                .replacen(r#""kty":"EC""#, r#""kty":"EC","kty":"RSA""#, 1);
        let dup = format!("{}.{}.AA", b64(header.as_bytes()), b64(b"{}"));
        assert_eq!(
            s.check(&dup).unwrap_err(),
            DpopError::Json(Part::Header, "a duplicate member name")
        );
        for e in [DpopError::Empty, DpopError::NotCompact] {
            assert_eq!(e.class(), crate::Class::Malformed);
        }
    }

    #[test]
    fn typ_must_be_exactly_dpop_jwt() {
        let s = Signer::new();
        for typ in ["JWT", "DPoP+JWT", "dpop+jwt ", "application/dpop+jwt"] {
            let proof = s.sign(&with(s.header(), "typ", json!(typ)), &claims());
            assert_eq!(
                s.check(&proof).unwrap_err(),
                DpopError::BadTyp(Some(typ.into()))
            );
        }
        let proof = s.sign(&without(s.header(), "typ"), &claims());
        assert_eq!(s.check(&proof).unwrap_err(), DpopError::BadTyp(None));
        let proof = s.sign(&with(s.header(), "typ", json!(1)), &claims());
        assert_eq!(s.check(&proof).unwrap_err(), DpopError::HeaderType("typ"));
    }

    #[test]
    fn alg_must_be_asymmetric_and_supported() {
        let s = Signer::new();
        for none in ["none", "None", "NONE"] {
            let header = with(s.header(), "alg", json!(none));
            let proof = format!(
                "{}.{}.",
                b64(header.to_string().as_bytes()),
                b64(claims().to_string().as_bytes())
            );
            assert_eq!(s.check(&proof).unwrap_err(), DpopError::Unsecured, "{none}");
        }
        for hs in ["HS256", "HS384", "HS512"] {
            let proof = s.sign(&with(s.header(), "alg", json!(hs)), &claims());
            assert!(matches!(s.check(&proof), Err(DpopError::SymmetricAlg(a)) if a == hs));
        }
        for other in ["ES512", "es256", "RSA-OAEP", ""] {
            let proof = s.sign(&with(s.header(), "alg", json!(other)), &claims());
            assert_eq!(
                s.check(&proof).unwrap_err(),
                DpopError::UnsupportedAlg(other.into())
            );
        }
        let proof = s.sign(&without(s.header(), "alg"), &claims());
        assert_eq!(
            s.check(&proof).unwrap_err(),
            DpopError::UnsupportedAlg(String::new())
        );
        let proof = s.sign(&with(s.header(), "crit", json!(["exp"])), &claims());
        assert_eq!(
            s.check(&proof).unwrap_err(),
            DpopError::UnsupportedHeader("crit")
        );
    }

    #[test]
    fn jwk_must_be_a_public_key_of_the_algorithm() {
        let s = Signer::new();
        let proof = s.sign(&without(s.header(), "jwk"), &claims());
        assert_eq!(s.check(&proof).unwrap_err(), DpopError::NoJwk);
        let proof = s.sign(&with(s.header(), "jwk", json!("key")), &claims());
        assert_eq!(s.check(&proof).unwrap_err(), DpopError::HeaderType("jwk"));
        // Listed here, not taken from PRIVATE_MEMBERS, so that a member
        // dropped from that list fails this test.
        for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            let jwk = with(s.jwk.clone(), member, json!("AAAA"));
            let proof = s.sign(&with(s.header(), "jwk", jwk), &claims());
            assert_eq!(
                s.check(&proof).unwrap_err(),
                DpopError::PrivateJwk(member),
                "{member}"
            );
        }
        let oct = json!({"kty": "oct", "k": b64(&[7; 32])});
        let proof = s.sign(&with(s.header(), "jwk", oct), &claims());
        assert_eq!(s.check(&proof).unwrap_err(), DpopError::SymmetricJwk);
        for (member, value) in [("crv", "P-384"), ("kty", "RSA"), ("kty", "OKP")] {
            let jwk = with(s.jwk.clone(), member, json!(value));
            let proof = s.sign(&with(s.header(), "jwk", jwk), &claims());
            assert_eq!(
                s.check(&proof).unwrap_err(),
                DpopError::JwkMismatch("an EC key on P-256"),
                "{member} {value}"
            );
        }
        // A jwk of the right type that the key store would refuse: a short
        // coordinate, or a point off the curve (aws-lc refuses it when the
        // key is parsed, before any signature is looked at).
        let jwk = with(s.jwk.clone(), "x", json!(b64(&[1; 31])));
        let proof = s.sign(&with(s.header(), "jwk", jwk), &claims());
        assert_eq!(
            s.check(&proof).unwrap_err(),
            DpopError::BadJwk(KeyError::JwkCoordinateLength)
        );
        let jwk = with(s.jwk.clone(), "x", json!(b64(&[1; 32])));
        let proof = s.sign(&with(s.header(), "jwk", jwk), &claims());
        assert!(matches!(
            s.check(&proof),
            Err(DpopError::BadJwk(KeyError::CannotVerify { .. }))
        ));
        // The jwk's own alg, if any, must be the header's.
        let jwk = with(s.jwk.clone(), "alg", json!("ES384"));
        let proof = s.sign(&with(s.header(), "jwk", jwk), &claims());
        assert!(matches!(
            s.check(&proof),
            Err(DpopError::BadJwk(KeyError::JwkAlgMismatch(_)))
        ));
        let jwk = with(s.jwk.clone(), "alg", json!("ES256"));
        let proof = s.sign(&with(s.header(), "jwk", jwk), &claims());
        assert!(s.check(&proof).is_ok());
        let jwk = with(s.jwk.clone(), "use", json!("enc"));
        let proof = s.sign(&with(s.header(), "jwk", jwk), &claims());
        assert_eq!(
            s.check(&proof).unwrap_err(),
            DpopError::BadJwk(KeyError::JwkNotForSignature)
        );
    }

    #[test]
    fn signature_must_verify_with_the_header_key() {
        let s = Signer::new();
        let other = Signer::new();
        // Signed by another key than the one in the header.
        let proof = other.sign(&s.header(), &claims());
        assert_eq!(s.check(&proof).unwrap_err(), DpopError::BadSignature);
        // A claim changed after signing.
        let proof = s.proof(&claims());
        let (input, sig) = proof.rsplit_once('.').unwrap();
        let (header, _) = input.split_once('.').unwrap();
        let changed = with(claims(), "htm", json!("GET"));
        let forged = format!("{header}.{}.{sig}", b64(changed.to_string().as_bytes()));
        assert_eq!(s.check(&forged).unwrap_err(), DpopError::BadSignature);
    }

    #[test]
    fn jti_is_required_and_bounded() {
        let s = Signer::new();
        let check = |c: Value| s.check(&s.proof(&c));
        assert_eq!(
            check(without(claims(), "jti")).unwrap_err(),
            DpopError::MissingClaim("jti")
        );
        assert_eq!(
            check(with(claims(), "jti", json!(""))).unwrap_err(),
            DpopError::BadJti(0)
        );
        assert_eq!(
            check(with(
                claims(),
                "jti",
                json!("j".repeat(MAX_DPOP_JTI_BYTES + 1))
            ))
            .unwrap_err(),
            DpopError::BadJti(MAX_DPOP_JTI_BYTES + 1)
        );
        assert!(check(with(claims(), "jti", json!("j".repeat(MAX_DPOP_JTI_BYTES)))).is_ok());
        assert!(matches!(
            check(with(claims(), "jti", json!(12))),
            Err(DpopError::ClaimType { claim: "jti", .. })
        ));
    }

    #[test]
    fn htm_must_be_the_method_exactly() {
        let s = Signer::new();
        let check = |c: Value| s.check(&s.proof(&c));
        assert_eq!(
            check(with(claims(), "htm", json!("post"))).unwrap_err(),
            DpopError::MethodMismatch {
                proof: "post".into(),
                request: "POST".into()
            }
        );
        assert!(matches!(
            check(with(claims(), "htm", json!("GET"))),
            Err(DpopError::MethodMismatch { .. })
        ));
        assert_eq!(
            check(without(claims(), "htm")).unwrap_err(),
            DpopError::MissingClaim("htm")
        );
    }

    /// Checks a proof whose htu is `htu` against a request for `url`.
    fn htu_check(htu: &str, url: &str) -> DpopResult<Proof> {
        let s = Signer::new();
        let jkt = s.jkt();
        let request = Request {
            method: METHOD,
            url,
            access_token: Some(TOKEN),
            jkt: Some(&jkt),
        };
        let proof = s.proof(&with(claims(), "htu", json!(htu)));
        verify_proof(&proof, &request, &ProofPolicy::default(), NOW)
    }

    #[test]
    fn htu_matches_after_normalisation() {
        for (htu, url) in [
            ("HTTPS://Server.Example.COM/token", URL),
            ("https://server.example.com:443/token", URL),
            ("https://server.example.com:/token", URL),
            (
                "http://server.example.com:80/token",
                "http://server.example.com/token",
            ),
            ("https://server.example.com", "https://server.example.com/"),
            (
                "https://server.example.com/a/./b/../token",
                "https://server.example.com/a/token",
            ),
            (
                "https://server.example.com/a/%2e%2E/token",
                "https://server.example.com/token",
            ),
            (
                "https://server.example.com/%7euser/%41",
                "https://server.example.com/~user/A",
            ),
            (
                "https://server.example.com/a%2fb%c3%a9",
                "https://server.example.com/a%2Fb%C3%A9",
            ),
            ("https://server.example.com/token?a=1", URL),
            (
                "https://server.example.com/token#frag",
                "https://server.example.com/token?x=y#z",
            ),
            ("https://[::1]:8443/x", "https://[0:0::1]:8443/x"),
            // Whatever the query and fragment hold, they are not read.
            (
                URL,
                "https://server.example.com/token?a=b|c^d{e}%zz f#\\x y",
            ),
            ("https://server.example.com/token?\u{e9}#\u{e9}", URL),
        ] {
            assert!(
                htu_check(htu, url).is_ok(),
                "{htu} vs {url}: {:?}",
                htu_check(htu, url)
            );
        }
    }

    #[test]
    fn htu_must_name_the_same_resource() {
        for (htu, url, component) in [
            ("http://server.example.com/token", URL, "scheme"),
            (
                "https://user@server.example.com/token",
                URL,
                "user information",
            ),
            ("https://server.example.org/token", URL, "host"),
            ("https://server.example.com:8443/token", URL, "port"),
            ("https://server.example.com:80/token", URL, "port"),
            ("https://server.example.com/token/", URL, "path"),
            ("https://server.example.com/Token", URL, "path"),
            (
                "https://server.example.com/a%2Fb",
                "https://server.example.com/a/b",
                "path",
            ),
            ("https://server.example.com/other?/token", URL, "path"),
        ] {
            assert_eq!(
                htu_check(htu, url).unwrap_err(),
                DpopError::UrlMismatch(component),
                "{htu} vs {url}"
            );
        }
        for bad in [
            "/token",
            "ftp://server.example.com/token",
            "https://server example.com/",
            "https://server.example.com\\token",
            "https://server.example.com/caf\u{e9}",
            "https:server.example.com/token",
            "https:/server.example.com/token",
            "https:///server.example.com/token",
            "https://",
        ] {
            assert_eq!(htu_check(bad, URL).unwrap_err(), DpopError::BadHtu, "{bad}");
            assert_eq!(
                htu_check(URL, bad).unwrap_err(),
                DpopError::BadRequestUrl,
                "{bad}"
            );
        }
    }

    #[test]
    fn iat_must_be_within_the_window() {
        let s = Signer::new();
        let check = |iat: Value| s.check(&s.proof(&with(claims(), "iat", iat)));
        assert!(check(json!(NOW - 60)).is_ok());
        assert!(check(json!(NOW + 5)).is_ok());
        assert_eq!(
            check(json!(NOW - 61)).unwrap_err(),
            DpopError::IatTooOld {
                iat: NOW - 61,
                now: NOW,
                max_age: 60
            }
        );
        assert_eq!(
            check(json!(NOW + 6)).unwrap_err(),
            DpopError::IatInFuture {
                iat: NOW + 6,
                now: NOW,
                max_ahead: 5
            }
        );
        for bad in [json!(1.8e9), json!("1800000000"), json!(null)] {
            assert!(matches!(
                check(bad),
                Err(DpopError::ClaimType { claim: "iat", .. })
            ));
        }
        assert_eq!(
            s.check(&s.proof(&without(claims(), "iat"))).unwrap_err(),
            DpopError::MissingClaim("iat")
        );
        // The window is the policy's.
        let jkt = s.jkt();
        let request = Request {
            method: METHOD,
            url: URL,
            access_token: Some(TOKEN),
            jkt: Some(&jkt),
        };
        let narrow = ProofPolicy {
            max_age: 10,
            max_ahead: 0,
            ..ProofPolicy::default()
        };
        let proof = s.proof(&with(claims(), "iat", json!(NOW - 11)));
        assert!(matches!(
            verify_proof(&proof, &request, &narrow, NOW),
            Err(DpopError::IatTooOld { .. })
        ));
        let proof = s.proof(&with(claims(), "iat", json!(NOW + 1)));
        assert!(matches!(
            verify_proof(&proof, &request, &narrow, NOW),
            Err(DpopError::IatInFuture { .. })
        ));
    }

    #[test]
    fn ath_must_hash_the_access_token() {
        let s = Signer::new();
        let check = |c: Value| s.check(&s.proof(&c));
        assert_eq!(
            check(without(claims(), "ath")).unwrap_err(),
            DpopError::MissingClaim("ath")
        );
        let other = b64(&token_digest("another.access.token"));
        assert_eq!(
            check(with(claims(), "ath", json!(other))).unwrap_err(),
            DpopError::AthMismatch
        );
        // The right hash, padded.
        let padded = format!("{}=", b64(&token_digest(TOKEN)));
        assert_eq!(
            check(with(claims(), "ath", json!(padded))).unwrap_err(),
            DpopError::AthMismatch
        );
        // Without an access token, ath is not required.
        let jkt = s.jkt();
        let request = Request {
            method: METHOD,
            url: URL,
            access_token: None,
            jkt: Some(&jkt),
        };
        let proof = s.proof(&without(claims(), "ath"));
        assert!(verify_proof(&proof, &request, &ProofPolicy::default(), NOW).is_ok());
    }

    #[test]
    fn key_must_be_the_one_the_token_is_bound_to() {
        let s = Signer::new();
        let other = Signer::new();
        let proof = other.proof(&claims());
        // Valid in itself, signed by a key the token is not bound to.
        assert_eq!(s.check(&proof).unwrap_err(), DpopError::JktMismatch);
        let jkt = other.jkt();
        let request = Request {
            method: METHOD,
            url: URL,
            access_token: Some(TOKEN),
            jkt: Some(&jkt[1..]),
        };
        assert_eq!(
            verify_proof(&proof, &request, &ProofPolicy::default(), NOW).unwrap_err(),
            DpopError::JktMismatch
        );
    }

    /// No refusal's text carries the proof, the token, the key or the URL's
    /// query.
    #[test]
    fn refusals_do_not_echo_secrets() {
        let s = Signer::new();
        let url = "https://server.example.com/token?secret=s3cr3t";
        let jkt = s.jkt();
        let request = Request {
            method: METHOD,
            url,
            access_token: Some(TOKEN),
            jkt: Some(&jkt),
        };
        let x = s.jwk["x"].as_str().unwrap().to_string();
        for c in [
            with(
                claims(),
                "htu",
                json!("https://server.example.com/other?secret=s3cr3t"),
            ),
            with(claims(), "htm", json!("GET")),
            with(claims(), "ath", json!("x")),
            with(claims(), "iat", json!(0)),
        ] {
            let proof = s.proof(&c);
            let e = verify_proof(&proof, &request, &ProofPolicy::default(), NOW).unwrap_err();
            let text = format!("{e} {}", e.hint().unwrap_or(""));
            for secret in ["s3cr3t", TOKEN, &proof[..20], &x[..10], &jkt[..10]] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }

    #[test]
    fn percent_normalisation() {
        assert_eq!(
            percent_normalised("/%7e%7E%41%2f%2F%c3%A9"),
            "/~~A%2F%2F%C3%A9"
        );
        assert_eq!(percent_normalised("/a%"), "/a%");
        assert_eq!(percent_normalised("/a%4"), "/a%4");
        assert_eq!(percent_normalised("/a%zz"), "/a%zz");
    }
}
