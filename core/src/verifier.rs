//! The signature check of one stored key, with the key parsed once.
//!
//! jsonwebtoken's verifiers keep a key as bytes and parse it again for
//! every signature: for RSA a new key object whose Montgomery constants are
//! computed anew, for EC the point decoded and checked to lie on the curve.
//! A stored key checks many tokens, so here it is parsed once, when the key
//! set is built, into aws-lc-rs's `ParsedPublicKey` (or, for HMAC, its
//! prepared `hmac::Key`), with the very algorithm constants jsonwebtoken
//! uses for the same JOSE name. A never-seen token then costs the signature
//! arithmetic and no key set-up; a key that cannot be parsed is refused
//! when it is stored instead of failing every token later.
//!
//! A leaf beside `alg`: it uses nothing else of the crate.

use aws_lc_rs::hmac;
use aws_lc_rs::signature::{self as sig, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind};

/// A key ready to check signatures of its one algorithm.
#[derive(Clone)]
pub enum Verifier {
    /// Boxed: the prepared key holds both HMAC contexts (over 1 KB).
    Hmac(Box<hmac::Key>),
    Public(ParsedPublicKey),
}

/// Why a key could not be prepared (aws-lc-rs's reason, or the key's kind
/// not matching the algorithm).
pub type Refusal = String;

impl Verifier {
    pub fn new(alg: Algorithm, key: &DecodingKey) -> Result<Verifier, Refusal> {
        if key.family() != alg.family() {
            return Err("the key is not of the algorithm's family".into());
        }
        let refused = |e: aws_lc_rs::error::KeyRejected| e.to_string();
        match (alg, key.kind()) {
            (
                Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512,
                DecodingKeyKind::SecretOrDer(secret),
            ) => Ok(Verifier::Hmac(Box::new(hmac::Key::new(
                hmac_algorithm(alg),
                secret,
            )))),
            (_, DecodingKeyKind::RsaModulusExponent { n, e }) => {
                let params =
                    rsa_parameters(alg).ok_or_else(|| "not an RSA algorithm".to_string())?;
                let components = RsaPublicKeyComponents { n, e };
                components
                    .to_parsed_public_key(params)
                    .map(Verifier::Public)
                    .map_err(refused)
            }
            (_, DecodingKeyKind::SecretOrDer(der)) => {
                let params: &'static dyn sig::VerificationAlgorithm = match alg {
                    Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
                    Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
                    Algorithm::EdDSA => &sig::ED25519,
                    _ => rsa_parameters(alg)
                        .ok_or_else(|| "no verification for this algorithm".to_string())?,
                };
                ParsedPublicKey::new(params, der)
                    .map(Verifier::Public)
                    .map_err(refused)
            }
        }
    }

    /// Whether `signature` is this key's signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self {
            Verifier::Hmac(key) => hmac::verify(key, message, signature).is_ok(),
            Verifier::Public(key) => key.verify_sig(message, signature).is_ok(),
        }
    }
}

/// Called for HS256, HS384 and HS512 only.
fn hmac_algorithm(alg: Algorithm) -> hmac::Algorithm {
    match alg {
        Algorithm::HS384 => hmac::HMAC_SHA384,
        Algorithm::HS512 => hmac::HMAC_SHA512,
        _ => hmac::HMAC_SHA256,
    }
}

/// jsonwebtoken's choice for each RSA name: 2048 to 8192 bits.
fn rsa_parameters(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}
