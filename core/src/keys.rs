//! Verification keys: what may be stored, and choosing the one for a token.
//!
//! Every key is bound to exactly one algorithm when it is stored, so a token
//! can never pick how its key is used (the HS256-with-an-RSA-public-key
//! confusion). Only public keys are kept for RS/PS/ES/EdDSA; HMAC secrets
//! must be at least as long as their hash (RFC 7518 section 3.2).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::{aws_lc::DEFAULT_PROVIDER, JwtVerifier};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::error::{shown, Error, Part, Result};
use crate::header::{algorithm, algorithm_name};
use crate::json::parse_object;

/// Smallest RSA modulus accepted, in bits.
pub const MIN_RSA_BITS: usize = 2048;
/// Longest kid accepted, in bytes.
pub const MAX_KID_BYTES: usize = 256;

/// How key material is written in the key table's `format` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// HMAC secret, stored as unpadded base64url.
    Secret,
    /// SubjectPublicKeyInfo (or PKCS#1 RSA) public key in PEM.
    Pem,
    /// A public JWK (or an `oct` JWK for HMAC) as JSON text.
    Jwk,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Secret => "secret",
            Format::Pem => "pem",
            Format::Jwk => "jwk",
        }
    }

    pub fn from_name(name: &str) -> Result<Format> {
        match name {
            "secret" => Ok(Format::Secret),
            "pem" => Ok(Format::Pem),
            "jwk" => Ok(Format::Jwk),
            _ => Err(Error::Key(format!("unknown key format {}", shown(name)))),
        }
    }
}

/// A usable verification key.
pub struct Key {
    pub kid: String,
    pub alg: Algorithm,
    pub enabled: bool,
    /// Unix seconds; tokens are refused outside [not_before, not_after).
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    verifier: Box<dyn JwtVerifier>,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &algorithm_name(self.alg))
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::Key(msg.into())
}

/// Checks a kid before it is stored or used to name a key.
pub fn check_kid(kid: &str) -> Result<()> {
    if kid.is_empty() || kid.len() > MAX_KID_BYTES || kid.chars().any(char::is_control) {
        return Err(bad(format!(
            "kid must be 1 to {MAX_KID_BYTES} bytes without control characters"
        )));
    }
    Ok(())
}

/// Parses an algorithm name as a key's algorithm.
pub fn key_algorithm(name: &str) -> Result<Algorithm> {
    algorithm(name).ok_or_else(|| {
        bad(format!(
            "algorithm {} is not one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA",
            shown(name)
        ))
    })
}

