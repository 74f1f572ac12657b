//! Verification cost per algorithm on realistic tokens (the PyJWT-signed
//! vectors), the parts of it, and the cost of a cache hit. `scripts/bench.sh`
//! puts these beside `openssl speed` measured in the same run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use jwt_rls_core::cache::Cache;
use jwt_rls_core::compact::{decode, split};
use jwt_rls_core::error::Part;
use jwt_rls_core::keys::parse_jwks;
use jwt_rls_core::sign::{generate, SigningKey};
use jwt_rls_core::{
    encrypt, verify, verify_any, DecryptionKey, DecryptionKeySet, Format, Key, KeySet, Policy,
};
use serde_json::Value;

const JWKS: &str = include_str!("../tests/vectors/keys.jwks.json");
const TOKENS: &str = include_str!("../tests/vectors/tokens.json");
const JWE_KEYS: &str = include_str!("../tests/jwe/keys.json");
/// The nested cases: (decryption key's kid, enc). Each token is the HS256
/// vector encrypted to that key, so the figure is the decryption plus about
/// 2 us of HS256 verification.
pub const JWE_CASES: [(&str, &str); 7] = [
    ("rsa-oaep-1", "A256GCM"),
    ("ecdh-p256", "A256GCM"),
    ("ecdh-p384", "A256GCM"),
    ("ecdhkw-p256", "A256GCM"),
    ("a256kw-1", "A256GCM"),
    ("dir-gcm", "A256GCM"),
    ("dir-cbc", "A128CBC-HS256"),
];
/// Bytes written between two cold checks: more than this machine's caches
/// (L2 1-2 MiB per core, L3 up to 32 MiB shared).
const EVICT_BYTES: usize = 64 << 20;

pub const ALGS: [&str; 8] = [
    "HS256", "HS384", "HS512", "RS256", "PS256", "ES256", "ES384", "EdDSA",
];

fn keys() -> KeySet {
    let entries = parse_jwks(JWKS).unwrap().keys;
    KeySet::new(
        entries
            .iter()
            .map(|e| Key::new(&e.kid, &e.alg, Format::Jwk, &e.material).unwrap())
            .collect(),
    )
}

fn token(alg: &str) -> String {
    let cases: Vec<Value> = serde_json::from_str(TOKENS).unwrap();
    let name = format!("{alg}/valid/pyjwt");
    cases.iter().find(|c| c["name"] == name.as_str()).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string()
}

fn policy() -> Policy {
    Policy {
        issuers: vec!["https://issuer.example".into()],
        audiences: vec!["jwt-rls-tests".into()],
        ..Policy::default()
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn benches(c: &mut Criterion) {
    let keys = keys();
    let policy = policy();
    let now = now();
    for alg in ALGS {
        let t = token(alg);
        c.bench_function(&format!("verify/{alg}"), |b| {
            b.iter(|| verify(black_box(&t), &keys, &policy, now).unwrap())
        });
        // The signature check alone, with the key already selected.
        let seg = split(&t, policy.max_bytes).unwrap();
        let sig = decode(seg.signature, Part::Signature).unwrap();
        let key = keys
            .select(Some(&verify(&t, &keys, &policy, now).unwrap().kid), now)
            .unwrap();
        c.bench_function(&format!("signature/{alg}"), |b| {
            b.iter(|| assert!(key.verify(black_box(seg.signing_input.as_bytes()), &sig)))
        });
        // The same with the CPU caches cold, as a server meets it between
        // two transactions (the client, the network and other backends ran
        // meanwhile): a buffer larger than the caches is written before
        // each check, outside the timing.
        c.bench_function(&format!("signature_cold/{alg}"), |b| {
            let mut evict = vec![0u8; EVICT_BYTES];
            b.iter_batched(
                || {
                    for line in evict.chunks_mut(64) {
                        line[0] = line[0].wrapping_add(1);
                    }
                    black_box(&evict);
                },
                |()| assert!(key.verify(black_box(seg.signing_input.as_bytes()), &sig)),
                BatchSize::PerIteration,
            )
        });
    }
    // What a repeated token costs: cache look-up, time claims, key state.
    let t = token("RS256");
    let mut cache = Cache::new(1000, 1 << 20);
    cache.insert(&t, Arc::new(verify(&t, &keys, &policy, now).unwrap()));
    c.bench_function("cache_hit/RS256", |b| {
        b.iter(|| {
            let hit = cache.get(black_box(&t)).unwrap();
            hit.times.check(now, policy.leeway).unwrap();
            keys.select(Some(&hit.kid), now).unwrap();
        })
    });
    // Nested tokens: decrypt, then verify the inner HS256 token.
    let jwe_keys: Value = serde_json::from_str(JWE_KEYS).unwrap();
    let inner = token("HS256");
    for (kid, enc) in JWE_CASES {
        let k = jwe_keys["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid)
            .unwrap();
        let alg = k["alg"].as_str().unwrap();
        let dkeys = DecryptionKeySet::new(vec![DecryptionKey::new(
            kid,
            alg,
            k["enc"].as_str(),
            Format::Jwk,
            &k["private_jwk"].to_string(),
        )
        .unwrap()]);
        let t = encrypt(&inner, &k["public_jwk"].to_string(), alg, enc).unwrap();
        c.bench_function(&format!("jwe/{kid}/{alg}/{enc}"), |b| {
            b.iter(|| verify_any(black_box(&t), &keys, &dkeys, &policy, now).unwrap())
        });
    }
    // Issuing: signing a typical claims set with a generated key.
    let claims = r#"{"sub":"6c82175b-ba5a-45d3-bbb4-b46da45f5c7e","tenant_id":"1d509fd5-c6a7-47b2-9eef-2fff6a41863f","role":"app_user","iss":"https://issuer.example","aud":"jwt-rls-tests","iat":1700000000,"exp":4102444800,"jti":"q8Zr0f1bXyI6b2bT1mVf3w"}"#;
    for alg in SIGN_ALGS {
        let key = SigningKey::new("bench", alg, &generate(alg).unwrap()).unwrap();
        c.bench_function(&format!("sign/{alg}"), |b| {
            b.iter(|| key.sign(black_box(claims)).unwrap())
        });
    }
}

/// The algorithms `bench.py` puts beside `openssl speed`'s sign.
pub const SIGN_ALGS: [&str; 6] = ["HS256", "RS256", "PS256", "ES256", "ES384", "EdDSA"];

criterion_group!(benches_group, benches);
criterion_main!(benches_group);
