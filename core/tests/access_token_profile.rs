//! RFC 9068 access tokens: with `Policy::require_at_jwt`, only a token whose
//! header `typ` is `at+jwt` (or `application/at+jwt`, any case) verifies;
//! ID tokens and other JWTs (typ `JWT`, or none) are refused before their
//! signature is checked. Without it, both verify.

use jwt_rls_core::sign::SigningKey;
use jwt_rls_core::{verify, Error, Format, Key, KeySet, Policy};

const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0zMmJ5dGVz";
const NOW: i64 = 1_800_000_000;

fn setup() -> (SigningKey, KeySet) {
    let signer = SigningKey::new("at", "HS256", SECRET).unwrap();
    let key = Key::new("at", "HS256", Format::Secret, SECRET).unwrap();
    (signer, KeySet::new(vec![key]))
}

fn claims() -> String {
    format!(r#"{{"sub":"u","exp":{},"iat":{NOW}}}"#, NOW + 600)
}

#[test]
fn only_at_jwt_verifies_when_access_tokens_are_required() {
    let (signer, keys) = setup();
    let strict = Policy {
        require_at_jwt: true,
        ..Policy::default()
    };
    let lax = Policy::default();
    for typ in ["at+jwt", "application/at+jwt", "AT+JWT"] {
        let token = signer.sign_as(&claims(), typ).unwrap();
        assert!(verify(&token, &keys, &strict, NOW).is_ok(), "{typ}");
        assert!(verify(&token, &keys, &lax, NOW).is_ok(), "{typ}");
    }
    let id_token = signer.sign(&claims()).unwrap();
    assert_eq!(
        verify(&id_token, &keys, &strict, NOW).unwrap_err(),
        Error::NotAccessToken(Some("JWT".into()))
    );
    assert!(verify(&id_token, &keys, &lax, NOW).is_ok());
    // A forged token is refused as not an access token before any
    // signature work: the header alone decides.
    let forged = format!("{}x", &id_token[..id_token.len() - 1]);
    assert!(matches!(
        verify(&forged, &keys, &strict, NOW).unwrap_err(),
        Error::NotAccessToken(_)
    ));
}

#[test]
fn the_policy_fingerprint_tells_the_profiles_apart() {
    let strict = Policy {
        require_at_jwt: true,
        ..Policy::default()
    };
    assert_ne!(strict.fingerprint(), Policy::default().fingerprint());
}