fn hash_bytes(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

fn check_secret(alg: Algorithm, secret: &[u8]) -> Result<()> {
    if !is_hmac(alg) {
        return Err(bad(format!(
            "a secret can only be an HMAC key, not {}",
            algorithm_name(alg)
        )));
    }
    let min = hash_bytes(alg);
    if secret.len() < min {
        return Err(bad(format!(
            "an {} secret must be at least {min} bytes, this one has {}",
            algorithm_name(alg),
            secret.len()
        )));
    }
    let text = String::from_utf8_lossy(secret);
    if text.contains("-----BEGIN") || text.trim_start().starts_with('{') {
        return Err(bad(
            "this secret is a PEM or JWK key; store public keys with their own algorithm",
        ));
    }
    Ok(())
}

fn check_rsa_bits(bits: usize) -> Result<()> {
    if bits < MIN_RSA_BITS {
        return Err(bad(format!(
            "RSA keys must have at least {MIN_RSA_BITS} bits, this one has {bits}"
        )));
    }
    Ok(())
}

fn curve_len(alg: Algorithm) -> Option<usize> {
    match alg {
        Algorithm::ES256 => Some(65),
        Algorithm::ES384 => Some(97),
        _ => None,
    }
}

fn from_pem(alg: Algorithm, pem: &str) -> Result<DecodingKey> {
    if pem.contains("PRIVATE KEY") {
        return Err(bad("this is a private key; store only the public key"));
    }
    let pem_err =
        |e: jsonwebtoken::errors::Error| bad(format!("not a usable public key PEM ({e})"));
    match alg {
        Algorithm::RS256
        | Algorithm::RS384
        | Algorithm::RS512
        | Algorithm::PS256
        | Algorithm::PS384
        | Algorithm::PS512 => {
            let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(pem_err)?;
            let der = key.try_get_as_bytes().map_err(pem_err)?;
            let parsed = rsa_modulus_bits(der)?;
            check_rsa_bits(parsed)?;
            Ok(key)
        }
        Algorithm::ES256 | Algorithm::ES384 => {
            let key = DecodingKey::from_ec_pem(pem.as_bytes()).map_err(pem_err)?;
            let point = key.try_get_as_bytes().map_err(pem_err)?;
            if Some(point.len()) != curve_len(alg) {
                return Err(bad(format!(
                    "this EC key is not on the curve of {}",
                    algorithm_name(alg)
                )));
            }
            Ok(key)
        }
        Algorithm::EdDSA => {
            let key = DecodingKey::from_ed_pem(pem.as_bytes()).map_err(pem_err)?;
            if key.try_get_as_bytes().map_err(pem_err)?.len() != 32 {
                return Err(bad("EdDSA keys must be Ed25519"));
            }
            Ok(key)
        }
        _ => Err(bad("an HMAC key is a secret, not a PEM")),
    }
}

fn rsa_modulus_bits(der: &[u8]) -> Result<usize> {
    let (n, _e) = (DEFAULT_PROVIDER
        .key_utils
        .rsa_pub_components_from_public_key)(der)
    .map_err(|e| bad(format!("not a usable RSA public key ({e})")))?;
    Ok(significant_bits(&n))
}

fn significant_bits(n: &[u8]) -> usize {
    let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
    match n.first() {
        None => 0,
        Some(first) => n.len() * 8 - first.leading_zeros() as usize,
    }
}

const PRIVATE_MEMBERS: [&str; 7] = ["d", "p", "q", "dp", "dq", "qi", "oth"];

fn from_jwk(alg: Algorithm, text: &str) -> Result<DecodingKey> {
    let map = parse_object(text.as_bytes(), Part::Payload)
        .map_err(|_| bad("the JWK is not a JSON object"))?;
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| map.contains_key(**m)) {
        if map.get("kty").and_then(Value::as_str) != Some("oct") {
            return Err(bad(format!(
                "the JWK carries private member \"{member}\"; store only the public key"
            )));
        }
    }
    match map.get("alg") {
        None => {}
        Some(Value::String(a)) if a == algorithm_name(alg) => {}
        Some(_) => return Err(bad(format!("the JWK's alg is not {}", algorithm_name(alg)))),
    }
    if let Some(usage) = map.get("use") {
        if usage != "sig" {
            return Err(bad("the JWK is not a signature key (use is not \"sig\")"));
        }
    }
    let jwk: Jwk = serde_json::from_value(Value::Object(map))
        .map_err(|_| bad("the JWK has missing or mistyped members"))?;
    let key_err = |e: jsonwebtoken::errors::Error| bad(format!("unusable JWK ({e})"));
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::OctetKey(_), a) if is_hmac(a) => {
            let key = DecodingKey::from_jwk(&jwk).map_err(key_err)?;
            check_secret(a, key.try_get_as_bytes().map_err(key_err)?)?;
            Ok(key)
        }
        (AlgorithmParameters::RSA(p), a)
            if curve_len(a).is_none() && !is_hmac(a) && a != Algorithm::EdDSA =>
        {
            let n = URL_SAFE_NO_PAD
                .decode(&p.n)
                .map_err(|_| bad("the JWK's n is not base64url"))?;
            check_rsa_bits(significant_bits(&n))?;
            DecodingKey::from_jwk(&jwk).map_err(key_err)
        }
        (AlgorithmParameters::EllipticCurve(p), a) if curve_len(a).is_some() => {
            let want = if a == Algorithm::ES256 {
                EllipticCurve::P256
            } else {
                EllipticCurve::P384
            };
            if p.curve != want {
                return Err(bad(format!(
                    "the JWK's curve does not match {}",
                    algorithm_name(a)
                )));
            }
            let key = DecodingKey::from_jwk(&jwk).map_err(key_err)?;
            if Some(key.try_get_as_bytes().map_err(key_err)?.len()) != curve_len(a) {
                return Err(bad("the JWK's coordinates have the wrong length"));
            }
            Ok(key)
        }
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err(bad("EdDSA keys must be Ed25519"));
            }
            let key = DecodingKey::from_jwk(&jwk).map_err(key_err)?;
            if key.try_get_as_bytes().map_err(key_err)?.len() != 32 {
                return Err(bad("the JWK's x has the wrong length"));
            }
            Ok(key)
        }
        _ => Err(bad(format!(
            "the JWK's key type cannot be used for {}",
            algorithm_name(alg)
        ))),
    }
}

impl Key {
    /// Builds a key from its stored form; the checks are the ones of import,
    /// so a row written around the key functions is still held to them.
    pub fn new(kid: &str, alg: &str, format: Format, material: &str) -> Result<Key> {
        check_kid(kid)?;
        let alg = key_algorithm(alg)?;
        let decoding = match format {
            Format::Secret => {
                let secret = URL_SAFE_NO_PAD
                    .decode(material)
                    .map_err(|_| bad("a stored secret must be unpadded base64url"))?;
                check_secret(alg, &secret)?;
                DecodingKey::from_secret(&secret)
            }
            Format::Pem => from_pem(alg, material)?,
            Format::Jwk => from_jwk(alg, material)?,
        };
        let verifier = (DEFAULT_PROVIDER.verifier_factory)(&alg, &decoding).map_err(|e| {
            bad(format!(
                "the key cannot verify {} ({e})",
                algorithm_name(alg)
            ))
        })?;
        Ok(Key {
            kid: kid.to_string(),
            alg,
            enabled: true,
            not_before: None,
            not_after: None,
            verifier,
        })
    }

