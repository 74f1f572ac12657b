//! Nested JWTs (JWS inside JWE) encrypted by independent libraries
//! (jwcrypto, joserfc: tests/jwe/generate.py), and the hostile list: every
//! token a decrypting verifier must refuse, each with the error it must
//! give. The inner tokens are the PyJWT-signed vectors of tests/vectors.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_rls_core::error::Part;
use jwt_rls_core::keys::parse_jwks;
use jwt_rls_core::{
    encrypt, verify, verify_any, Class, DecryptionKey, DecryptionKeySet, Error, Format, Key,
    KeySet, Policy,
};
use serde_json::{json, Map, Value};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
/// Inside every valid token's [nbf, exp) (see shared_vectors.rs).
const NOW: i64 = 1_800_000_000;

fn read(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/{name}")).unwrap()).unwrap()
}

fn signing_keys() -> KeySet {
    let text = std::fs::read_to_string(format!("{DIR}/vectors/keys.jwks.json")).unwrap();
    KeySet::new(
        parse_jwks(&text)
            .unwrap()
            .keys
            .iter()
            .map(|e| Key::new(&e.kid, &e.alg, Format::Jwk, &e.material).unwrap())
            .collect(),
    )
}

fn key_entries() -> Vec<Value> {
    read("jwe/keys.json")["keys"].as_array().unwrap().clone()
}

fn entry(kid: &str) -> Value {
    key_entries().into_iter().find(|k| k["kid"] == kid).unwrap()
}

/// The decryption key `from`'s private JWK, stored under `kid`.
fn dkey_as(kid: &str, from: &Value) -> DecryptionKey {
    DecryptionKey::new(
        kid,
        from["alg"].as_str().unwrap(),
        from["enc"].as_str(),
        Format::Jwk,
        &from["private_jwk"].to_string(),
    )
    .unwrap()
}

/// Every decryption key of keys.json except the "other" ones (which hold
/// different material for the wrong-key tests).
fn dkeys() -> DecryptionKeySet {
    DecryptionKeySet::new(
        key_entries()
            .iter()
            .filter(|k| !k["kid"].as_str().unwrap().contains("other"))
            .map(|k| dkey_as(k["kid"].as_str().unwrap(), k))
            .collect(),
    )
}

fn policy() -> Policy {
    Policy {
        issuers: vec!["https://issuer.example".into()],
        audiences: vec!["jwt-rls-tests".into()],
        leeway: 0,
        max_bytes: 64 * 1024,
        ..Policy::default()
    }
}

fn inner_claims(name: &str) -> Value {
    let cases = read("vectors/tokens.json");
    cases
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()["claims"]
        .clone()
}

fn vectors() -> Vec<Value> {
    read("jwe/vectors.json").as_array().unwrap().clone()
}

