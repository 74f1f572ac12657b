//! JWE key management (RFC 7518 section 4): the private keys that decrypt
//! nested tokens, their public counterparts that encrypt them, and the one
//! step each algorithm takes between a key and the content encryption key
//! (CEK).
//!
//! As with verification keys, every decryption key is bound to exactly one
//! key-management algorithm when it is stored (and a `dir` key also to its
//! content encryption), so a token can never choose how a key is used. All
//! cryptography is aws-lc-rs, the library the signatures are checked with.
//!
//! Uses `error`, `json`, `select`, `fingerprint` and `limits`, and `keys`
//! and `sign` for the kid check, key formats and PEM decoding they share
//! with signature keys.

use aws_lc_rs::agreement::{self, ParsedPublicKey, UnparsedPublicKey};
use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::key_wrap::{self, KeyEncryptionKey, KeyWrap};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::rsa::{
    KeyPair as RsaKeyPair, KeyPairComponents, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey, PublicKeyComponents, OAEP_SHA256_MGF1SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::error::{Error, KeyError, Part, Result};
use crate::json::parse_object;
use crate::keys::{check_kid, Format};
use crate::limits::MIN_RSA_BITS;
use crate::sign::pem_der;

/// The key-management algorithms accepted (RFC 7518 section 4.1).
/// Deliberately absent: RSA1_5 (Bleichenbacher oracle, RFC 8725 section
/// 3.2), RSA-OAEP with SHA-1, PBES2 (a token-chosen iteration count is a
/// denial of service), AES-GCM key wrap and the 128/192-bit wraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlg {
    RsaOaep256,
    EcdhEs,
    EcdhEsA256Kw,
    A256Kw,
    Dir,
}

pub const KEY_ALGS: [(&str, KeyAlg); 5] = [
    ("RSA-OAEP-256", KeyAlg::RsaOaep256),
    ("ECDH-ES", KeyAlg::EcdhEs),
    ("ECDH-ES+A256KW", KeyAlg::EcdhEsA256Kw),
    ("A256KW", KeyAlg::A256Kw),
    ("dir", KeyAlg::Dir),
];

impl KeyAlg {
    /// Exact, case-sensitive lookup of a JOSE name.
    pub fn from_name(name: &str) -> Option<KeyAlg> {
        KEY_ALGS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    pub fn name(self) -> &'static str {
        KEY_ALGS
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .unwrap_or("unknown")
    }

    /// Whether the CEK is carried wrapped in the encrypted key segment (the
    /// others leave that segment empty).
    pub fn wraps_cek(self) -> bool {
        !matches!(self, KeyAlg::EcdhEs | KeyAlg::Dir)
    }
}

/// The content encryption algorithms accepted (RFC 7518 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enc {
    A256Gcm,
    A128CbcHs256,
}

pub const ENCS: [(&str, Enc); 2] = [
    ("A256GCM", Enc::A256Gcm),
    ("A128CBC-HS256", Enc::A128CbcHs256),
];

impl Enc {
    pub fn from_name(name: &str) -> Option<Enc> {
        ENCS.iter().find(|(n, _)| *n == name).map(|(_, e)| *e)
    }

    pub fn name(self) -> &'static str {
        match self {
            Enc::A256Gcm => "A256GCM",
            Enc::A128CbcHs256 => "A128CBC-HS256",
        }
    }

    /// CEK bytes: 32 for both (A128CBC-HS256 is a 16-byte MAC key followed
    /// by a 16-byte AES key, RFC 7518 section 5.2.3).
    pub fn cek_len(self) -> usize {
        32
    }

    /// IV bytes (RFC 7518 sections 5.2.3 and 5.3).
    pub fn iv_len(self) -> usize {
        match self {
            Enc::A256Gcm => 12,
            Enc::A128CbcHs256 => 16,
        }
    }
}

/// The NIST curves of ECDH-ES.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

const CURVES: [(&str, Curve); 3] = [
    ("P-256", Curve::P256),
    ("P-384", Curve::P384),
    ("P-521", Curve::P521),
];

impl Curve {
    fn from_name(name: &str) -> Option<Curve> {
        CURVES.iter().find(|(n, _)| *n == name).map(|(_, c)| *c)
    }

