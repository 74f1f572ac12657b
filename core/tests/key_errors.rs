//! Every way a key can be refused, driven through the public key functions
//! with real material: the `KeyError` each one is, and the exact message it
//! gives. The extension shows these texts to SQL callers, so they are part of
//! its interface.

use jsonwebtoken::Algorithm;
use jwt_rls_core::keys::{check_kid, encode_secret, parse_jwks};
use jwt_rls_core::{Error, Format, Key, KeyError};
use serde_json::{json, Value};

/// 32 random bytes (`openssl rand -hex 32`), a valid HS256 secret.
const SECRET_32: &str = "e5c08e5f8ed2cac5852b73719f6e74764019917be73ac34202fa16ad9561938f";
/// 16 random bytes (`openssl rand -hex 16`), too short for any HMAC alg.
const SECRET_16: &str = "47ee1fd43484a0257c8a200ad997a1c3";

/// A 1024-bit RSA public key (`openssl genpkey`), below the 2048-bit floor.
const RSA_1024_PEM: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDTkYo8X0rF//nPGduggAF85cMy
AtSrKM/emFjUfdtye3SLyS2NMS/UJZ+h/frQ16sNY07LS3iFNwy3nQXfiIiJ6u1C
GsPQJ7s+j2oKDB0klPs+VCr0Unri8z+8DsJlcz5byKbCUTk1GfdmlRINME0Vwn+e
VALC+eqIc6ki/DB+RQIDAQAB
-----END PUBLIC KEY-----
";
/// The same key's modulus as a JWK `n`.
const RSA_1024_N: &str = "05GKPF9Kxf_5zxnboIABfOXDMgLUqyjP3phY1H3bcnt0i8ktjTEv1CWfof360NerDWNOy0t4hTcMt50F34iIiertQhrD0Ce7Po9qCgwdJJT7PlQq9FJ64vM_vA7CZXM-W8imwlE5NRn3ZpUSDTBNFcJ_nlQCwvnqiHOpIvwwfkU";
/// An Ed448 public key (`openssl genpkey -algorithm ed448`).
const ED448_PEM: &str = "-----BEGIN PUBLIC KEY-----
MEMwBQYDK2VxAzoAw0tFqLUmC07TBwivcJOl4Wklde5m5rLbKAPZfuZ7O5SNowfd
XkdpqvqslefzdtdT12Ts77x28COA
-----END PUBLIC KEY-----
";

/// An SPKI with the Ed25519 OID around a 31-byte key (made by hand).
const ED25519_31_PEM: &str = "-----BEGIN PUBLIC KEY-----
MCkwBQYDK2VwAyAA5wptinyLSbs5l3ERiLSzwejY0+W9u3ZNc4fVro/5Sw==
-----END PUBLIC KEY-----
";

