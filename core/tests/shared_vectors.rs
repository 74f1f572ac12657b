//! Tokens signed by independent libraries (PyJWT, jwcrypto) and hostile
//! tokens made by hand; see tests/vectors/README.md. Every valid case must
//! verify with exactly the expected claims, every invalid one must fail in
//! the way its category says.

use jwt_rls_core::keys::{parse_jwks, Format};
use jwt_rls_core::{verify, Class, Error, Key, KeySet, Policy};
use serde_json::Value;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

fn read(name: &str) -> String {
    std::fs::read_to_string(format!("{DIR}/{name}")).unwrap()
}

/// The verification time: 2027-01-15. The valid tokens hold iat = nbf =
/// 1700000000 and exp = 4102444800, the expired ones exp = 1600000000 and
/// the not-yet-valid ones nbf = 4000000000 (README, point 7), so any time in
/// [1700000000, 4000000000) gives the expected results; a fixed one keeps
/// the suite from depending on the clock (checked against the file by
/// `the_fixed_time_suits_every_valid_token`).
const NOW: i64 = 1_800_000_000;

fn keyset() -> KeySet {
    let text = read("keys.jwks.json");
    let in_file = serde_json::from_str::<Value>(&text).unwrap()["keys"]
        .as_array()
        .unwrap()
        .len();
    let entries = parse_jwks(&text).unwrap().keys;
    assert!(
        in_file > 0 && entries.len() == in_file,
        "{} of {in_file} keys",
        entries.len()
    );
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

/// Every case of tokens.json; each is either valid or invalid, so the two
/// tests below together exercise all of them.
fn cases() -> Vec<Value> {
    let cases = serde_json::from_str::<Value>(&read("tokens.json"))
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    for case in &cases {
        assert!(
            case["expect"] == "valid" || case["expect"] == "invalid",
            "{}",
            case["name"]
        );
    }
    cases
}

/// How many cases expect `outcome`; never zero, so a filter that matches
/// nothing cannot pass.
fn count(cases: &[Value], outcome: &str) -> usize {
    let n = cases.iter().filter(|c| c["expect"] == outcome).count();
    assert!(n > 0, "no {outcome} case in tokens.json");
    n
}

#[test]
fn the_fixed_time_suits_every_valid_token() {
    for case in cases().iter().filter(|c| c["expect"] == "valid") {
        let claims = &case["claims"];
        let at = |name: &str| claims[name].as_i64();
        assert!(at("exp").is_some_and(|exp| NOW < exp), "{}", case["name"]);
        for name in ["nbf", "iat"] {
            assert!(
                at(name).is_none_or(|t| t <= NOW),
                "{}: {name}",
                case["name"]
            );
        }
    }
}

#[test]
fn every_valid_token_verifies_with_its_claims() {
    let keys = keyset();
    let cases = cases();
    let mut n = 0;
    for case in cases.iter().filter(|c| c["expect"] == "valid") {
        let name = case["name"].as_str().unwrap();
        let v = verify(case["token"].as_str().unwrap(), &keys, &policy(), NOW)
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
    assert_eq!(n, count(&cases, "valid"));
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
    let cases = cases();
    let mut n = 0;
    let mut wrong = vec![];
    for case in cases.iter().filter(|c| c["expect"] == "invalid") {
        let name = case["name"].as_str().unwrap();
        let reason = case["reason"].as_str().unwrap();
        let category = reason.split(':').next().unwrap();
        let token = case["token"].as_str().unwrap();
        match verify(token, &keys, &policy(), NOW) {
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
    assert_eq!(n, count(&cases, "invalid"));
}

/// Integers beyond u64 and i64's extremes read back digit for digit (a
/// parser without exact numbers would turn them into floats).
#[test]
fn large_integers_are_exact() {
    let keys = keyset();
    let raw = read("tokens.json");
    let mut checked_cases = 0;
    for case in cases().iter().filter(|c| c["expect"] == "valid") {
        let name = case["name"].as_str().unwrap();
        if !(name.ends_with("/large_integers") || name.ends_with("/integer_beyond_u64")) {
            continue;
        }
        let mut checked = 0;
        let v = verify(case["token"].as_str().unwrap(), &keys, &policy(), NOW).unwrap();
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
        assert!(checked > 0, "{name} holds none of the large integer claims");
        checked_cases += 1;
    }
    assert!(checked_cases > 0, "no large integer case in tokens.json");
}

#[test]
fn pem_files_match_the_jwks() {
    let tokens = cases();
    for entry in parse_jwks(&read("keys.jwks.json")).unwrap().keys {
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
        verify(case["token"].as_str().unwrap(), &keys, &policy(), NOW)
            .unwrap_or_else(|e| panic!("{}: {e}", entry.kid));
    }
}