fn vector(name: &str) -> String {
    vectors()
        .into_iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no vector {name}"))["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn check(token: &str, dkeys: &DecryptionKeySet) -> Result<Value, Error> {
    let v = verify_any(token, &signing_keys(), dkeys, &policy(), NOW)?;
    Ok(serde_json::from_str(&v.payload).unwrap())
}

fn refused(token: &str) -> Error {
    check(token, &dkeys()).unwrap_err()
}

#[test]
fn every_alg_and_enc_from_both_libraries_decrypts_and_verifies() {
    let dkeys = dkeys();
    let vectors = vectors();
    assert!(vectors.len() >= 32, "{}", vectors.len());
    let mut seen = std::collections::BTreeSet::new();
    for v in &vectors {
        let name = v["name"].as_str().unwrap();
        if name.ends_with("/no-kid") {
            continue;
        }
        let claims =
            check(v["token"].as_str().unwrap(), &dkeys).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(claims, inner_claims(v["inner"].as_str().unwrap()), "{name}");
        seen.insert((
            v["alg"].as_str().unwrap().to_string(),
            v["enc"].as_str().unwrap().to_string(),
            v["lib"].as_str().unwrap().to_string(),
        ));
    }
    for alg in ["RSA-OAEP-256", "ECDH-ES", "ECDH-ES+A256KW", "A256KW", "dir"] {
        for enc in ["A256GCM", "A128CBC-HS256"] {
            for lib in ["jwcrypto", "joserfc"] {
                assert!(
                    seen.contains(&(alg.into(), enc.into(), lib.into())),
                    "{alg} {enc} {lib}"
                );
            }
        }
    }
}

#[test]
fn a_token_without_kid_uses_the_only_active_key() {
    let token = vector("rsa-oaep-1/A256GCM/jwcrypto/no-kid");
    let one = DecryptionKeySet::new(vec![dkey_as("rsa-oaep-1", &entry("rsa-oaep-1"))]);
    assert!(check(&token, &one).is_ok());
    // With several active keys the token must name one: keys are never tried
    // in turn.
    assert_eq!(refused(&token), Error::AmbiguousDecryptionKey(9));
}

#[test]
fn pem_keys_decrypt_like_their_jwks() {
    for (kid, name) in [
        ("rsa-oaep-1", "rsa-oaep-1/A128CBC-HS256/joserfc"),
        ("ecdh-p384", "ecdh-p384/A256GCM/jwcrypto"),
        ("ecdhkw-p521", "ecdhkw-p521/A256GCM/joserfc"),
    ] {
        let e = entry(kid);
        let key = DecryptionKey::new(
            kid,
            e["alg"].as_str().unwrap(),
            None,
            Format::Pem,
            e["pem"].as_str().unwrap(),
        )
        .unwrap();
        let set = DecryptionKeySet::new(vec![key]);
        assert!(check(&vector(name), &set).is_ok(), "{kid}");
    }
}

/// The token with its header replaced by `f(header)`, re-encoded.
fn with_header(token: &str, f: impl FnOnce(&mut Map<String, Value>)) -> String {
    let (h, rest) = token.split_once('.').unwrap();
    let mut header: Map<String, Value> =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).unwrap()).unwrap();
    f(&mut header);
    let h = URL_SAFE_NO_PAD.encode(Value::Object(header).to_string());
    format!("{h}.{rest}")
}

fn with_raw_header(token: &str, header: &str) -> String {
    let (_, rest) = token.split_once('.').unwrap();
    format!("{}.{rest}", URL_SAFE_NO_PAD.encode(header))
}

/// The token with segment `i` (0 = header .. 4 = tag) decoded, changed by
/// `f` and encoded again.
fn with_segment(token: &str, i: usize, f: impl FnOnce(&mut Vec<u8>)) -> String {
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    let mut bytes = URL_SAFE_NO_PAD.decode(&parts[i]).unwrap();
    f(&mut bytes);
    parts[i] = URL_SAFE_NO_PAD.encode(bytes);
    parts.join(".")
}

fn flip(bytes: &mut [u8]) {
    bytes[0] ^= 1;
}

const GCM: &str = "dir-gcm/A256GCM/jwcrypto";
const CBC: &str = "dir-cbc/A128CBC-HS256/joserfc";

#[test]
fn hostile_tokens_made_by_the_libraries_are_refused() {
    let cases = read("jwe/hostile.json");
    for case in cases.as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let e = refused(case["token"].as_str().unwrap());
        let expect = case["expect"].as_str().unwrap();
        assert!(
            format!("{e:?}").starts_with(expect),
            "{name}: expected {expect}, got {e:?}"
        );
    }
}

#[test]
fn altered_tokens_fail_to_decrypt_with_one_indistinguishable_error() {
    for name in [GCM, CBC, "a256kw-1/A128CBC-HS256/jwcrypto"] {
        let t = vector(name);
        assert!(check(&t, &dkeys()).is_ok(), "{name}");
        for (what, segment) in [("iv", 2), ("ciphertext", 3), ("tag", 4)] {
            let bad = with_segment(&t, segment, |b| flip(b));
            assert_eq!(refused(&bad), Error::DecryptionFailed, "{name}: {what}");
            let last = with_segment(&t, segment, |b| *b.last_mut().unwrap() ^= 0x80);
            assert_eq!(
                refused(&last),
                Error::DecryptionFailed,
                "{name}: {what} end"
            );
        }
        // The header is the AAD: a member added to it, the token otherwise
        // intact, must not decrypt.
        let aad = with_header(&t, |h| {
            h.insert("x".into(), json!(1));
        });
        assert_eq!(refused(&aad), Error::DecryptionFailed, "{name}: aad");
    }
    // A flipped bit of a wrapped or OAEP-encrypted key gives the same error
    // as a flipped tag: no oracle tells the two apart.
    for name in [
        "rsa-oaep-1/A256GCM/jwcrypto",
        "rsa-oaep-1/A128CBC-HS256/joserfc",
        "a256kw-1/A256GCM/joserfc",
        "ecdhkw-p256/A128CBC-HS256/jwcrypto",
    ] {
        let bad = with_segment(&vector(name), 1, |b| flip(b));
        assert_eq!(refused(&bad), Error::DecryptionFailed, "{name}");
    }
}