    /// Whether this key may verify a token at `now` (Unix seconds).
    pub fn active_at(&self, now: i64) -> bool {
        self.enabled
            && self.not_before.is_none_or(|nb| now >= nb)
            && self.not_after.is_none_or(|na| now < na)
    }

    /// Checks `signature` over `signing_input` with this key's algorithm.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.verify_decoded(signing_input, &signature.to_vec())
    }

    /// The same, for a signature already in the `Vec` jsonwebtoken's
    /// verifier takes (the hot path: no copy).
    #[allow(clippy::ptr_arg)]
    pub fn verify_decoded(&self, signing_input: &[u8], signature: &Vec<u8>) -> bool {
        self.verifier.verify(signing_input, signature).is_ok()
    }
}

/// Encodes an HMAC secret the way the key table stores it.
pub fn encode_secret(secret: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(secret)
}

/// One key of a JWKS, reduced to its public members, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwkEntry {
    pub kid: String,
    pub alg: String,
    pub material: String,
}

/// Splits a JWKS document into storable keys. Keys marked `use: enc` are
/// skipped; every other key must carry a kid and an algorithm (given as
/// `alg`, or implied by an EC or OKP curve), and is checked by `Key::new`.
pub fn parse_jwks(text: &str) -> Result<Vec<JwkEntry>> {
    let doc = parse_object(text.as_bytes(), Part::Payload)
        .map_err(|_| bad("the JWKS is not a JSON object"))?;
    let keys = match doc.get("keys") {
        Some(Value::Array(keys)) => keys,
        _ => return Err(bad("the JWKS has no \"keys\" array")),
    };
    let mut out = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let Some(map) = key.as_object() else {
            return Err(bad(format!("key {i} of the JWKS is not an object")));
        };
        if map.get("use").and_then(Value::as_str) == Some("enc") {
            continue;
        }
        let kid = match map.get("kid") {
            Some(Value::String(k)) => k.clone(),
            _ => return Err(bad(format!("key {i} of the JWKS has no string kid"))),
        };
        let alg = match (map.get("alg"), implied_alg(map)) {
            (Some(Value::String(a)), _) => a.clone(),
            (None, Some(a)) => a.to_string(),
            _ => return Err(bad(format!("key {} of the JWKS names no alg", shown(&kid)))),
        };
        let mut public: Map<String, Value> = map.clone();
        if map.get("kty").and_then(Value::as_str) != Some("oct") {
            for m in PRIVATE_MEMBERS {
                public.remove(m);
            }
        }
        let material = Value::Object(public).to_string();
        Key::new(&kid, &alg, Format::Jwk, &material).map_err(|e| {
            bad(format!(
                "key {} of the JWKS: {}",
                shown(&kid),
                e.message().trim_start_matches("invalid key: ")
            ))
        })?;
        if out.iter().any(|e: &JwkEntry| e.kid == kid) {
            return Err(bad(format!("the JWKS has kid {} twice", shown(&kid))));
        }
        out.push(JwkEntry { kid, alg, material });
    }
    Ok(out)
}

fn implied_alg(map: &Map<String, Value>) -> Option<&'static str> {
    match (
        map.get("kty").and_then(Value::as_str),
        map.get("crv").and_then(Value::as_str),
    ) {
        (Some("EC"), Some("P-256")) => Some("ES256"),
        (Some("EC"), Some("P-384")) => Some("ES384"),
        (Some("OKP"), Some("Ed25519")) => Some("EdDSA"),
        _ => None,
    }
}

/// The keys a backend verifies with.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<Key>,
}

impl KeySet {
    pub fn new(keys: Vec<Key>) -> KeySet {
        KeySet { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token names by kid, or the only active key when it names
    /// none. Never falls back to trying other keys.
    pub fn select(&self, kid: Option<&str>, now: i64) -> Result<&Key> {
        match kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid == kid)
                    .ok_or_else(|| Error::UnknownKid(kid.to_string()))?;
                if !key.enabled {
                    Err(Error::KeyDisabled(kid.to_string()))
                } else if !key.active_at(now) {
                    Err(Error::KeyNotInWindow(kid.to_string()))
                } else {
                    Ok(key)
                }
            }
            None => {
                let mut active = self.keys.iter().filter(|k| k.active_at(now));
                match (active.next(), active.count()) {
                    (None, _) => Err(Error::NoKeys),
                    (Some(key), 0) => Ok(key),
                    (Some(_), more) => Err(Error::AmbiguousKey(more + 1)),
                }
            }
        }
    }
}
