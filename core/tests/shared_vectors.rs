//! Tokens signed by independent libraries (PyJWT, jwcrypto) and hostile
//! tokens made by hand; see tests/vectors/README.md. Every valid case must
//! verify with exactly the expected claims, every invalid one must fail in
//! the way its category says.

use std::time::{SystemTime, UNIX_EPOCH};

use jwt_rls_core::keys::{parse_jwks, Format};
use jwt_rls_core::{verify, Class, Error, Key, KeySet, Policy};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).unwrap()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn keyset() -> KeySet {
    let entries = parse_jwks(&read("keys.jwks.json")).unwrap();
    assert_eq!(entries.len(), 12);
    KeySet::new(
        entries
            .iter()
            .map(|e| Key::new(&e.kid, &e.alg, Format::Jwk, &e.material).unwrap())
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

fn cases() -> Vec<Value> {
    serde_json::from_str::<Value>(&read("tokens.json"))
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn every_valid_token_verifies_with_its_claims() {
    let keys = keyset();
    let mut n = 0;
    for case in cases().iter().filter(|c| c["expect"] == "valid") {
        let name = case["name"].as_str().unwrap();
        let v = verify(case["token"].as_str().unwrap(), &keys, &policy(), now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let reparsed: Value = serde_json::from_str(&v.payload).unwrap();
        assert_eq!(reparsed, case["claims"], "{name}: payload text");
        for (claim, expected) in case["claims"].as_object().unwrap() {
            if let Some(s) = expected.as_str().filter(|s| !s.is_empty()) {
                assert_eq!(v.claim(claim).as_deref(), Some(s), "{name}: {claim}");
            }
        }
        assert_eq!(Some(v.kid.as_str()), case["kid"].as_str(), "{name}");
        n += 1;
    }
    assert_eq!(n, 64);
}

/// The error classes a category may end in. Payload problems of a token
/// whose signature does not verify are reported as a bad signature: the
/// payload of an unauthenticated token is never parsed.
fn allowed(category: &str, e: &Error) -> bool {
    match category {
        "format" | "jwe" | "size" => e.class() == Class::Malformed,
        "json" | "depth" => e.class() == Class::Malformed || *e == Error::BadSignature,
        "signature" | "embedded_key" => {
            matches!(e, Error::BadSignature | Error::UnknownKid(_)) || e.class() == Class::Malformed
        }
        "alg" => matches!(
            e,
            Error::UnsecuredToken | Error::AlgMismatch { .. } | Error::UnsupportedAlg(_)
        ),
        "kid" => matches!(e, Error::UnknownKid(_) | Error::AlgMismatch { .. }),
        "key_confusion" => matches!(e, Error::AlgMismatch { .. }),
        "crit" => matches!(e, Error::UnsupportedHeader("crit")),
        "expired" => matches!(e, Error::Expired { .. }),
        "nbf" => matches!(e, Error::NotYetValid { .. }),
        "iss" => matches!(
            e,
            Error::Issuer | Error::MissingClaim(_) | Error::ClaimType { .. }
        ),
        "aud" => matches!(
            e,
            Error::Audience | Error::MissingClaim(_) | Error::ClaimType { .. }
        ),
        _ => false,
    }
}

#[test]
fn every_invalid_token_is_rejected_for_its_reason() {
    let keys = keyset();
    let mut n = 0;
    let mut wrong = vec![];
    for case in cases().iter().filter(|c| c["expect"] == "invalid") {
        let name = case["name"].as_str().unwrap();
        let reason = case["reason"].as_str().unwrap();
        let category = reason.split(':').next().unwrap();
        let token = case["token"].as_str().unwrap();
        match verify(token, &keys, &policy(), now()) {
            Ok(_) => wrong.push(format!("{name} was accepted ({reason})")),
            Err(e) => {
                if !allowed(category, &e) {
                    wrong.push(format!("{name}: {category} ended as {e:?}"));
                }
                let text = format!("{} {}", e.message(), e.detail().unwrap_or_default());
                for seg in token.split('.').filter(|s| s.len() >= 8) {
                    assert!(!text.contains(seg), "{name}: message carries token text");
                }
            }
        }
        n += 1;
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(n, 191);
}

/// Integers beyond u64 and i64's extremes read back digit for digit (a
/// parser without exact numbers would turn them into floats).
#[test]
fn large_integers_are_exact() {
    let keys = keyset();
    let raw = read("tokens.json");
    let mut checked = 0;
    for case in cases().iter().filter(|c| c["expect"] == "valid") {
        let name = case["name"].as_str().unwrap();
        if !(name.ends_with("/large_integers") || name.ends_with("/integer_beyond_u64")) {
            continue;
        }
        let v = verify(case["token"].as_str().unwrap(), &keys, &policy(), now()).unwrap();
        for claim in ["huge_int", "i64_max", "i64_min", "u64_max", "js_unsafe"] {
            if case["claims"].get(claim).is_none() {
                continue;
            }
            let text = v.claim(claim).unwrap();
            assert!(
                text.bytes().all(|b| b.is_ascii_digit() || b == b'-'),
                "{name}: {claim} = {text}"
            );
            assert!(
                raw.contains(&format!("\"{claim}\": {text}")),
                "{name}: {claim} = {text}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked}");
}

#[test]
fn pem_files_match_the_jwks() {
    let tokens = cases();
    for entry in parse_jwks(&read("keys.jwks.json")).unwrap() {
        let (format, material) = if entry.alg.starts_with("HS") {
            let b64 = read(&format!("keys.pem/{}.b64url", entry.kid));
            (Format::Secret, b64)
        } else {
            (Format::Pem, read(&format!("keys.pem/{}.pem", entry.kid)))
        };
        let key = Key::new(&entry.kid, &entry.alg, format, &material).unwrap();
        let keys = KeySet::new(vec![key]);
        let case = tokens
            .iter()
            .find(|c| c["expect"] == "valid" && c["kid"] == entry.kid.as_str())
            .unwrap();
        verify(case["token"].as_str().unwrap(), &keys, &policy(), now())
            .unwrap_or_else(|e| panic!("{}: {e}", entry.kid));
    }
}