#[test]
fn the_wrong_key_under_the_right_kid_fails_like_an_altered_token() {
    for (kid, other, name) in [
        ("rsa-oaep-1", "rsa-oaep-other", "rsa-oaep-1/A256GCM/joserfc"),
        (
            "a256kw-1",
            "a256kw-other",
            "a256kw-1/A128CBC-HS256/jwcrypto",
        ),
        ("ecdh-p256", "ecdh-other-p256", "ecdh-p256/A256GCM/jwcrypto"),
    ] {
        let wrong = DecryptionKeySet::new(vec![dkey_as(kid, &entry(other))]);
        assert_eq!(
            check(&vector(name), &wrong).unwrap_err(),
            Error::DecryptionFailed,
            "{name}"
        );
    }
    // A dir key of the right enc but other bytes.
    let mut e = entry("dir-gcm");
    e["private_jwk"]["k"] = json!(URL_SAFE_NO_PAD.encode([9u8; 32]));
    let wrong = DecryptionKeySet::new(vec![dkey_as("dir-gcm", &e)]);
    assert_eq!(
        check(&vector(GCM), &wrong).unwrap_err(),
        Error::DecryptionFailed
    );
}

#[test]
fn segment_lengths_are_checked_before_decrypting() {
    let t = vector(GCM);
    let short_tag = with_segment(&t, 4, |b| b.truncate(15));
    assert_eq!(
        refused(&short_tag),
        Error::JweLength {
            part: Part::Tag,
            len: 15,
            expected: 16
        }
    );
    let long_iv = with_segment(&t, 2, |b| b.extend_from_slice(&[0; 4]));
    assert_eq!(
        refused(&long_iv),
        Error::JweLength {
            part: Part::Iv,
            len: 16,
            expected: 12
        }
    );
    // dir carries no encrypted key.
    let parts: Vec<&str> = t.split('.').collect();
    let with_ek = format!("{}.AAAA.{}.{}.{}", parts[0], parts[2], parts[3], parts[4]);
    assert!(matches!(
        refused(&with_ek),
        Error::JweLength {
            part: Part::EncryptedKey,
            len: 3,
            expected: 0
        }
    ));
    let cbc = with_segment(&vector(CBC), 3, |b| b.truncate(b.len() - 1));
    assert!(matches!(
        refused(&cbc),
        Error::JweLength {
            part: Part::Ciphertext,
            ..
        }
    ));
    let rsa = with_segment(&vector("rsa-oaep-1/A256GCM/jwcrypto"), 1, |b| {
        b.truncate(255)
    });
    assert!(matches!(
        refused(&rsa),
        Error::JweLength {
            part: Part::EncryptedKey,
            len: 255,
            expected: 256
        }
    ));
}

/// A change made to a token's header.
type HeaderEdit = Box<dyn Fn(&mut Map<String, Value>)>;

fn epk_token() -> String {
    vector("ecdh-p256/A256GCM/joserfc")
}