    pub fn name(self) -> &'static str {
        CURVES
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(n, _)| *n)
            .unwrap_or("unknown")
    }

    /// Bytes of one coordinate (and of the private scalar).
    fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }

    fn agreement(self) -> &'static agreement::Algorithm {
        match self {
            Curve::P256 => &agreement::ECDH_P256,
            Curve::P384 => &agreement::ECDH_P384,
            Curve::P521 => &agreement::ECDH_P521,
        }
    }
}

/// The key functions' own result (wrapped as `Error::Key` by the public ones).
type KeyResult<T> = std::result::Result<T, KeyError>;

/// What a decryption key holds.
enum Secret {
    Rsa(OaepPrivateDecryptingKey),
    Ec {
        curve: Curve,
        key: agreement::PrivateKey,
    },
    /// A256KW key-encryption key or dir CEK: always 32 bytes, wiped on drop
    /// (aws-lc wipes its own keys when it frees them).
    Oct(Zeroizing<[u8; 32]>),
}

/// A private key that decrypts nested tokens.
pub struct DecryptionKey {
    pub kid: String,
    pub alg: KeyAlg,
    /// The content encryption a `dir` key is bound to (`None` for the
    /// other algorithms, whose CEK is fresh for every token).
    pub enc: Option<Enc>,
    pub enabled: bool,
    /// Unix seconds; tokens are refused outside [not_before, not_after).
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// Identifies the key exactly (kid, algorithm, enc, format, material):
    /// see `Key::fingerprint`.
    pub fingerprint: crate::fingerprint::Fingerprint,
    secret: Secret,
}

impl std::fmt::Debug for DecryptionKey {
    // Never the key material.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecryptionKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg.name())
            .field("enc", &self.enc.map(Enc::name))
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

fn b64(value: Option<&Value>) -> KeyResult<Vec<u8>> {
    match value {
        Some(Value::String(s)) => URL_SAFE_NO_PAD.decode(s).map_err(|_| KeyError::JwkMembers),
        _ => Err(KeyError::JwkMembers),
    }
}

fn secret32(bytes: &[u8], alg: KeyAlg) -> KeyResult<Zeroizing<[u8; 32]>> {
    let key: [u8; 32] = bytes.try_into().map_err(|_| KeyError::SecretLength {
        alg: alg.name(),
        len: bytes.len(),
    })?;
    Ok(Zeroizing::new(key))
}

fn rsa_secret(der_pkcs8: &[u8]) -> KeyResult<Secret> {
    let key = PrivateDecryptingKey::from_pkcs8(der_pkcs8)
        .map_err(|e| KeyError::BadDecryptionKey(e.to_string()))?;
    if key.key_size_bits() < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall {
            min: MIN_RSA_BITS,
            bits: key.key_size_bits(),
        });
    }
    let key = OaepPrivateDecryptingKey::new(key)
        .map_err(|_| KeyError::BadDecryptionKey("OAEP".into()))?;
    Ok(Secret::Rsa(key))
}

/// An RSA private JWK: every CRT member is required (aws-lc-rs checks them
/// against each other), multi-prime keys are not supported.
fn rsa_from_jwk(map: &Map<String, Value>) -> KeyResult<Secret> {
    if map.contains_key("oth") {
        return Err(KeyError::BadDecryptionKey(
            "multi-prime RSA keys are not supported".into(),
        ));
    }
    if !map.contains_key("d") {
        return Err(KeyError::DecryptionNotPrivate);
    }
    let get = |m: &str| b64(map.get(m));
    let n = get("n")?;
    let e = get("e")?;
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    if bits < MIN_RSA_BITS {
        return Err(KeyError::RsaTooSmall {
            min: MIN_RSA_BITS,
            bits,
        });
    }
    let components = KeyPairComponents {
        public_key: PublicKeyComponents { n, e },
        d: get("d")?,
        p: get("p")?,
        q: get("q")?,
        dP: get("dp")?,
        dQ: get("dq")?,
        qInv: get("qi")?,
    };
    let pair = RsaKeyPair::from_components(&components)
        .map_err(|e| KeyError::BadDecryptionKey(e.to_string()))?;
    let pkcs8 = pair
        .as_der()
        .map_err(|_| KeyError::BadDecryptionKey("cannot encode the key".into()))?;
    rsa_secret(pkcs8.as_ref())
}

