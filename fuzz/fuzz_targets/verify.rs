//! Fuzzes the whole verification path of the core.
//!
//! Random bytes rarely get past base64 and the signature, so every input is
//! used three ways: as a token as it is; split into a header and a payload
//! that are then signed with the test HMAC key, so that JSON parsing and
//! claim validation see arbitrary authenticated input; and as a JWKS.

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{crypto, Algorithm, EncodingKey};
use jwt_rls_core::keys::parse_jwks;
use jwt_rls_core::{verify, Format, Key, KeySet, Policy};
use libfuzzer_sys::fuzz_target;

const JWKS: &str = include_str!("../../core/tests/vectors/keys.jwks.json");
const HS256_KID: &str = "hs256-5e7da2e2";
const HS256_SECRET: &str = include_str!("../../core/tests/vectors/keys.pem/hs256-5e7da2e2.b64url");
const NOW: i64 = 1_800_000_000;

thread_local! {
    // Key objects are not Sync; libFuzzer calls the target from one thread.
    static KEYS: KeySet = {
        let entries = parse_jwks(JWKS).expect("vector JWKS").keys;
        KeySet::new(entries.iter().map(|e| Key::new(&e.kid, &e.alg, Format::Jwk, &e.material).unwrap()).collect())
    };
}

fn policy() -> Policy {
    Policy {
        issuers: vec!["https://issuer.example".into()],
        audiences: vec!["jwt-rls-tests".into()],
        max_lifetime: 86_400 * 365 * 200,
        required: vec!["sub".into()],
        max_bytes: 64 * 1024,
        ..Policy::default()
    }
}

fn signed(header: &[u8], payload: &[u8]) -> String {
    let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(payload));
    let secret = URL_SAFE_NO_PAD.decode(HS256_SECRET.trim()).unwrap();
    let sig = crypto::sign(input.as_bytes(), &EncodingKey::from_secret(&secret), Algorithm::HS256).unwrap();
    format!("{input}.{sig}")
}

fuzz_target!(|data: &[u8]| KEYS.with(|keys| run(keys, data)));

fn run(keys: &KeySet, data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = verify(text, keys, &policy(), NOW);
        let _ = parse_jwks(text);
    }
    if let Some((&cut, rest)) = data.split_first() {
        let cut = usize::from(cut).min(rest.len());
        let (header, payload) = rest.split_at(cut);
        // Half the time keep a header that selects the HMAC key, so the
        // payload's claims are what gets exercised.
        let token = if cut % 2 == 0 {
            let h = format!(r#"{{"alg":"HS256","kid":"{HS256_KID}","typ":"JWT"}}"#);
            signed(h.as_bytes(), rest)
        } else {
            signed(header, payload)
        };
        if let Ok(v) = verify(&token, keys, &policy(), NOW) {
            // Whatever verifies must satisfy the policy it was checked with.
            assert!(v.times.exp > NOW);
            assert!(v.claims().contains_key("sub"));
        }
    }
}
