//! RFC 7515 Appendix A: the specification's own examples, verified with an
//! injected clock (their exp is 1300819380, in 2011).

use jwt_rls_core::{verify, Error, Format, Key, KeySet, Policy};
use serde_json::{json, Value};

const EXP: i64 = 1_300_819_380;

fn vectors() -> Value {
    serde_json::from_str(include_str!("vectors/rfc7515.json")).unwrap()
}

fn example(name: &str) -> (String, KeySet) {
    let v = vectors();
    let ex = &v[name];
    let alg = ex["alg"].as_str().unwrap();
    let token = format!(
        "{}.{}.{}",
        ex["header_b64"].as_str().unwrap(),
        v["payload_b64"].as_str().unwrap(),
        ex["signature_b64"].as_str().unwrap()
    );
    let key = Key::new("rfc", alg, Format::Jwk, &ex["jwk"].to_string()).unwrap();
    (token, KeySet::new(vec![key]))
}

fn policy() -> Policy {
    Policy {
        leeway: 0,
        ..Policy::default()
    }
}

#[test]
fn appendix_a1_a2_a3_verify_before_their_expiry() {
    for name in ["A.1", "A.2", "A.3"] {
        let (token, keys) = example(name);
        let v =
            verify(&token, &keys, &policy(), EXP - 10).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            serde_json::from_str::<Value>(&v.payload).unwrap(),
            json!({"iss": "joe", "exp": EXP, "http://example.com/is_root": true}),
            "{name}"
        );
        assert_eq!(
            v.claim("http://example.com/is_root").as_deref(),
            Some("true")
        );
        // The example payload has CRLF line breaks: kept exactly as signed.
        assert!(v.payload.contains("\r\n"), "{name}");
        assert_eq!(
            verify(&token, &keys, &policy(), EXP).unwrap_err(),
            Error::Expired { exp: EXP, now: EXP }
        );
        let tampered = token.replacen(".eyJpc3MiOiJqb2UiLA0K", ".eyJpc3MiOiJqb2XiLA0K", 1);
        assert_eq!(
            verify(&tampered, &keys, &policy(), EXP - 10).unwrap_err(),
            Error::BadSignature,
            "{name}"
        );
    }
}

#[test]
fn appendix_a4_es512_and_a5_unsecured_are_refused() {
    let v = vectors();
    let (_, keys) = example("A.3");
    let es512 = verify(
        v["A.4"]["token"].as_str().unwrap(),
        &keys,
        &policy(),
        EXP - 10,
    );
    assert_eq!(es512.unwrap_err(), Error::UnsupportedAlg("ES512".into()));
    let none = verify(
        v["A.5"]["token"].as_str().unwrap(),
        &keys,
        &policy(),
        EXP - 10,
    );
    assert_eq!(none.unwrap_err(), Error::UnsecuredToken);
}

#[test]
fn an_rfc_key_cannot_verify_another_algorithm() {
    let (token, _) = example("A.1");
    let v = vectors();
    let rsa = Key::new("rfc", "RS256", Format::Jwk, &v["A.2"]["jwk"].to_string()).unwrap();
    let err = verify(&token, &KeySet::new(vec![rsa]), &policy(), EXP - 10).unwrap_err();
    assert!(matches!(err, Error::AlgMismatch { .. }), "{err:?}");
}