/// An EC private JWK: `d` must be the private key of `x`, `y`.
fn ec_from_jwk(map: &Map<String, Value>) -> KeyResult<Secret> {
    let curve = match map.get("crv") {
        Some(Value::String(c)) => {
            Curve::from_name(c).ok_or_else(|| KeyError::UnsupportedCurve(c.clone()))?
        }
        _ => return Err(KeyError::JwkMembers),
    };
    if !map.contains_key("d") {
        return Err(KeyError::DecryptionNotPrivate);
    }
    let (x, y, d) = (b64(map.get("x"))?, b64(map.get("y"))?, b64(map.get("d"))?);
    let len = curve.coordinate_len();
    if x.len() != len || y.len() != len || d.len() != len {
        return Err(KeyError::JwkCoordinateLength);
    }
    let key = agreement::PrivateKey::from_private_key(curve.agreement(), &d)
        .map_err(|e| KeyError::BadDecryptionKey(e.to_string()))?;
    let public = key
        .compute_public_key()
        .map_err(|_| KeyError::BadDecryptionKey("cannot compute the public key".into()))?;
    if public.as_ref() != uncompressed(&x, &y).as_slice() {
        return Err(KeyError::EcPublicMismatch);
    }
    Ok(Secret::Ec { curve, key })
}

fn uncompressed(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut point = Vec::with_capacity(1 + x.len() + y.len());
    point.push(4);
    point.extend_from_slice(x);
    point.extend_from_slice(y);
    point
}

/// Checks the members every JWK of a key-management key shares: `use`
/// (when present) is "enc", `alg` (when present) is the key's algorithm.
fn check_jwk_use(map: &Map<String, Value>, alg: KeyAlg) -> KeyResult<()> {
    if let Some(usage) = map.get("use") {
        if usage != "enc" {
            return Err(KeyError::JwkNotForEncryption);
        }
    }
    match map.get("alg") {
        None => Ok(()),
        Some(Value::String(a)) if a == alg.name() => Ok(()),
        Some(_) => Err(KeyError::JwkKeyAlgMismatch(alg.name())),
    }
}

fn kty(map: &Map<String, Value>) -> Option<&str> {
    map.get("kty").and_then(Value::as_str)
}

fn from_jwk(alg: KeyAlg, text: &str) -> KeyResult<Secret> {
    let map = parse_object(text.as_bytes(), Part::Payload).map_err(|_| KeyError::JwkNotObject)?;
    check_jwk_use(&map, alg)?;
    match (kty(&map), alg) {
        (Some("RSA"), KeyAlg::RsaOaep256) => rsa_from_jwk(&map),
        (Some("EC"), KeyAlg::EcdhEs | KeyAlg::EcdhEsA256Kw) => ec_from_jwk(&map),
        (Some("oct"), KeyAlg::A256Kw | KeyAlg::Dir) => Ok(Secret::Oct(secret32(
            &Zeroizing::new(b64(map.get("k"))?),
            alg,
        )?)),
        _ => Err(KeyError::JwkKeyTypeFor(alg.name())),
    }
}

fn from_pem(alg: KeyAlg, pem: &str) -> KeyResult<Secret> {
    if !pem.contains("PRIVATE KEY-----") {
        return Err(KeyError::DecryptionNotPrivate);
    }
    let bad = || KeyError::BadDecryptionKey("the PEM is not base64".into());
    let der = pem_der(pem).ok_or_else(bad)?;
    match alg {
        KeyAlg::RsaOaep256 if pem.contains("BEGIN RSA PRIVATE KEY") => {
            // PKCS#1: re-encoded as PKCS#8, the form the OAEP key reads.
            let pair = RsaKeyPair::from_der(&der)
                .map_err(|e| KeyError::BadDecryptionKey(e.to_string()))?;
            let pkcs8 = pair
                .as_der()
                .map_err(|_| KeyError::BadDecryptionKey("cannot encode the key".into()))?;
            rsa_secret(pkcs8.as_ref())
        }
        KeyAlg::RsaOaep256 => rsa_secret(&der),
        KeyAlg::EcdhEs | KeyAlg::EcdhEsA256Kw => {
            // PKCS#8 or SEC1; the curve is the key's own.
            for (_, curve) in CURVES {
                if let Ok(key) =
                    agreement::PrivateKey::from_private_key_der(curve.agreement(), &der)
                {
                    return Ok(Secret::Ec { curve, key });
                }
            }
            Err(KeyError::BadDecryptionKey(
                "not an EC private key on P-256, P-384 or P-521".into(),
            ))
        }
        KeyAlg::A256Kw | KeyAlg::Dir => Err(KeyError::SecretNotPem(alg.name())),
    }
}