#[test]
fn ephemeral_keys_off_the_curve_or_on_another_are_refused() {
    let t = epk_token();
    let other_curve = entry("ecdh-p384")["public_jwk"].clone();
    let cases: Vec<(&str, HeaderEdit, &str)> = vec![
        (
            "point not on the curve",
            Box::new(|h| {
                let y = h["epk"]["y"].as_str().unwrap().to_string();
                let mut y = URL_SAFE_NO_PAD.decode(y).unwrap();
                y[31] ^= 1;
                h["epk"]["y"] = json!(URL_SAFE_NO_PAD.encode(y));
            }),
            "not on the curve",
        ),
        (
            "identity (0, 0)",
            Box::new(|h| {
                h["epk"]["x"] = json!(URL_SAFE_NO_PAD.encode([0u8; 32]));
                h["epk"]["y"] = json!(URL_SAFE_NO_PAD.encode([0u8; 32]));
            }),
            "not on the curve",
        ),
        (
            "a P-384 point for a P-256 key",
            Box::new(move |h| {
                h["epk"] =
                    json!({"kty":"EC","crv":"P-384","x":other_curve["x"],"y":other_curve["y"]});
            }),
            "wrong curve",
        ),
        (
            "P-384 coordinates claimed as P-256",
            Box::new(|h| {
                let c = entry("ecdh-p384")["public_jwk"].clone();
                h["epk"] = json!({"kty":"EC","crv":"P-256","x":c["x"],"y":c["y"]});
            }),
            "wrong coordinate length",
        ),
        (
            "missing epk",
            Box::new(|h| {
                h.remove("epk");
            }),
            "missing",
        ),
        (
            "an OKP epk",
            Box::new(|h| {
                h["epk"] = json!({"kty":"OKP","crv":"X25519","x":"AAAA"});
            }),
            "not an EC key",
        ),
        (
            "coordinates not base64url",
            Box::new(|h| {
                h["epk"]["x"] = json!("a+b/");
            }),
            "not base64url",
        ),
    ];
    for (name, f, why) in cases {
        let bad = with_header(&t, f);
        let e = refused(&bad);
        assert_eq!(e, Error::BadEpk(why), "{name}");
        assert_eq!(e.class(), Class::Malformed);
    }
    let not_object = with_header(&t, |h| {
        h["epk"] = json!("x");
    });
    assert_eq!(refused(&not_object), Error::HeaderType("epk"));
}

