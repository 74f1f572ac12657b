//! Verification keys: what may be stored, and choosing the one for a token.
//!
//! Every key is bound to exactly one algorithm when it is stored, so a token
//! can never pick how its key is used (the HS256-with-an-RSA-public-key
//! confusion). Only public keys are kept for RS/PS/ES/EdDSA; HMAC secrets
//! must be at least as long as their hash (RFC 7518 section 3.2).
//!
//! Uses `error`, `json`, `select` (choosing a key), and the leaves `alg`,
//! `limits` and `fingerprint`; never `header` or `cache`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use crate::alg::{algorithm, algorithm_name};
use crate::error::{Error, KeyError, Part, Result};
use crate::fingerprint::{fingerprint, Fingerprint};
use crate::json::parse_object;
use crate::select::{KeyRing, Refusals, Selectable};
use crate::verifier::Verifier;
// The limits live in the leaf `limits` (error messages quote them);
// re-exported because callers know them by this path.
pub use crate::limits::{MAX_KID_BYTES, MAX_RSA_BITS, MIN_RSA_BITS};

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
            _ => Err(KeyError::UnknownFormat(name.to_string()).into()),
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
    /// Identifies the key material exactly (kid, algorithm, format and
    /// material, and the issuer it is bound to), so that a verification
    /// shared by another backend is used only while this backend holds the
    /// very key it was made with.
    pub fingerprint: Fingerprint,
    /// The only issuer whose tokens this key verifies, when it was fetched
    /// from that issuer (`bind_issuer`); None: whatever the policy accepts.
    pub issuer: Option<String>,
    verifier: Verifier,
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

/// The key functions' own result: the specific refusal, which the public
/// functions wrap as `Error::Key`.
type KeyResult<T> = std::result::Result<T, KeyError>;

/// Checks a kid before it is stored or used to name a key.
pub fn check_kid(kid: &str) -> Result<()> {
    Ok(kid_ok(kid)?)
}

fn kid_ok(kid: &str) -> KeyResult<()> {
    if kid.is_empty() || kid.len() > MAX_KID_BYTES || kid.chars().any(char::is_control) {
        return Err(KeyError::BadKid);
    }
    Ok(())
}

/// Parses an algorithm name as a key's algorithm.
pub fn key_algorithm(name: &str) -> Result<Algorithm> {
    Ok(key_alg(name)?)
}

fn key_alg(name: &str) -> KeyResult<Algorithm> {
    algorithm(name).ok_or_else(|| KeyError::UnknownAlg(name.to_string()))
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

fn check_secret(alg: Algorithm, secret: &[u8]) -> KeyResult<()> {
    if !is_hmac(alg) {
        return Err(KeyError::SecretNotHmac(alg));
    }
    let min = hash_bytes(alg);
    if secret.len() < min {
        return Err(KeyError::SecretTooShort {
            alg,
            min,
            len: secret.len(),
        });
    }
    // A PEM or a JWK given as a secret (a public key stored as an HMAC
    // secret is the key-confusion attack): PEM armour anywhere, or the
    // whole secret being a JSON object. Random bytes that merely start
    // with '{' are a fine secret.
    let is_pem = secret.windows(10).any(|w| w == b"-----BEGIN");
    let is_json_object =
        serde_json::from_slice::<serde_json::Value>(secret).is_ok_and(|v| v.is_object());
    if is_pem || is_json_object {
        return Err(KeyError::SecretIsKey);
    }
    Ok(())
}

fn check_rsa_bits(bits: usize) -> KeyResult<()> {
    if bits < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall {
            min: MIN_RSA_BITS,
            bits,
        });
    }
    if bits > MAX_RSA_BITS {
        return Err(KeyError::RsaTooLarge {
            max: MAX_RSA_BITS,
            bits,
        });
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

fn from_pem(alg: Algorithm, pem: &str) -> KeyResult<DecodingKey> {
    if pem.contains("PRIVATE KEY") {
        return Err(KeyError::PrivatePem);
    }
    let pem_err = |e: jsonwebtoken::errors::Error| KeyError::BadPem(e.to_string());
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
                return Err(KeyError::PemWrongCurve(alg));
            }
            Ok(key)
        }
        Algorithm::EdDSA => {
            let key = DecodingKey::from_ed_pem(pem.as_bytes()).map_err(pem_err)?;
            if key.try_get_as_bytes().map_err(pem_err)?.len() != 32 {
                return Err(KeyError::NotEd25519);
            }
            Ok(key)
        }
        _ => Err(KeyError::HmacPem),
    }
}