/// Parses a key-management algorithm name for a key.
pub fn key_alg(name: &str) -> Result<KeyAlg> {
    Ok(KeyAlg::from_name(name).ok_or_else(|| KeyError::UnknownKeyAlg(name.to_string()))?)
}

/// Parses a content encryption name for a key.
pub fn enc_name(name: &str) -> Result<Enc> {
    Ok(Enc::from_name(name).ok_or_else(|| KeyError::UnknownEnc(name.to_string()))?)
}

impl DecryptionKey {
    /// Builds a decryption key from its stored form:
    /// - `alg`: RSA-OAEP-256, ECDH-ES, ECDH-ES+A256KW, A256KW or dir;
    /// - `enc`: A256GCM or A128CBC-HS256, required for dir and refused for
    ///   the others (their CEK is fresh per token, so no binding is needed);
    /// - `format` and `material`: `Jwk` with a private JWK (RSA with n, e,
    ///   d, p, q, dp, dq, qi; EC P-256/P-384/P-521 with d; oct with a
    ///   32-byte k), `Pem` with a private PEM (PKCS#8, or PKCS#1 for RSA,
    ///   SEC1 for EC), or `Secret` with the 32 bytes of an oct key as
    ///   unpadded base64url.
    pub fn new(
        kid: &str,
        alg: &str,
        enc: Option<&str>,
        format: Format,
        material: &str,
    ) -> Result<DecryptionKey> {
        check_kid(kid)?;
        let alg = key_alg(alg)?;
        let enc = match (alg, enc) {
            (KeyAlg::Dir, Some(e)) => Some(enc_name(e)?),
            (KeyAlg::Dir, None) => return Err(KeyError::DirNeedsEnc.into()),
            (_, None) => None,
            (_, Some(_)) => return Err(KeyError::EncOnlyForDir.into()),
        };
        let secret = match format {
            Format::Jwk => from_jwk(alg, material)?,
            Format::Pem => from_pem(alg, material)?,
            Format::Secret => match alg {
                KeyAlg::A256Kw | KeyAlg::Dir => {
                    let bytes = Zeroizing::new(
                        URL_SAFE_NO_PAD
                            .decode(material)
                            .map_err(|_| KeyError::SecretBase64)?,
                    );
                    Secret::Oct(secret32(&bytes, alg)?)
                }
                _ => return Err(KeyError::SecretNotSymmetric(alg.name()).into()),
            },
        };
        Ok(DecryptionKey {
            kid: kid.to_string(),
            alg,
            enc,
            enabled: true,
            not_before: None,
            not_after: None,
            fingerprint: crate::fingerprint::fingerprint(&[
                kid.as_bytes(),
                alg.name().as_bytes(),
                enc.map(Enc::name).unwrap_or("").as_bytes(),
                format.name().as_bytes(),
                material.as_bytes(),
            ]),
            secret,
        })
    }

    /// The length of the encrypted key segment this key's tokens carry.
    pub(crate) fn encrypted_key_len(&self) -> usize {
        match (&self.secret, self.alg) {
            (Secret::Rsa(key), _) => key.key_size_bytes(),
            (_, KeyAlg::A256Kw | KeyAlg::EcdhEsA256Kw) => 40,
            _ => 0,
        }
    }