const RS256_PEM: &str = include_str!("vectors/keys.pem/rs256-0fdfe147.pem");
const ES384_PEM: &str = include_str!("vectors/keys.pem/es384-9ab0b397.pem");
const JWKS: &str = include_str!("vectors/keys.jwks.json");

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Unpadded base64url, as JWK members are written (and as the key table
/// stores HMAC secrets, hence the helper's name).
fn base64_url(bytes: &[u8]) -> String {
    encode_secret(bytes)
}

fn secret(hex_bytes: &str) -> String {
    encode_secret(&hex(hex_bytes))
}

/// A public JWK of the vector set, by its alg, with `edit` applied.
fn jwk(alg: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let doc: Value = serde_json::from_str(JWKS).unwrap();
    let mut key = doc["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["alg"] == alg)
        .unwrap()
        .clone();
    edit(key.as_object_mut().unwrap());
    key.to_string()
}

fn key_err(alg: &str, format: Format, material: &str) -> Error {
    Key::new("k", alg, format, material).unwrap_err()
}

fn jwks_err(doc: Value) -> Error {
    parse_jwks(&doc.to_string()).unwrap_err()
}

/// Each case: the error, the refusal it must be, and its message exactly.
fn cases() -> Vec<(Error, KeyError, &'static str)> {
    use KeyError::*;
    let hs = |k: &str| json!({"kid": "a", "alg": "HS256", "kty": "oct", "k": k});
    vec![
        (Format::from_name("der").unwrap_err(), UnknownFormat("der".into()), "invalid key: unknown key format \"der\""),
        (Format::from_name("p e m").unwrap_err(), UnknownFormat("p e m".into()), "invalid key: unknown key format (not shown)"),
        (check_kid("").unwrap_err(), BadKid, "invalid key: kid must be 1 to 256 bytes without control characters"),
        (
            Key::new("a\nb", "HS256", Format::Secret, &secret(SECRET_32)).unwrap_err(),
            BadKid,
            "invalid key: kid must be 1 to 256 bytes without control characters",
        ),
        (
            key_err("HS1", Format::Secret, &secret(SECRET_32)),
            UnknownAlg("HS1".into()),
            "invalid key: algorithm \"HS1\" is not one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA",
        ),
        (key_err("HS256", Format::Secret, "c2VjcmV0=="), SecretBase64, "invalid key: a stored secret must be unpadded base64url"),
        (
            key_err("RS256", Format::Secret, &secret(SECRET_32)),
            SecretNotHmac(Algorithm::RS256),
            "invalid key: a secret can only be an HMAC key, not RS256",
        ),
        (
            key_err("HS256", Format::Secret, &secret(SECRET_16)),
            SecretTooShort { alg: Algorithm::HS256, min: 32, len: 16 },
            "invalid key: an HS256 secret must be at least 32 bytes, this one has 16",
        ),
        (
            key_err("HS512", Format::Secret, &secret(SECRET_32)),
            SecretTooShort { alg: Algorithm::HS512, min: 64, len: 32 },
            "invalid key: an HS512 secret must be at least 64 bytes, this one has 32",
        ),
        (
            key_err("HS256", Format::Secret, &encode_secret(RS256_PEM.as_bytes())),
            SecretIsKey,
            "invalid key: this secret is a PEM or JWK key; store public keys with their own algorithm",
        ),
        (
            key_err("HS256", Format::Secret, &encode_secret(jwk("ES256", |_| {}).as_bytes())),
            SecretIsKey,
            "invalid key: this secret is a PEM or JWK key; store public keys with their own algorithm",
        ),
        (
            key_err("RS256", Format::Pem, "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"),
            PrivatePem,
            "invalid key: this is a private key; store only the public key",
        ),
        (key_err("HS256", Format::Pem, RS256_PEM), HmacPem, "invalid key: an HMAC key is a secret, not a PEM"),
        (key_err("RS256", Format::Pem, ED448_PEM), BadPem("InvalidKeyFormat".into()), "invalid key: not a usable public key PEM (InvalidKeyFormat)"),
        (
            key_err("RS256", Format::Pem, "-----BEGIN RSA PUBLIC KEY-----\nMAMCAQE=\n-----END RSA PUBLIC KEY-----\n"),
            BadRsa("RSA key invalid: InvalidEncoding".into()),
            "invalid key: not a usable RSA public key (RSA key invalid: InvalidEncoding)",
        ),
        (
            key_err("RS256", Format::Pem, RSA_1024_PEM),
            RsaTooSmall { min: 2048, bits: 1024 },
            "invalid key: RSA keys must have at least 2048 bits, this one has 1024",
        ),
        (key_err("ES256", Format::Pem, ES384_PEM), PemWrongCurve(Algorithm::ES256), "invalid key: this EC key is not on the curve of ES256"),
        (key_err("EdDSA", Format::Pem, ED25519_31_PEM), NotEd25519, "invalid key: EdDSA keys must be Ed25519"),
        (key_err("RS256", Format::Jwk, "[]"), JwkNotObject, "invalid key: the JWK is not a JSON object"),
        (
            key_err("RS256", Format::Jwk, &jwk("RS256", |k| drop(k.insert("d".into(), json!("AQAB"))))),
            JwkPrivateMember("d"),
            "invalid key: the JWK carries private member \"d\"; store only the public key",
        ),
        (key_err("RS384", Format::Jwk, &jwk("RS256", |_| ())), JwkAlgMismatch(Algorithm::RS384), "invalid key: the JWK's alg is not RS384"),
        (
            key_err("RS256", Format::Jwk, &jwk("RS256", |k| drop(k.insert("use".into(), json!("enc"))))),
            JwkNotForSignature,
            "invalid key: the JWK is not a signature key (use is not \"sig\")",
        ),
        (
            key_err("RS256", Format::Jwk, &jwk("RS256", |k| drop(k.insert("kid".into(), json!(7))))),
            JwkMembers,
            "invalid key: the JWK has missing or mistyped members",
        ),
        (
            key_err("RS256", Format::Jwk, &jwk("RS256", |k| drop(k.insert("n".into(), json!("n+/"))))),
            JwkModulusBase64,
            "invalid key: the JWK's n is not base64url",
        ),
        (
            key_err("RS256", Format::Jwk, &jwk("RS256", |k| drop(k.insert("n".into(), json!(RSA_1024_N))))),
            RsaTooSmall { min: 2048, bits: 1024 },
            "invalid key: RSA keys must have at least 2048 bits, this one has 1024",
        ),
        (
            // 1025 bytes, the top bit set: an 8200-bit modulus, beyond
            // what the RS and PS algorithms verify.
            key_err("RS256", Format::Jwk, &jwk("RS256", |k| {
                let mut n = vec![0xc5u8; 1025];
                n[1024] = 0x01;
                k.insert("n".into(), json!(base64_url(&n)));
            })),
            RsaTooLarge { max: 8192, bits: 8200 },
            "invalid key: RSA keys must have at most 8192 bits, this one has 8200",
        ),
        (
            key_err("HS256", Format::Jwk, &jwk("HS256", |k| drop(k.insert("k".into(), json!("k+/"))))),
            BadJwk("Base64 error: Invalid symbol 43, offset 1.".into()),
            "invalid key: unusable JWK (Base64 error: Invalid symbol 43, offset 1.)",
        ),
        (
            key_err("ES256", Format::Jwk, &jwk("ES256", |k| drop(k.insert("crv".into(), json!("P-384"))))),
            JwkWrongCurve(Algorithm::ES256),
            "invalid key: the JWK's curve does not match ES256",
        ),
        (
            key_err("ES256", Format::Jwk, &jwk("ES256", |k| drop(k.insert("x".into(), json!("AAAA"))))),
            JwkCoordinateLength,
            "invalid key: the JWK's coordinates have the wrong length",
        ),
        (
            key_err("EdDSA", Format::Jwk, &jwk("EdDSA", |k| drop(k.insert("crv".into(), json!("P-256"))))),
            NotEd25519,
            "invalid key: EdDSA keys must be Ed25519",
        ),
        (
            key_err("EdDSA", Format::Jwk, &jwk("EdDSA", |k| drop(k.insert("x".into(), json!("AAAA"))))),
            JwkEd25519Length,
            "invalid key: the JWK's x has the wrong length",
        ),
        (
            key_err("ES256", Format::Jwk, &jwk("RS256", |k| drop(k.remove("alg")))),
            JwkKeyType(Algorithm::ES256),
            "invalid key: the JWK's key type cannot be used for ES256",
        ),
        (jwks_err(json!([])), JwksNotObject, "invalid key: the JWKS is not a JSON object"),
        (jwks_err(json!({"keys": {}})), JwksNoKeys, "invalid key: the JWKS has no \"keys\" array"),
        (jwks_err(json!({"keys": [{"use": "enc"}, 1]})), JwksEntryNotObject(1), "invalid key: key 1 of the JWKS is not an object"),
        (jwks_err(json!({"keys": [{"kid": 7}]})), JwksEntryNoKid(0), "invalid key: key 0 of the JWKS has no string kid"),
        (
            // Coordinates of the curve's size that are not a point on it:
            // refused when the key is parsed, at import.
            key_err("ES256", Format::Jwk, &jwk("ES256", |k| {
                k.insert("x".into(), json!(base64_url(&[1; 32])));
                k.insert("y".into(), json!(base64_url(&[1; 32])));
            })),
            CannotVerify { alg: Algorithm::ES256, reason: "InvalidEncoding".into() },
            "invalid key: the key cannot verify ES256 (InvalidEncoding)",
        ),
        (jwks_err(json!({"keys": [{"kid": "a", "kty": "OKP", "crv": "X25519"}]})), JwksEntryNoAlg("a".into()), "invalid key: key \"a\" of the JWKS names no alg"),
        (
            jwks_err(json!({"keys": [hs(&secret(SECRET_16))]})),
            JwksEntry { kid: "a".into(), error: Box::new(SecretTooShort { alg: Algorithm::HS256, min: 32, len: 16 }) },
            "invalid key: key \"a\" of the JWKS: an HS256 secret must be at least 32 bytes, this one has 16",
        ),
        (
            jwks_err(json!({"keys": [{"kid": "a b", "alg": "HS1"}]})),
            JwksEntry { kid: "a b".into(), error: Box::new(UnknownAlg("HS1".into())) },
            "invalid key: key (not shown) of the JWKS: algorithm \"HS1\" is not one of HS256 HS384 HS512 RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA",
        ),
        (
            jwks_err(json!({"keys": [hs(&secret(SECRET_32)), hs(&secret(SECRET_32))]})),
            JwksDuplicateKid("a".into()),
            "invalid key: the JWKS has kid \"a\" twice",
        ),
    ]
}

#[test]
fn every_key_problem_has_its_exact_message() {
    let mut wrong = vec![];
    for (i, (err, want, text)) in cases().into_iter().enumerate() {
        assert_eq!(err, Error::Key(want), "case {i}");
        assert_eq!(
            err.class(),
            jwt_rls_core::Class::BadKey,
            "case {i}: {err:?}"
        );
        assert_eq!(err.detail(), None, "case {i}");
        if err.message() != text {
            wrong.push(format!(
                "case {i}:\n  got  {}\n  want {text}",
                err.message()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Random bytes are a fine HMAC secret even when they happen to start
/// with whitespace and '{' (once refused as "a JWK", about one random
/// 64-byte secret in a few hundred).
#[test]
fn random_secrets_that_look_like_json_at_first_are_accepted() {
    let mut bytes = hex(SECRET_32);
    bytes.insert(0, b'{');
    bytes.insert(0, b' ');
    assert!(Key::new("k", "HS256", Format::Secret, &encode_secret(&bytes)).is_ok());
    let mut armour = b"x-----BEGIN".to_vec();
    armour.extend(hex(SECRET_32));
    assert_eq!(
        Key::new("k", "HS256", Format::Secret, &encode_secret(&armour)).unwrap_err(),
        Error::Key(KeyError::SecretIsKey)
    );
}

/// A JWKS shaped like the ones identity providers publish: an RSA key with
/// no `alg` but an `x5c` chain, `x5t` and `issuer` (Microsoft Entra ID), an
/// encryption key beside the signing keys (Keycloak), a key of a curve
/// jwt_rls does not verify with, and a kid listed twice.
#[test]
fn provider_jwks_import_what_verifies_and_skip_the_rest() {
    let rsa: Value = serde_json::from_str(&jwk("RS256", |k| {
        k.remove("alg");
        k.insert("kid".into(), json!("entra"));
        k.insert("x5t".into(), json!("abc"));
        k.insert("x5c".into(), json!(["MIIC...not-a-real-cert"]));
        k.insert(
            "issuer".into(),
            json!("https://login.microsoftonline.com/{tenantid}/v2.0"),
        );
    }))
    .unwrap();
    let es: Value = serde_json::from_str(&jwk("ES256", |k| {
        k.insert("kid".into(), json!("twice"));
    }))
    .unwrap();
    let doc = json!({"keys": [
        rsa,
        {"kid": "enc-1", "kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "n": "AQAB", "e": "AQAB"},
        {"kid": "enc-2", "kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "AA", "y": "AA"},
        {"kid": "k1", "kty": "EC", "crv": "secp256k1", "x": "AA", "y": "AA"},
        es.clone(),
        es,
    ]});
    let jwks = parse_jwks(&doc.to_string()).unwrap();
    assert_eq!(jwks.encryption, 2);
    assert_eq!(jwks.keys.len(), 1, "{:?}", jwks.keys);
    let entra = &jwks.keys[0];
    assert_eq!((entra.kid.as_str(), entra.alg.as_str()), ("entra", "RS256"));
    // Only the key itself is stored, never the certificate chain.
    let stored: Value = serde_json::from_str(&entra.material).unwrap();
    let mut members: Vec<&str> = stored
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["e", "kid", "kty", "n", "use"]);
    assert!(Key::new(&entra.kid, &entra.alg, Format::Jwk, &entra.material).is_ok());
    assert_eq!(
        jwks.skipped,
        [
            KeyError::JwksEntryNoAlg("k1".into()),
            KeyError::JwksDuplicateKid("twice".into()),
        ]
    );
}

/// A key fetched from one issuer's JWKS verifies that issuer's tokens only,
/// whatever the policy accepts (security review: one provider could sign
/// for another).
#[test]
fn a_key_bound_to_an_issuer_verifies_only_its_tokens() {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use jwt_rls_core::{verify, KeySet, Policy};
    let secret = hex(SECRET_32);
    let mut key = Key::new("a-1", "HS256", Format::Secret, &encode_secret(&secret)).unwrap();
    let unbound = key.fingerprint;
    key.bind_issuer("https://a.example");
    assert_ne!(
        key.fingerprint, unbound,
        "the binding is part of the fingerprint"
    );
    let keys = KeySet::new(vec![key]);
    let token = |iss: &str| {
        let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some("a-1".into());
        let claims = json!({"iss": iss, "sub": "u", "exp": 4102444800u64});
        encode(&header, &claims, &EncodingKey::from_secret(&secret)).unwrap()
    };
    let any = Policy::default();
    let both = Policy {
        issuers: vec!["https://a.example".into(), "https://b.example".into()],
        ..Policy::default()
    };
    for policy in [&any, &both] {
        assert!(verify(&token("https://a.example"), &keys, policy, 1_800_000_000).is_ok());
        assert_eq!(
            verify(&token("https://b.example"), &keys, policy, 1_800_000_000).unwrap_err(),
            Error::Issuer
        );
    }
    let only_b = Policy {
        issuers: vec!["https://b.example".into()],
        ..Policy::default()
    };
    assert_eq!(
        verify(&token("https://a.example"), &keys, &only_b, 1_800_000_000).unwrap_err(),
        Error::Issuer
    );
}