fn rsa_modulus_bits(der: &[u8]) -> KeyResult<usize> {
    let (n, _e) = (DEFAULT_PROVIDER
        .key_utils
        .rsa_pub_components_from_public_key)(der)
    .map_err(|e| KeyError::BadRsa(e.to_string()))?;
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

fn from_jwk(alg: Algorithm, text: &str) -> KeyResult<DecodingKey> {
    let map = parse_object(text.as_bytes(), Part::Payload).map_err(|_| KeyError::JwkNotObject)?;
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| map.contains_key(**m)) {
        if map.get("kty").and_then(Value::as_str) != Some("oct") {
            return Err(KeyError::JwkPrivateMember(member));
        }
    }
    match map.get("alg") {
        None => {}
        Some(Value::String(a)) if a == algorithm_name(alg) => {}
        Some(_) => return Err(KeyError::JwkAlgMismatch(alg)),
    }
    if let Some(usage) = map.get("use") {
        if usage != "sig" {
            return Err(KeyError::JwkNotForSignature);
        }
    }
    let jwk: Jwk = serde_json::from_value(Value::Object(map)).map_err(|_| KeyError::JwkMembers)?;
    let key_err = |e: jsonwebtoken::errors::Error| KeyError::BadJwk(e.to_string());
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
                .map_err(|_| KeyError::JwkModulusBase64)?;
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
                return Err(KeyError::JwkWrongCurve(a));
            }
            let key = DecodingKey::from_jwk(&jwk).map_err(key_err)?;
            if Some(key.try_get_as_bytes().map_err(key_err)?.len()) != curve_len(a) {
                return Err(KeyError::JwkCoordinateLength);
            }
            Ok(key)
        }
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            if p.curve != EllipticCurve::Ed25519 {
                return Err(KeyError::NotEd25519);
            }
            let key = DecodingKey::from_jwk(&jwk).map_err(key_err)?;
            if key.try_get_as_bytes().map_err(key_err)?.len() != 32 {
                return Err(KeyError::JwkEd25519Length);
            }
            Ok(key)
        }
        _ => Err(KeyError::JwkKeyType(alg)),
    }
}

impl Key {
    /// Builds a key from its stored form; the checks are the ones of import,
    /// so a row written around the key functions is still held to them.
    pub fn new(kid: &str, alg: &str, format: Format, material: &str) -> Result<Key> {
        Ok(Key::build(kid, alg, format, material)?)
    }

    fn build(kid: &str, alg: &str, format: Format, material: &str) -> KeyResult<Key> {
        kid_ok(kid)?;
        let alg = key_alg(alg)?;
        let decoding = match format {
            Format::Secret => {
                let secret = URL_SAFE_NO_PAD
                    .decode(material)
                    .map_err(|_| KeyError::SecretBase64)?;
                check_secret(alg, &secret)?;
                DecodingKey::from_secret(&secret)
            }
            Format::Pem => from_pem(alg, material)?,
            Format::Jwk => from_jwk(alg, material)?,
        };
        let verifier = Verifier::new(alg, &decoding)
            .map_err(|reason| KeyError::CannotVerify { alg, reason })?;
        Ok(Key {
            kid: kid.to_string(),
            alg,
            enabled: true,
            not_before: None,
            not_after: None,
            fingerprint: fingerprint(&[
                kid.as_bytes(),
                algorithm_name(alg).as_bytes(),
                format.name().as_bytes(),
                material.as_bytes(),
            ]),
            issuer: None,
            verifier,
        })
    }

    /// Restricts the key to tokens of one issuer: a key fetched from an
    /// issuer's JWKS must never vouch for another issuer's tokens, even if
    /// the policy accepts both (one provider cannot sign for another).
    pub fn bind_issuer(&mut self, issuer: &str) {
        self.fingerprint = fingerprint(&[&self.fingerprint, issuer.as_bytes()]);
        self.issuer = Some(issuer.to_string());
    }

    /// Checks `signature` over `signing_input` with this key's algorithm.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify(signing_input, signature)
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

/// What a JWKS document holds for the key store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Jwks {
    /// The signature keys that can be stored.
    pub keys: Vec<JwkEntry>,
    /// Keys that cannot be used, each with why (a `JwksEntry…` or
    /// `JwksDuplicateKid` error). Providers publish keys of kinds jwt_rls
    /// does not verify with (secp256k1, RSA-1024 leftovers); one of them
    /// must not stop the others from being imported.
    pub skipped: Vec<KeyError>,
    /// Encryption keys (`use: enc`, a JWE `alg`, or `key_ops` without
    /// `verify`), which are never signature keys.
    pub encryption: usize,
}

/// The members of a public JWK that describe the key itself. Everything
/// else a provider publishes (`x5c` certificate chains of several KB,
/// `x5t`, `issuer`, `key_ops`) is dropped before storing: jwt_rls verifies
/// with the key, never with the certificate.
const PUBLIC_MEMBERS: [&str; 9] = ["kty", "kid", "use", "alg", "n", "e", "crv", "x", "y"];

/// Key management algorithms of JWE (RFC 7518 section 4.1): a key that
/// names one of them is an encryption key.
fn is_jwe_alg(alg: &str) -> bool {
    matches!(alg, "RSA1_5" | "dir")
        || ["RSA-OAEP", "ECDH-ES", "PBES2-", "A128", "A192", "A256"]
            .iter()
            .any(|p| alg.starts_with(p))
}