    /// The CEK of one token. `encrypted_key` has the length the algorithm
    /// needs (checked by the caller), `epk` is present for ECDH-ES.
    ///
    /// Every failure after the ephemeral key is known to be a valid point
    /// gives a random CEK instead of an error (RFC 7516 section 11.5): the
    /// token then fails at the tag, exactly like a token whose content was
    /// altered, so no oracle tells an OAEP or unwrap failure from a bad tag.
    pub(crate) fn cek(
        &self,
        enc: Enc,
        encrypted_key: &[u8],
        ecdh: Option<&Ecdh>,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let cek = match (&self.secret, ecdh) {
            (Secret::Oct(k), _) if self.alg == KeyAlg::Dir => Some(Zeroizing::new(k.to_vec())),
            (Secret::Oct(kek), _) => unwrap_cek(kek, encrypted_key),
            (Secret::Rsa(key), _) => {
                let mut out = Zeroizing::new(vec![0; key.min_output_size()]);
                key.decrypt(&OAEP_SHA256_MGF1SHA256, encrypted_key, &mut out, None)
                    .ok()
                    .map(|cek| Zeroizing::new(cek.to_vec()))
            }
            (Secret::Ec { curve, key }, Some(ecdh)) => {
                let peer = ecdh.public_key(*curve)?;
                let (alg_id, len) = match self.alg {
                    KeyAlg::EcdhEs => (enc.name(), enc.cek_len()),
                    _ => (self.alg.name(), 32),
                };
                let derived = agreement::agree(key, peer, (), |z| {
                    Ok(Zeroizing::new(concat_kdf(
                        z, alg_id, &ecdh.apu, &ecdh.apv, len,
                    )))
                })
                .ok();
                match (self.alg, derived) {
                    (KeyAlg::EcdhEs, derived) => derived,
                    (_, Some(kek)) => secret32(&kek, self.alg)
                        .ok()
                        .and_then(|kek| unwrap_cek(&kek, encrypted_key)),
                    (_, None) => None,
                }
            }
            (Secret::Ec { .. }, None) => return Err(Error::BadEpk("missing")),
        };
        match cek {
            Some(cek) if cek.len() == enc.cek_len() => Ok(cek),
            _ => Ok(Zeroizing::new(random(enc.cek_len())?)),
        }
    }
}

pub(crate) fn random(len: usize) -> Result<Vec<u8>> {
    let mut bytes = vec![0; len];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| KeyError::Generate)?;
    Ok(bytes)
}

/// AES-256 key unwrap (RFC 3394) of a 32-byte CEK.
fn unwrap_cek(kek: &[u8; 32], wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let kek = KeyEncryptionKey::new(&key_wrap::AES_256, kek).ok()?;
    let mut out = Zeroizing::new([0u8; 40]);
    kek.unwrap(wrapped, out.as_mut_slice())
        .ok()
        .map(|cek| Zeroizing::new(cek.to_vec()))
}

fn wrap_cek(kek: &[u8], cek: &[u8]) -> Result<Vec<u8>> {
    let fail = || Error::from(KeyError::EncryptFailed);
    let kek = KeyEncryptionKey::new(&key_wrap::AES_256, kek).map_err(|_| fail())?;
    let mut out = [0u8; 48];
    Ok(kek.wrap(cek, &mut out).map_err(|_| fail())?.to_vec())
}

/// The Concat KDF of RFC 7518 section 4.6.2 (NIST SP 800-56A, single-step,
/// SHA-256) for at most one hash block of output, which is all the
/// accepted algorithms need (256 bits). Written here because it is four
/// hash inputs and no maintained crate offers exactly the JOSE framing.
pub fn concat_kdf(z: &[u8], alg_id: &str, apu: &[u8], apv: &[u8], len: usize) -> Vec<u8> {
    debug_assert!(len <= 32);
    let field = |ctx: &mut digest::Context, bytes: &[u8]| {
        ctx.update(&(bytes.len() as u32).to_be_bytes());
        ctx.update(bytes);
    };
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&1u32.to_be_bytes());
    ctx.update(z);
    field(&mut ctx, alg_id.as_bytes());
    field(&mut ctx, apu);
    field(&mut ctx, apv);
    ctx.update(&((len * 8) as u32).to_be_bytes());
    ctx.finish().as_ref()[..len].to_vec()
}

/// The ECDH-ES inputs of one token's header: the ephemeral public key, as
/// given, and the party info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ecdh {
    pub crv: String,
    pub x: Vec<u8>,
    pub y: Vec<u8>,
    pub apu: Vec<u8>,
    pub apv: Vec<u8>,
}

impl Ecdh {
    /// The ephemeral key as a point of `curve`, refused when its curve is
    /// another or it is not a point of the curve (invalid-curve attacks:
    /// aws-lc checks the point, and the point at infinity has no x, y).
    fn public_key(&self, curve: Curve) -> Result<ParsedPublicKey> {
        if self.crv != curve.name() {
            return Err(Error::BadEpk("wrong curve"));
        }
        let len = curve.coordinate_len();
        if self.x.len() != len || self.y.len() != len {
            return Err(Error::BadEpk("wrong coordinate length"));
        }
        let point = uncompressed(&self.x, &self.y);
        ParsedPublicKey::try_from(&UnparsedPublicKey::new(curve.agreement(), &point))
            .map_err(|_| Error::BadEpk("not on the curve"))
    }
}

/// The decryption keys of a backend.
pub type DecryptionKeySet = crate::select::KeyRing<DecryptionKey>;

