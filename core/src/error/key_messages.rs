//! The text of a key refusal: `KeyError`'s `Display`, which follows
//! "invalid key: " in the message. The extension shows it to SQL callers,
//! so the test below pins every variant's.
//!
//! Uses `error`, and the leaves `alg` (algorithm names) and `limits` (the
//! kid length it states), never `keys` or `header`, which import `error`.

use std::fmt;

use super::{shown, KeyError};
use crate::alg::algorithm_name;
use crate::limits::MAX_KID_BYTES;

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use KeyError::*;
        match self {
            UnknownFormat(name) => write!(f, "unknown key format {}", shown(name)),
            BadKid => {
                write!(f, "kid must be 1 to {MAX_KID_BYTES} bytes without control characters")
            }
            UnknownAlg(name) => write!(
                f,
                "algorithm {} is not one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA",
                shown(name)
            ),
            SecretBase64 => f.write_str("a stored secret must be unpadded base64url"),
            SecretNotHmac(alg) => {
                write!(f, "a secret can only be an HMAC key, not {}", algorithm_name(*alg))
            }
            SecretTooShort { alg, min, len } => write!(
                f,
                "an {} secret must be at least {min} bytes, this one has {len}",
                algorithm_name(*alg)
            ),
            SecretIsKey => f.write_str(
                "this secret is a PEM or JWK key; store public keys with their own algorithm",
            ),
            PrivatePem => f.write_str("this is a private key; store only the public key"),
            HmacPem => f.write_str("an HMAC key is a secret, not a PEM"),
            BadPem(why) => write!(f, "not a usable public key PEM ({why})"),
            BadRsa(why) => write!(f, "not a usable RSA public key ({why})"),
            RsaTooSmall { min, bits } => {
                write!(f, "RSA keys must have at least {min} bits, this one has {bits}")
            }
            RsaTooLarge { max, bits } => {
                write!(f, "RSA keys must have at most {max} bits, this one has {bits}")
            }
            PemWrongCurve(alg) => {
                write!(f, "this EC key is not on the curve of {}", algorithm_name(*alg))
            }
            NotEd25519 => f.write_str("EdDSA keys must be Ed25519"),
            JwkNotObject => f.write_str("the JWK is not a JSON object"),
            JwkPrivateMember(member) => {
                write!(f, "the JWK carries private member \"{member}\"; store only the public key")
            }
            JwkAlgMismatch(alg) => write!(f, "the JWK's alg is not {}", algorithm_name(*alg)),
            JwkNotForSignature => f.write_str("the JWK is not a signature key (use is not \"sig\")"),
            JwkMembers => f.write_str("the JWK has missing or mistyped members"),
            BadJwk(why) => write!(f, "unusable JWK ({why})"),
            JwkModulusBase64 => f.write_str("the JWK's n is not base64url"),
            JwkWrongCurve(alg) => {
                write!(f, "the JWK's curve does not match {}", algorithm_name(*alg))
            }
            JwkCoordinateLength => f.write_str("the JWK's coordinates have the wrong length"),
            JwkEd25519Length => f.write_str("the JWK's x has the wrong length"),
            JwkKeyType(alg) => {
                write!(f, "the JWK's key type cannot be used for {}", algorithm_name(*alg))
            }
            CannotVerify { alg, reason } => {
                write!(f, "the key cannot verify {} ({reason})", algorithm_name(*alg))
            }
            JwksNotObject => f.write_str("the JWKS is not a JSON object"),
            JwksNoKeys => f.write_str("the JWKS has no \"keys\" array"),
            JwksEntryNotObject(i) => write!(f, "key {i} of the JWKS is not an object"),
            JwksEntryNoKid(i) => write!(f, "key {i} of the JWKS has no string kid"),
            JwksEntryNoAlg(kid) => write!(f, "key {} of the JWKS names no alg", shown(kid)),
            JwksEntry { kid, error } => write!(f, "key {} of the JWKS: {error}", shown(kid)),
            JwksDuplicateKid(kid) => write!(f, "the JWKS has kid {} twice", shown(kid)),
            KidTaken(kid) => {
                write!(f, "kid {} already holds a different key; remove it first", shown(kid))
            }
            BadPrivateKey(why) => write!(f, "this private key cannot sign: {why}"),
            NotPrivate => f.write_str("a signing key must be a private key (PKCS#8 or PKCS#1 PEM)"),
            Generate => f.write_str("the crypto library could not generate a key"),
            NoSigningKey => f.write_str("no enabled signing key"),
            UnknownKeyAlg(name) => write!(
                f,
                "key management algorithm {} is not one of RSA-OAEP-256 ECDH-ES ECDH-ES+A256KW A256KW dir",
                shown(name)
            ),
            UnknownEnc(name) => write!(
                f,
                "content encryption {} is not one of A256GCM A128CBC-HS256",
                shown(name)
            ),
            DirNeedsEnc => f.write_str(
                "a dir key must name its content encryption (A256GCM or A128CBC-HS256)",
            ),
            EncOnlyForDir => f.write_str(
                "only a dir key is bound to a content encryption; give none for this algorithm",
            ),
            SecretLength { alg, len } => {
                write!(f, "{alg} keys must be 32 bytes, this one has {len}")
            }
            SecretNotSymmetric(alg) => {
                write!(f, "a secret can only be an A256KW or dir key, not {alg}")
            }
            SecretNotPem(alg) => write!(f, "{alg} keys are secrets, not PEMs"),
            DecryptionNotPrivate => f.write_str(
                "a decryption key must be a private key (PKCS#8 PEM or private JWK)",
            ),
            BadDecryptionKey(why) => write!(f, "this private key cannot decrypt: {why}"),
            UnsupportedCurve(name) => {
                write!(f, "curve {} is not one of P-256 P-384 P-521", shown(name))
            }
            EcPublicMismatch => f.write_str("the JWK's x and y are not the public key of its d"),
            JwkNotForEncryption => {
                f.write_str("the JWK is not an encryption key (use is not \"enc\")")
            }
            JwkKeyAlgMismatch(alg) => write!(f, "the JWK's alg is not {alg}"),
            JwkKeyTypeFor(alg) => write!(f, "the JWK's key type cannot be used for {alg}"),
            EncryptFailed => f.write_str("the crypto library could not encrypt the token"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Class, Error};
    use jsonwebtoken::Algorithm;
    use KeyError::*;

    /// The message of every key refusal, pinned: the extension shows them
    /// to SQL callers. (tests/key_errors.rs reaches each from real input.)
    #[test]
    fn key_error_messages() {
        let rs = Algorithm::RS256;
        let cases: Vec<(KeyError, &str)> = vec![
            (UnknownFormat("der".into()), "unknown key format \"der\""),
            (UnknownFormat("d'r".into()), "unknown key format (not shown)"),
            (BadKid, "kid must be 1 to 256 bytes without control characters"),
            (
                UnknownAlg("HS1".into()),
                "algorithm \"HS1\" is not one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA",
            ),
            (SecretBase64, "a stored secret must be unpadded base64url"),
            (SecretNotHmac(rs), "a secret can only be an HMAC key, not RS256"),
            (
                SecretTooShort { alg: Algorithm::HS384, min: 48, len: 47 },
                "an HS384 secret must be at least 48 bytes, this one has 47",
            ),
            (
                SecretIsKey,
                "this secret is a PEM or JWK key; store public keys with their own algorithm",
            ),
            (PrivatePem, "this is a private key; store only the public key"),
            (HmacPem, "an HMAC key is a secret, not a PEM"),
            (BadPem("InvalidKeyFormat".into()), "not a usable public key PEM (InvalidKeyFormat)"),
            (BadRsa("why".into()), "not a usable RSA public key (why)"),
            (
                RsaTooSmall { min: 2048, bits: 1024 },
                "RSA keys must have at least 2048 bits, this one has 1024",
            ),
            (
                RsaTooLarge { max: 8192, bits: 8200 },
                "RSA keys must have at most 8192 bits, this one has 8200",
            ),
            (PemWrongCurve(Algorithm::ES384), "this EC key is not on the curve of ES384"),
            (NotEd25519, "EdDSA keys must be Ed25519"),
            (JwkNotObject, "the JWK is not a JSON object"),
            (
                JwkPrivateMember("qi"),
                "the JWK carries private member \"qi\"; store only the public key",
            ),
            (JwkAlgMismatch(Algorithm::PS512), "the JWK's alg is not PS512"),
            (JwkNotForSignature, "the JWK is not a signature key (use is not \"sig\")"),
            (JwkMembers, "the JWK has missing or mistyped members"),
            (BadJwk("why".into()), "unusable JWK (why)"),
            (JwkModulusBase64, "the JWK's n is not base64url"),
            (JwkWrongCurve(Algorithm::ES256), "the JWK's curve does not match ES256"),
            (JwkCoordinateLength, "the JWK's coordinates have the wrong length"),
            (JwkEd25519Length, "the JWK's x has the wrong length"),
            (JwkKeyType(Algorithm::EdDSA), "the JWK's key type cannot be used for EdDSA"),
            (
                CannotVerify { alg: rs, reason: "InvalidKeyFormat".into() },
                "the key cannot verify RS256 (InvalidKeyFormat)",
            ),
            (JwksNotObject, "the JWKS is not a JSON object"),
            (JwksNoKeys, "the JWKS has no \"keys\" array"),
            (JwksEntryNotObject(3), "key 3 of the JWKS is not an object"),
            (JwksEntryNoKid(0), "key 0 of the JWKS has no string kid"),
            (JwksEntryNoAlg("k1".into()), "key \"k1\" of the JWKS names no alg"),
            (
                JwksEntry { kid: "k1".into(), error: Box::new(JwkModulusBase64) },
                "key \"k1\" of the JWKS: the JWK's n is not base64url",
            ),
            (
                JwksEntry { kid: "k\n1".into(), error: Box::new(BadKid) },
                "key (not shown) of the JWKS: kid must be 1 to 256 bytes without control characters",
            ),
            (JwksDuplicateKid("k1".into()), "the JWKS has kid \"k1\" twice"),
            (
                KidTaken("x".into()),
                "kid \"x\" already holds a different key; remove it first",
            ),
            (
                UnknownKeyAlg("RSA1_5".into()),
                "key management algorithm \"RSA1_5\" is not one of RSA-OAEP-256 ECDH-ES ECDH-ES+A256KW A256KW dir",
            ),
            (
                UnknownEnc("A128GCM".into()),
                "content encryption \"A128GCM\" is not one of A256GCM A128CBC-HS256",
            ),
            (
                DirNeedsEnc,
                "a dir key must name its content encryption (A256GCM or A128CBC-HS256)",
            ),
            (
                EncOnlyForDir,
                "only a dir key is bound to a content encryption; give none for this algorithm",
            ),
            (
                SecretLength { alg: "A256KW", len: 16 },
                "A256KW keys must be 32 bytes, this one has 16",
            ),
            (
                SecretNotSymmetric("ECDH-ES"),
                "a secret can only be an A256KW or dir key, not ECDH-ES",
            ),
            (SecretNotPem("dir"), "dir keys are secrets, not PEMs"),
            (
                DecryptionNotPrivate,
                "a decryption key must be a private key (PKCS#8 PEM or private JWK)",
            ),
            (
                BadDecryptionKey("InconsistentComponents".into()),
                "this private key cannot decrypt: InconsistentComponents",
            ),
            (
                UnsupportedCurve("secp256k1".into()),
                "curve \"secp256k1\" is not one of P-256 P-384 P-521",
            ),
            (EcPublicMismatch, "the JWK's x and y are not the public key of its d"),
            (
                JwkNotForEncryption,
                "the JWK is not an encryption key (use is not \"enc\")",
            ),
            (JwkKeyAlgMismatch("A256KW"), "the JWK's alg is not A256KW"),
            (
                JwkKeyTypeFor("RSA-OAEP-256"),
                "the JWK's key type cannot be used for RSA-OAEP-256",
            ),
            (EncryptFailed, "the crypto library could not encrypt the token"),
            (
                KidTaken("<script>".into()),
                "kid (not shown) already holds a different key; remove it first",
            ),
        ];
        for (k, text) in cases {
            assert_eq!(k.to_string(), text);
            let e = Error::from(k);
            assert_eq!(e.message(), format!("invalid key: {text}"));
            assert_eq!((e.class(), e.detail()), (Class::BadKey, None));
        }
    }
}