#[test]
fn headers_are_parsed_as_strictly_as_a_jws_header() {
    let t = vector(GCM);
    assert_eq!(
        refused(&with_raw_header(
            &t,
            r#"{"alg":"dir","enc":"A256GCM","cty":"JWT","kid":"dir-gcm","kid":"dir-gcm"}"#
        )),
        Error::DuplicateKey(Part::Header)
    );
    assert_eq!(
        refused(&with_raw_header(&t, r#"["dir"]"#)),
        Error::NotObject(Part::Header)
    );
    assert!(matches!(
        refused(&with_raw_header(&t, r#"{"alg":"dir""#)),
        Error::Json(Part::Header, _)
    ));
    let crit = with_header(&t, |h| {
        h.insert("crit".into(), json!(["exp"]));
        h.insert("exp".into(), json!(1));
    });
    assert_eq!(refused(&crit), Error::UnsupportedHeader("crit"));
    let zip = with_header(&t, |h| {
        h.insert("zip".into(), json!("DEF"));
    });
    assert_eq!(refused(&zip), Error::UnsupportedHeader("zip"));
    for (member, value, expect) in [
        (
            "alg",
            json!("A128KW"),
            Error::UnsupportedKeyAlg("A128KW".into()),
        ),
        (
            "alg",
            json!("RSA1_5"),
            Error::UnsupportedKeyAlg("RSA1_5".into()),
        ),
        (
            "alg",
            json!("none"),
            Error::UnsupportedKeyAlg("none".into()),
        ),
        (
            "enc",
            json!("A256CBC-HS512"),
            Error::UnsupportedEnc("A256CBC-HS512".into()),
        ),
        ("enc", json!(["A256GCM"]), Error::HeaderType("enc")),
        ("kid", json!(1), Error::HeaderType("kid")),
        ("cty", json!("JOSE"), Error::NotNested(Some("JOSE".into()))),
        ("p2c", json!(1_000_000_000), Error::UnsupportedHeader("p2c")),
    ] {
        let bad = with_header(&t, |h| {
            h.insert(member.into(), value);
        });
        assert_eq!(refused(&bad), expect, "{member}");
    }
    let no_enc = with_header(&t, |h| {
        h.remove("enc");
    });
    assert_eq!(refused(&no_enc), Error::UnsupportedEnc(String::new()));
}

#[test]
fn bad_base64_in_any_segment_is_refused() {
    let t = vector("a256kw-1/A256GCM/jwcrypto");
    let parts: Vec<&str> = t.split('.').collect();
    for (i, part) in [
        (0, Part::Header),
        (1, Part::EncryptedKey),
        (2, Part::Iv),
        (3, Part::Ciphertext),
        (4, Part::Tag),
    ] {
        let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        p[i].push('=');
        assert_eq!(refused(&p.join(".")), Error::BadCharacter, "{part}");
        // A length of 4n+1 cannot be base64.
        let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        p[i] = "QUJDR".into();
        assert_eq!(refused(&p.join(".")), Error::Base64(part), "{part}");
    }
    let mut p: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
    p[2].clear();
    assert_eq!(refused(&p.join(".")), Error::Base64(Part::Iv));
}

#[test]
fn key_choice_follows_the_kid_and_the_key_binding() {
    let t = vector(GCM);
    let unknown = with_header(&t, |h| {
        h["kid"] = json!("nope");
    });
    assert_eq!(
        refused(&unknown),
        Error::UnknownDecryptionKid("nope".into())
    );
    // A dir token naming the A256KW key: the key's algorithm is its own.
    let other_alg = with_header(&t, |h| {
        h["kid"] = json!("a256kw-1");
    });
    assert!(matches!(refused(&other_alg), Error::AlgMismatch { .. }));
    // The dir-gcm key is bound to A256GCM.
    let other_enc = with_header(&vector(CBC), |h| {
        h["kid"] = json!("dir-gcm");
    });
    assert_eq!(
        refused(&other_enc),
        Error::EncMismatch {
            kid: "dir-gcm".into(),
            key_enc: "A256GCM",
            token_enc: "A128CBC-HS256"
        }
    );
    let mut disabled = dkey_as("dir-gcm", &entry("dir-gcm"));
    disabled.enabled = false;
    assert_eq!(
        check(&t, &DecryptionKeySet::new(vec![disabled])).unwrap_err(),
        Error::DecryptionKeyDisabled("dir-gcm".into())
    );
    let mut expired = dkey_as("dir-gcm", &entry("dir-gcm"));
    expired.not_after = Some(NOW);
    assert_eq!(
        check(&t, &DecryptionKeySet::new(vec![expired])).unwrap_err(),
        Error::DecryptionKeyNotInWindow("dir-gcm".into())
    );
}

#[test]
fn without_a_decryption_key_every_jwe_is_refused_before_it_is_read() {
    let none = DecryptionKeySet::default();
    for t in [vector(GCM), "x.y.z.w.v".to_string(), "....".to_string()] {
        let e = check(&t, &none).unwrap_err();
        assert_eq!(e, Error::EncryptedNotAccepted);
        assert_eq!(e.class(), Class::Malformed);
    }
    // The JWE cases of the signed vector set, too; and `verify` alone still
    // refuses every JWE as before.
    for case in read("vectors/tokens.json").as_array().unwrap() {
        if case["reason"].as_str().unwrap().starts_with("jwe") {
            let t = case["token"].as_str().unwrap();
            assert_eq!(check(t, &none).unwrap_err(), Error::EncryptedNotAccepted);
            assert_eq!(
                verify(t, &signing_keys(), &policy(), NOW).unwrap_err(),
                Error::SegmentCount(5)
            );
        }
    }
    assert_eq!(
        verify(&vector(GCM), &signing_keys(), &policy(), NOW).unwrap_err(),
        Error::SegmentCount(5)
    );
}

#[test]
fn oversized_tokens_are_refused_before_anything_is_decoded() {
    let t = vector(GCM);
    let small = Policy {
        max_bytes: t.len() - 1,
        ..policy()
    };
    let e = verify_any(&t, &signing_keys(), &dkeys(), &small, NOW).unwrap_err();
    assert_eq!(
        e,
        Error::TooLarge {
            size: t.len(),
            limit: t.len() - 1
        }
    );
    // A huge ciphertext (1 MiB of it) under the default limit.
    let parts: Vec<&str> = t.split('.').collect();
    let huge = format!(
        "{}..{}.{}.{}",
        parts[0],
        parts[2],
        "A".repeat(1 << 20),
        parts[4]
    );
    assert!(matches!(
        verify_any(&huge, &signing_keys(), &dkeys(), &Policy::default(), NOW),
        Err(Error::TooLarge { .. })
    ));
}

#[test]
fn the_inner_token_must_be_validly_signed() {
    // A JWS whose signature is not the signer's, encrypted correctly: the
    // decryption succeeds, the claims still do not come out.
    let good = read("vectors/tokens.json")[0]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let forged = format!("{}AAAA", &good[..good.len() - 4]);
    let jwk = entry("dir-gcm")["public_jwk"].to_string();
    let t = encrypt(&forged, &jwk, "dir", "A256GCM").unwrap();
    assert_eq!(refused(&t), Error::BadSignature);
    // An expired inner token is expired, encrypted or not.
    let expired = read("vectors/tokens.json")
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["reason"].as_str().unwrap().starts_with("expired"))
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let t = encrypt(&expired, &jwk, "dir", "A256GCM").unwrap();
    assert!(matches!(refused(&t), Error::Expired { .. }));
}

#[test]
fn encrypt_round_trips_for_every_key_and_enc() {
    let good = read("vectors/tokens.json")
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "ES256/valid/pyjwt")
        .unwrap()
        .clone();
    let inner = good["token"].as_str().unwrap();
    for k in key_entries() {
        let kid = k["kid"].as_str().unwrap();
        if kid.contains("other") {
            continue;
        }
        let alg = k["alg"].as_str().unwrap();
        let encs = match k["enc"].as_str() {
            Some(e) => vec![e],
            None => vec!["A256GCM", "A128CBC-HS256"],
        };
        for enc in encs {
            let t = encrypt(inner, &k["public_jwk"].to_string(), alg, enc).unwrap();
            assert_eq!(t.split('.').count(), 5);
            let header: Value = serde_json::from_slice(
                &URL_SAFE_NO_PAD
                    .decode(t.split('.').next().unwrap())
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(header["kid"], kid);
            assert_eq!(header["cty"], "JWT");
            let claims = check(&t, &dkeys()).unwrap_or_else(|e| panic!("{kid} {enc}: {e}"));
            assert_eq!(claims, good["claims"], "{kid} {enc}");
        }
    }
    // Only a JWS is ever encrypted.
    let jwk = entry("dir-gcm")["public_jwk"].to_string();
    assert_eq!(
        encrypt("{\"sub\":\"x\"}", &jwk, "dir", "A256GCM").unwrap_err(),
        Error::BadCharacter
    );
    let jwe = vector(GCM);
    assert_eq!(
        encrypt(&jwe, &jwk, "dir", "A256GCM").unwrap_err(),
        Error::SegmentCount(5)
    );
    // A private JWK is not an encryption key.
    let private = entry("rsa-oaep-1")["private_jwk"].to_string();
    assert!(matches!(
        encrypt(inner, &private, "RSA-OAEP-256", "A256GCM"),
        Err(Error::Key(_))
    ));
}

/// Writes a token from `encrypt` for every key and enc to
/// `target/jwe-encrypted-by-core.json`, for `generate.py --check` to
/// decrypt with jwcrypto and joserfc (run by hand: the other way round of
/// the vectors, so that what the core encrypts is what the libraries read).
#[test]
#[ignore]
fn write_tokens_for_the_libraries() {
    let inner = read("vectors/tokens.json")[0]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut out = vec![];
    for k in key_entries() {
        let alg = k["alg"].as_str().unwrap();
        let encs = match k["enc"].as_str() {
            Some(e) => vec![e],
            None => vec!["A256GCM", "A128CBC-HS256"],
        };
        for enc in encs {
            let token = encrypt(&inner, &k["public_jwk"].to_string(), alg, enc).unwrap();
            out.push(json!({"kid": k["kid"], "enc": enc, "token": token, "inner": inner}));
        }
    }
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/jwe-encrypted-by-core.json"
    );
    std::fs::write(path, Value::Array(out).to_string()).unwrap();
}

#[test]
fn decryption_keys_are_checked_when_stored() {
    use jwt_rls_core::KeyError as K;
    let new = |alg: &str, enc: Option<&str>, format: Format, m: &str| match DecryptionKey::new(
        "k", alg, enc, format, m,
    ) {
        Err(Error::Key(k)) => k,
        other => panic!("{alg}: {other:?}"),
    };
    let rsa = entry("rsa-oaep-1");
    let ec = entry("ecdh-p256");
    assert_eq!(
        new(
            "RSA-OAEP-256",
            None,
            Format::Jwk,
            &rsa["public_jwk"].to_string()
        ),
        K::DecryptionNotPrivate
    );
    assert_eq!(
        new("ECDH-ES", None, Format::Jwk, &ec["public_jwk"].to_string()),
        K::DecryptionNotPrivate
    );
    let mut bad_d = ec["private_jwk"].clone();
    bad_d["d"] = entry("ecdh-other-p256")["private_jwk"]["d"].clone();
    assert_eq!(
        new("ECDH-ES", None, Format::Jwk, &bad_d.to_string()),
        K::EcPublicMismatch
    );
    let mut k1 = ec["private_jwk"].clone();
    k1["crv"] = json!("secp256k1");
    assert_eq!(
        new("ECDH-ES", None, Format::Jwk, &k1.to_string()),
        K::UnsupportedCurve("secp256k1".into())
    );
    let mut inconsistent = rsa["private_jwk"].clone();
    inconsistent["dp"] = rsa["private_jwk"]["dq"].clone();
    assert!(matches!(
        new("RSA-OAEP-256", None, Format::Jwk, &inconsistent.to_string()),
        K::BadDecryptionKey(_)
    ));
    let mut sig = rsa["private_jwk"].clone();
    sig["use"] = json!("sig");
    assert_eq!(
        new("RSA-OAEP-256", None, Format::Jwk, &sig.to_string()),
        K::JwkNotForEncryption
    );
    let mut other_alg = rsa["private_jwk"].clone();
    other_alg["alg"] = json!("RSA-OAEP");
    assert_eq!(
        new("RSA-OAEP-256", None, Format::Jwk, &other_alg.to_string()),
        K::JwkKeyAlgMismatch("RSA-OAEP-256")
    );
    assert_eq!(
        new("A256KW", None, Format::Jwk, &rsa["private_jwk"].to_string()),
        K::JwkKeyTypeFor("A256KW")
    );
    assert_eq!(
        new("RSA-OAEP-256", None, Format::Jwk, "[1]"),
        K::JwkNotObject
    );
    assert_eq!(
        new(
            "RSA-OAEP-256",
            None,
            Format::Jwk,
            r#"{"kty":"RSA","n":"AQAB","n":"AQAB"}"#
        ),
        K::JwkNotObject
    );
    let public_pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n";
    assert_eq!(
        new("RSA-OAEP-256", None, Format::Pem, public_pem),
        K::DecryptionNotPrivate
    );
    assert_eq!(
        new("A256KW", None, Format::Pem, rsa["pem"].as_str().unwrap()),
        K::SecretNotPem("A256KW")
    );
    assert!(matches!(
        new("ECDH-ES", None, Format::Pem, rsa["pem"].as_str().unwrap()),
        K::BadDecryptionKey(_)
    ));
    assert_eq!(
        new("ECDH-ES", None, Format::Secret, "AAAA"),
        K::SecretNotSymmetric("ECDH-ES")
    );
    assert_eq!(
        new("dir", Some("A256GCM"), Format::Secret, "not base64!"),
        K::SecretBase64
    );
    // No message of a refused key carries its material.
    for k in [
        new("ECDH-ES", None, Format::Jwk, &bad_d.to_string()),
        new("RSA-OAEP-256", None, Format::Jwk, &inconsistent.to_string()),
    ] {
        let text = Error::Key(k).to_string();
        for secret in ["d", "p", "q", "dp", "dq", "qi"] {
            if let Some(v) = rsa["private_jwk"][secret].as_str() {
                assert!(!text.contains(&v[..12]), "{text}");
            }
        }
        assert!(!text.contains(&ec["private_jwk"]["d"].as_str().unwrap()[..12]));
    }
}
