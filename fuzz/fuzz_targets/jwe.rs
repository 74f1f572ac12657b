//! Fuzzes the JWE side of the core (nested JWTs) through `verify_any`, the
//! entry point the extension calls for every token (`src/verification/`),
//! with every kind of decryption key the extension stores: the keys of
//! `core/tests/jwe/keys.json` (RSA-OAEP-256, ECDH-ES on P-256/384/521,
//! ECDH-ES+A256KW, A256KW, dir with A256GCM and with A128CBC-HS256; not the
//! "other" ones), and the vector signing keys for the token inside.
//!
//! Random bytes rarely get past base64 and the tag, so every input is used
//! two ways:
//! - as a token as it is (seeded with the jwcrypto and joserfc tokens of
//!   `core/tests/jwe/vectors.json` and `hostile.json`);
//! - with its first byte choosing a mode (low two bits), a content
//!   encryption (bit 2) and a key (the rest, modulo the key count), the
//!   next two a cut (big endian), and the remainder:
//!
//!   0. cut into a protected header and a plaintext, encrypted under the
//!      dir A256GCM key with a valid tag, so the header parser (any `alg`,
//!      `kid`, `epk` ...) and the inner token see arbitrary authenticated
//!      input;
//!   1. the same under the dir A128CBC-HS256 key;
//!   2. the whole remainder as the plaintext, encrypted by the core for the
//!      chosen key (`encrypt_with`: its key wrap or agreement, the chosen
//!      `enc`; it wraps only text of three segments), so every decryption
//!      path meets an arbitrary inner token;
//!   3. the whole remainder as the claims of an HS256 token (the vector
//!      HMAC key), encrypted as in 2, so claim validation sees arbitrary
//!      JSON behind a decryption.
//!
//! Whatever verifies came from a token signed by one of the signing keys,
//! decrypted by one of the decryption keys, and satisfies the policy.

#![no_main]

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::cipher::{EncryptionContext, PaddedBlockEncryptingKey, UnboundCipherKey, AES_128};
use aws_lc_rs::hmac;
use aws_lc_rs::iv::FixedLength;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{crypto, Algorithm, EncodingKey};
use jwt_rls_core::jwe::encrypt_with;
use jwt_rls_core::jwe_keys::Enc;
use jwt_rls_core::keys::parse_jwks;
use jwt_rls_core::{
    verify_any, DecryptionKey, DecryptionKeySet, EncryptionKey, Format, Key, KeySet, Policy,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const JWKS: &str = include_str!("../../core/tests/vectors/keys.jwks.json");
const JWE_KEYS: &str = include_str!("../../core/tests/jwe/keys.json");
const HS256_KID: &str = "hs256-5e7da2e2";
const HS256_SECRET: &str = include_str!("../../core/tests/vectors/keys.pem/hs256-5e7da2e2.b64url");
/// Inside every valid vector token's [nbf, exp) (as core/tests/jwe.rs).
const NOW: i64 = 1_800_000_000;

struct Fixed {
    keys: KeySet,
    dkeys: DecryptionKeySet,
    /// What a sender encrypts to, one per decryption key, in keys.json's
    /// order (scripts/fuzz.sh numbers its seeds alike), with the `enc` of
    /// a dir key.
    senders: Vec<(EncryptionKey, Option<Enc>)>,
    /// The 32-byte secrets of the dir keys, A256GCM then A128CBC-HS256.
    dir_gcm: Vec<u8>,
    dir_cbc: Vec<u8>,
    hs256: EncodingKey,
}

thread_local! {
    // Key objects are not Sync; libFuzzer calls the target from one thread.
    static FIXED: Fixed = {
        let entries = parse_jwks(JWKS).expect("vector JWKS").keys;
        let keys = KeySet::new(entries.iter().map(|e| Key::new(&e.kid, &e.alg, Format::Jwk, &e.material).unwrap()).collect());
        let file: Value = serde_json::from_str(JWE_KEYS).unwrap();
        let mut dkeys = Vec::new();
        let mut senders = Vec::new();
        let (mut dir_gcm, mut dir_cbc) = (Vec::new(), Vec::new());
        for k in file["keys"].as_array().unwrap() {
            let kid = k["kid"].as_str().unwrap();
            if kid.contains("other") {
                continue;
            }
            let alg = k["alg"].as_str().unwrap();
            let enc = k["enc"].as_str();
            dkeys.push(DecryptionKey::new(kid, alg, enc, Format::Jwk, &k["private_jwk"].to_string()).unwrap());
            let sender = EncryptionKey::from_jwk(alg, &k["public_jwk"].to_string()).unwrap();
            senders.push((sender, enc.map(|e| Enc::from_name(e).unwrap())));
            let secret = || URL_SAFE_NO_PAD.decode(k["private_jwk"]["k"].as_str().unwrap()).unwrap();
            match (alg, enc) {
                ("dir", Some("A256GCM")) => dir_gcm = secret(),
                ("dir", Some("A128CBC-HS256")) => dir_cbc = secret(),
                _ => {}
            }
        }
        assert_eq!((dir_gcm.len(), dir_cbc.len()), (32, 32));
        let hs256 = EncodingKey::from_secret(&URL_SAFE_NO_PAD.decode(HS256_SECRET.trim()).unwrap());
        Fixed { keys, dkeys: DecryptionKeySet::new(dkeys), senders, dir_gcm, dir_cbc, hs256 }
    };
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

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A dir A256GCM token: `header` (its base64url is the AAD), `plaintext`
/// under `cek`, a fixed IV and a valid tag.
fn dir_gcm(cek: &[u8], header: &[u8], plaintext: &[u8]) -> String {
    let header = b64(header);
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, cek).unwrap());
    let iv = [1u8; 12];
    let mut data = plaintext.to_vec();
    let tag = key
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(header.as_bytes()),
            &mut data,
        )
        .unwrap();
    format!(
        "{header}..{}.{}.{}",
        b64(&iv),
        b64(&data),
        b64(tag.as_ref())
    )
}