/// Splits a JWKS document into storable keys. Only a document that is not
/// a JWKS at all is an error, and so is one whose keys are all unusable
/// (the first reason is returned). Encryption keys are counted and left
/// out. Each other key must carry a kid and an algorithm (given as `alg`;
/// implied by an EC or OKP curve; RS256 for an RSA key without one, as
/// Microsoft Entra ID publishes them: RS256 is what OpenID Connect
/// providers sign with unless they say otherwise) and is checked by
/// `Key::new`; a kid that appears twice is ambiguous and both are left out.
pub fn parse_jwks(text: &str) -> Result<Jwks> {
    let jwks = jwks_entries(text)?;
    match jwks.skipped.first() {
        Some(first) if jwks.keys.is_empty() => Err(Error::Key(first.clone())),
        _ => Ok(jwks),
    }
}

fn jwks_entries(text: &str) -> KeyResult<Jwks> {
    let doc = parse_object(text.as_bytes(), Part::Payload).map_err(|_| KeyError::JwksNotObject)?;
    let keys = match doc.get("keys") {
        Some(Value::Array(keys)) => keys,
        _ => return Err(KeyError::JwksNoKeys),
    };
    let mut out = Jwks::default();
    for (i, key) in keys.iter().enumerate() {
        match jwks_entry(i, key) {
            Ok(Some(entry)) => out.keys.push(entry),
            Ok(None) => out.encryption += 1,
            Err(e) => out.skipped.push(e),
        }
    }
    let mut kids: Vec<&str> = out.keys.iter().map(|e| e.kid.as_str()).collect();
    kids.sort_unstable();
    let mut twice: Vec<String> = kids
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0].to_string())
        .collect();
    twice.dedup();
    out.keys.retain(|e| !twice.contains(&e.kid));
    out.skipped
        .extend(twice.into_iter().map(KeyError::JwksDuplicateKid));
    Ok(out)
}

/// One key of a JWKS: Some(entry) to store, None for an encryption key.
fn jwks_entry(i: usize, key: &Value) -> KeyResult<Option<JwkEntry>> {
    let Some(map) = key.as_object() else {
        return Err(KeyError::JwksEntryNotObject(i));
    };
    let text = |m: &str| map.get(m).and_then(Value::as_str);
    let verifies = match map.get("key_ops") {
        Some(Value::Array(ops)) => ops.iter().any(|o| o.as_str() == Some("verify")),
        _ => true,
    };
    if text("use") == Some("enc") || text("alg").is_some_and(is_jwe_alg) || !verifies {
        return Ok(None);
    }
    let kid = match map.get("kid") {
        Some(Value::String(k)) => k.clone(),
        _ => return Err(KeyError::JwksEntryNoKid(i)),
    };
    let alg = match (map.get("alg"), implied_alg(map)) {
        (Some(Value::String(a)), _) => a.clone(),
        (None, Some(a)) => a.to_string(),
        _ => return Err(KeyError::JwksEntryNoAlg(kid)),
    };
    let oct = text("kty") == Some("oct");
    let stored: Map<String, Value> = map
        .iter()
        .filter(|(m, _)| oct || PUBLIC_MEMBERS.contains(&m.as_str()))
        .map(|(m, v)| (m.clone(), v.clone()))
        .collect();
    let material = Value::Object(stored).to_string();
    Key::build(&kid, &alg, Format::Jwk, &material).map_err(|e| KeyError::JwksEntry {
        kid: kid.clone(),
        error: Box::new(e),
    })?;
    Ok(Some(JwkEntry { kid, alg, material }))
}

fn implied_alg(map: &Map<String, Value>) -> Option<&'static str> {
    match (
        map.get("kty").and_then(Value::as_str),
        map.get("crv").and_then(Value::as_str),
    ) {
        (Some("EC"), Some("P-256")) => Some("ES256"),
        (Some("EC"), Some("P-384")) => Some("ES384"),
        (Some("OKP"), Some("Ed25519")) => Some("EdDSA"),
        (Some("RSA"), _) => Some("RS256"),
        _ => None,
    }
}

/// The keys a backend verifies with.
pub type KeySet = KeyRing<Key>;

impl Selectable for Key {
    /// How a signature key is refused.
    const REFUSALS: Refusals = Refusals {
        unknown: Error::UnknownKid,
        disabled: Error::KeyDisabled,
        not_in_window: Error::KeyNotInWindow,
        none_active: || Error::NoKeys,
        ambiguous: Error::AmbiguousKey,
    };

    fn kid(&self) -> &str {
        &self.kid
    }
    fn enabled(&self) -> bool {
        self.enabled
    }
    fn window(&self) -> (Option<i64>, Option<i64>) {
        (self.not_before, self.not_after)
    }
}
