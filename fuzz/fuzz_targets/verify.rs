//! Fuzzes the whole verification path of the core.
//!
//! Random bytes rarely get past base64 and the signature, so every input is
//! used three ways: as a token as it is; split into a header and a payload
//! that are then signed with the test HMAC key, so that JSON parsing and
//! claim validation see arbitrary authenticated input; and as a JWKS.
//! The JWE path gets the same treatment: the input as a token given to
//! `verify_any` with a dir/A256GCM decryption key, and split into a JWE
//! header and a plaintext that are then encrypted with that key, so the
//! header parser and the inner token see arbitrary authenticated input.

#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{crypto, Algorithm, EncodingKey};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use jwt_rls_core::keys::parse_jwks;
use jwt_rls_core::{verify, verify_any, DecryptionKey, DecryptionKeySet, Format, Key, KeySet, Policy};
use libfuzzer_sys::fuzz_target;

const JWKS: &str = include_str!("../../core/tests/vectors/keys.jwks.json");
const HS256_KID: &str = "hs256-5e7da2e2";
const HS256_SECRET: &str = include_str!("../../core/tests/vectors/keys.pem/hs256-5e7da2e2.b64url");
const NOW: i64 = 1_800_000_000;
/// The dir/A256GCM test key (32 bytes of 7).
const DIR_KEY: [u8; 32] = [7; 32];

thread_local! {
    // Key objects are not Sync; libFuzzer calls the target from one thread.
    static KEYS: KeySet = {
        let entries = parse_jwks(JWKS).expect("vector JWKS").keys;
        KeySet::new(entries.iter().map(|e| Key::new(&e.kid, &e.alg, Format::Jwk, &e.material).unwrap()).collect())
    };
    static DKEYS: DecryptionKeySet = DecryptionKeySet::new(vec![
        DecryptionKey::new("dir1", "dir", Some("A256GCM"), Format::Secret, &URL_SAFE_NO_PAD.encode(DIR_KEY)).unwrap(),
    ]);
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

/// A JWE compact token with `header` as its protected header (and AAD) and
/// `plaintext` encrypted under the dir test key, with a valid tag.
fn encrypted(header: &[u8], plaintext: &[u8]) -> String {
    let header = URL_SAFE_NO_PAD.encode(header);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &DIR_KEY).unwrap());
    let iv = [1u8; 12];
    let mut data = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(iv), Aad::from(header.as_bytes()), &mut data)
        .unwrap();
    let b = |x: &[u8]| URL_SAFE_NO_PAD.encode(x);
    format!("{header}..{}.{}.{}", b(&iv), b(&data), b(tag.as_ref()))
}

fuzz_target!(|data: &[u8]| KEYS.with(|keys| DKEYS.with(|dkeys| {
    run(keys, data);
    run_jwe(keys, dkeys, data);
})));

fn run_jwe(keys: &KeySet, dkeys: &DecryptionKeySet, data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = verify_any(text, keys, dkeys, &policy(), NOW);
    }
    let Some((&cut, rest)) = data.split_first() else { return };
    let cut = usize::from(cut).min(rest.len());
    let (header, inner) = rest.split_at(cut);
    // Half the time a header that decrypts, so the inner token (arbitrary
    // bytes, or an HMAC-signed JWS of arbitrary claims) is what is tested.
    let token = match cut % 3 {
        0 => encrypted(br#"{"alg":"dir","enc":"A256GCM","cty":"JWT","kid":"dir1"}"#, rest),
        1 => {
            let h = format!(r#"{{"alg":"HS256","kid":"{HS256_KID}","typ":"JWT"}}"#);
            let jws = signed(h.as_bytes(), rest);
            encrypted(br#"{"alg":"dir","enc":"A256GCM","cty":"JWT"}"#, jws.as_bytes())
        }
        _ => encrypted(header, inner),
    };
    if let Ok(v) = verify_any(&token, keys, dkeys, &policy(), NOW) {
        // Claims only ever come from a signed inner token that satisfies the
        // policy: signed by one of the keys (the harness's HMAC key, or a
        // vector token from the corpus encrypted as it is).
        assert!(v.times.exp > NOW);
        assert!(v.claims().get(&v.payload, "sub").is_some());
        assert!(keys.select(Some(&v.kid), NOW).is_ok());
    }
}

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
            assert!(v.claims().get(&v.payload, "sub").is_some());
        }
    }
}