/// A dir A128CBC-HS256 token (RFC 7518 section 5.2.2.1), fixed IV.
fn dir_cbc(cek: &[u8], header: &[u8], plaintext: &[u8]) -> String {
    let header = b64(header);
    let (mac_key, enc_key) = cek.split_at(16);
    let iv = [2u8; 16];
    let mut data = plaintext.to_vec();
    PaddedBlockEncryptingKey::cbc_pkcs7(UnboundCipherKey::new(&AES_128, enc_key).unwrap())
        .unwrap()
        .less_safe_encrypt(&mut data, EncryptionContext::Iv128(FixedLength::from(iv)))
        .unwrap();
    let mut ctx = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, mac_key));
    ctx.update(header.as_bytes());
    ctx.update(&iv);
    ctx.update(&data);
    ctx.update(&((header.len() as u64) * 8).to_be_bytes());
    let tag = ctx.sign();
    format!(
        "{header}..{}.{}.{}",
        b64(&iv),
        b64(&data),
        b64(&tag.as_ref()[..16])
    )
}

fn check(f: &Fixed, token: &str) {
    if let Ok(v) = verify_any(token, &f.keys, &f.dkeys, &policy(), NOW) {
        assert!(v.times.exp > NOW);
        assert!(
            f.keys.select(Some(&v.kid), NOW).is_ok(),
            "signed by no signing key"
        );
        if let Some(dkid) = &v.decryption_kid {
            assert!(
                f.dkeys.select(Some(dkid), NOW).is_ok(),
                "decrypted by no decryption key"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| FIXED.with(|f| {
    if let Ok(text) = std::str::from_utf8(data) {
        check(f, text);
    }

    let [sel, hi, lo, rest @ ..] = data else {
        return;
    };
    let cut = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
    let (header, plaintext) = rest.split_at(cut);
    let (sender, dir_enc) = &f.senders[usize::from(sel >> 3) % f.senders.len()];
    let enc = dir_enc.unwrap_or(if sel & 4 == 0 {
        Enc::A256Gcm
    } else {
        Enc::A128CbcHs256
    });
    let token = match sel & 3 {
        0 => dir_gcm(&f.dir_gcm, header, plaintext),
        1 => dir_cbc(&f.dir_cbc, header, plaintext),
        mode => {
            // encrypt_with wraps only a JWS (three segments); anything
            // else as plaintext is made by modes 0 and 1.
            let inner = if mode == 2 {
                String::from_utf8_lossy(rest).into_owned()
            } else {
                let h = format!(r#"{{"alg":"HS256","kid":"{HS256_KID}","typ":"JWT"}}"#);
                let input = format!("{}.{}", b64(h.as_bytes()), b64(rest));
                let sig = crypto::sign(input.as_bytes(), &f.hs256, Algorithm::HS256).unwrap();
                format!("{input}.{sig}")
            };
            match encrypt_with(&inner, sender, enc) {
                Ok(token) => token,
                Err(_) => return,
            }
        }
    };
    check(f, &token);
}));