impl crate::select::Selectable for DecryptionKey {
    /// How a decryption key is refused; with none active, a JWE is not
    /// accepted at all.
    const REFUSALS: crate::select::Refusals = crate::select::Refusals {
        unknown: Error::UnknownDecryptionKid,
        disabled: Error::DecryptionKeyDisabled,
        not_in_window: Error::DecryptionKeyNotInWindow,
        none_active: || Error::EncryptedNotAccepted,
        ambiguous: Error::AmbiguousDecryptionKey,
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

/// A public key (or shared secret) that encrypts tokens for a recipient.
pub struct EncryptionKey {
    /// The JWK's kid, put in the JWE header when present.
    pub kid: Option<String>,
    pub alg: KeyAlg,
    public: Public,
}

enum Public {
    Rsa(OaepPublicEncryptingKey),
    Ec { curve: Curve, point: Vec<u8> },
    Oct(Zeroizing<[u8; 32]>),
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg.name())
            .finish_non_exhaustive()
    }
}

/// What `EncryptionKey::cek` gives: the CEK, the encrypted key segment, and
/// the ephemeral public key and curve for ECDH-ES.
pub(crate) struct Wrapped {
    pub cek: Zeroizing<Vec<u8>>,
    pub encrypted_key: Vec<u8>,
    pub epk: Option<(Curve, Vec<u8>)>,
}

impl EncryptionKey {
    /// Reads the recipient's public JWK (RSA n, e; EC crv, x, y; oct k for
    /// A256KW and dir). Private members are refused: the encrypting side
    /// never needs them.
    pub fn from_jwk(alg: &str, text: &str) -> Result<EncryptionKey> {
        let alg = key_alg(alg)?;
        let map =
            parse_object(text.as_bytes(), Part::Payload).map_err(|_| KeyError::JwkNotObject)?;
        check_jwk_use(&map, alg)?;
        let kid = match map.get("kid") {
            None => None,
            Some(Value::String(k)) => {
                check_kid(k)?;
                Some(k.clone())
            }
            Some(_) => return Err(KeyError::BadKid.into()),
        };
        if kty(&map) != Some("oct") {
            for m in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
                if map.contains_key(m) {
                    return Err(KeyError::JwkPrivateMember(m).into());
                }
            }
        }
        let public = match (kty(&map), alg) {
            (Some("RSA"), KeyAlg::RsaOaep256) => {
                let n = b64(map.get("n"))?;
                let e = b64(map.get("e"))?;
                let key: PublicEncryptingKey = PublicKeyComponents { n, e }
                    .try_into()
                    .map_err(|_| KeyError::BadRsa("invalid n or e".into()))?;
                if key.key_size_bits() < MIN_RSA_BITS {
                    return Err(KeyError::RsaTooSmall {
                        min: MIN_RSA_BITS,
                        bits: key.key_size_bits(),
                    }
                    .into());
                }
                Public::Rsa(
                    OaepPublicEncryptingKey::new(key)
                        .map_err(|_| KeyError::BadRsa("OAEP".into()))?,
                )
            }
            (Some("EC"), KeyAlg::EcdhEs | KeyAlg::EcdhEsA256Kw) => {
                let crv = match map.get("crv") {
                    Some(Value::String(c)) => c.clone(),
                    _ => return Err(KeyError::JwkMembers.into()),
                };
                let curve = Curve::from_name(&crv)
                    .ok_or_else(|| KeyError::UnsupportedCurve(crv.clone()))?;
                let ecdh = Ecdh {
                    crv,
                    x: b64(map.get("x"))?,
                    y: b64(map.get("y"))?,
                    apu: vec![],
                    apv: vec![],
                };
                ecdh.public_key(curve)
                    .map_err(|_| KeyError::JwkCoordinateLength)?;
                Public::Ec {
                    curve,
                    point: uncompressed(&ecdh.x, &ecdh.y),
                }
            }
            (Some("oct"), KeyAlg::A256Kw | KeyAlg::Dir) => {
                Public::Oct(secret32(&Zeroizing::new(b64(map.get("k"))?), alg)?)
            }
            _ => return Err(KeyError::JwkKeyTypeFor(alg.name()).into()),
        };
        Ok(EncryptionKey { kid, alg, public })
    }

    /// A fresh CEK for `enc` and how the recipient gets it back.
    pub(crate) fn cek(&self, enc: Enc) -> Result<Wrapped> {
        let fail = || Error::from(KeyError::EncryptFailed);
        let mut out = Wrapped {
            cek: Zeroizing::new(random(enc.cek_len())?),
            encrypted_key: vec![],
            epk: None,
        };
        match &self.public {
            Public::Oct(k) if self.alg == KeyAlg::Dir => out.cek = Zeroizing::new(k.to_vec()),
            Public::Oct(kek) => out.encrypted_key = wrap_cek(kek.as_slice(), &out.cek)?,
            Public::Rsa(key) => {
                let mut buf = vec![0; key.ciphertext_size()];
                out.encrypted_key = key
                    .encrypt(&OAEP_SHA256_MGF1SHA256, &out.cek, &mut buf, None)
                    .map_err(|_| fail())?
                    .to_vec();
            }
            Public::Ec { curve, point } => {
                let eph = agreement::PrivateKey::generate(curve.agreement()).map_err(|_| fail())?;
                let eph_public = eph.compute_public_key().map_err(|_| fail())?;
                let (alg_id, len) = match self.alg {
                    KeyAlg::EcdhEs => (enc.name(), enc.cek_len()),
                    _ => (self.alg.name(), 32),
                };
                let peer = UnparsedPublicKey::new(curve.agreement(), point);
                let derived = agreement::agree(&eph, peer, fail(), |z| {
                    Ok(Zeroizing::new(concat_kdf(z, alg_id, &[], &[], len)))
                })?;
                if self.alg == KeyAlg::EcdhEs {
                    out.cek = derived;
                } else {
                    out.encrypted_key = wrap_cek(&derived, &out.cek)?;
                }
                out.epk = Some((*curve, eph_public.as_ref().to_vec()));
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7518 appendix C: ECDH-ES with A128GCM. Its Z, party info and
    /// output (the only published Concat KDF vector for JOSE).
    #[test]
    fn concat_kdf_matches_rfc7518_appendix_c() {
        let z: [u8; 32] = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
            110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let out = concat_kdf(&z, "A128GCM", b"Alice", b"Bob", 16);
        assert_eq!(URL_SAFE_NO_PAD.encode(out), "VqqN6vgjbSBcIijNcacQGg");
    }

    #[test]
    fn names_round_trip() {
        for (n, a) in KEY_ALGS {
            assert_eq!(KeyAlg::from_name(n), Some(a));
            assert_eq!(a.name(), n);
        }
        for (n, e) in ENCS {
            assert_eq!(Enc::from_name(n), Some(e));
            assert_eq!(e.name(), n);
        }
        assert_eq!(KeyAlg::from_name("rsa-oaep-256"), None);
        assert_eq!(KeyAlg::from_name("RSA1_5"), None);
    }

    #[test]
    fn oct_keys_are_32_bytes_and_dir_is_bound_to_its_enc() {
        let k = URL_SAFE_NO_PAD.encode([7u8; 32]);
        assert!(DecryptionKey::new("k", "A256KW", None, Format::Secret, &k).is_ok());
        let short = URL_SAFE_NO_PAD.encode([7u8; 16]);
        assert_eq!(
            DecryptionKey::new("k", "A256KW", None, Format::Secret, &short).unwrap_err(),
            Error::Key(KeyError::SecretLength {
                alg: "A256KW",
                len: 16
            })
        );
        assert_eq!(
            DecryptionKey::new("k", "dir", None, Format::Secret, &k).unwrap_err(),
            Error::Key(KeyError::DirNeedsEnc)
        );
        assert_eq!(
            DecryptionKey::new("k", "A256KW", Some("A256GCM"), Format::Secret, &k).unwrap_err(),
            Error::Key(KeyError::EncOnlyForDir)
        );
        assert_eq!(
            DecryptionKey::new("k", "RSA1_5", None, Format::Secret, &k).unwrap_err(),
            Error::Key(KeyError::UnknownKeyAlg("RSA1_5".into()))
        );
        assert_eq!(
            DecryptionKey::new("k", "dir", Some("A128GCM"), Format::Secret, &k).unwrap_err(),
            Error::Key(KeyError::UnknownEnc("A128GCM".into()))
        );
        let d = DecryptionKey::new("k", "dir", Some("A128CBC-HS256"), Format::Secret, &k).unwrap();
        assert_eq!(d.enc, Some(Enc::A128CbcHs256));
        assert!(!format!("{d:?}").contains("BwcH"), "Debug shows no key");
    }
}
