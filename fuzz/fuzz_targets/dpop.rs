//! Fuzzes the DPoP proof check (`verify_proof`, RFC 9449), as the extension
//! calls it (`src/dpop/mod.rs`: the proof limit `MAX_DPOP_PROOF_BYTES`, a
//! 60 s window, the default `jwt_rls.dpop_max_age`, and 10 s ahead).
//!
//! The request (method, URL, access token) is one of the fixed requests of
//! the vector proofs (`core/tests/vectors/dpop/`), checked at a fixed time
//! ten seconds after their `iat`. Random bytes rarely make a signed proof,
//! so every input is used two ways:
//! - as a proof as it is, for the first vector request (and the next ones
//!   while the refusal is only that the proof is for another method or
//!   URL, so that a vector proof, or a mutation of one, gets past them);
//! - with its first byte choosing a mode (low two bits) and a request (the
//!   rest), the next two a cut (big endian), and the remainder cut into
//!   two parts, signed by the harness's Ed25519 key:
//!
//!   0. a header and a payload as they are: any header, any claims;
//!   1. the harness key's valid header and the remainder as the payload,
//!      so the claims checks see arbitrary authenticated JSON;
//!   2. the remainder as the header, with valid claims for the request, so
//!      the header and `jwk` checks (and the key's parsing) see anything;
//!   3. valid claims whose `htu` is the first part, checked against a
//!      request whose URL is the second, so both URL parsers and their
//!      comparison see arbitrary text.
//!
//! A proof accepted must be inside its window, carry a `jti` within the
//! limit, and, when the harness signed it, be by the harness's key.

#![no_main]

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_rls_core::dpop::access_token_hash;
use jwt_rls_core::limits::{MAX_DPOP_JTI_BYTES, MAX_DPOP_PROOF_BYTES};
use jwt_rls_core::thumbprint::jwk_thumbprint;
use jwt_rls_core::{verify_proof, DpopError, Proof, ProofPolicy, Request};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

const PROOFS: &str = include_str!("../../core/tests/vectors/dpop/proofs.json");
const REFUSED: &str = include_str!("../../core/tests/vectors/dpop/refused.json");
/// The vector proofs' `iat` (generate.py's IAT), plus ten seconds.
const NOW: i64 = 1_800_000_000 + 10;
/// The harness key: the Ed25519 key of the seed [9; 32], whose public `x`
/// scripts/fuzz.sh also writes into its seeds (checked at start-up).
const SEED: [u8; 32] = [9; 32];
const KEY_X: &str = "_RckOFqgx1tk-3jNYC-h2ZH96_drE8WO1wLqyDXp9hg";

struct Fixed {
    key: Ed25519KeyPair,
    /// The harness key's thumbprint (RFC 7638).
    jkt: String,
    /// `{"typ":"dpop+jwt","alg":"EdDSA","jwk":<the harness key>}`.
    header: Vec<u8>,
    /// (method, url, access token): the vector proofs' distinct requests,
    /// in the order scripts/fuzz.sh numbers them for its seeds.
    requests: Vec<(String, String, String)>,
}

thread_local! {
    // libFuzzer calls the target from one thread.
    static FIXED: Fixed = {
        let key = Ed25519KeyPair::from_seed_unchecked(&SEED).unwrap();
        let x = URL_SAFE_NO_PAD.encode(key.public_key().as_ref());
        assert_eq!(x, KEY_X, "scripts/fuzz.sh's seeds use KEY_X");
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x});
        let jkt = jwk_thumbprint(jwk.as_object().unwrap()).unwrap();
        let header = json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": jwk}).to_string().into_bytes();
        let mut requests: Vec<(String, String, String)> = Vec::new();
        for file in [PROOFS, REFUSED] {
            let cases: Vec<Value> = serde_json::from_str(file).unwrap();
            for c in cases {
                let field = |m: &str| c[m].as_str().unwrap().to_string();
                let r = (field("method"), field("url"), field("access_token"));
                if !requests.contains(&r) {
                    requests.push(r);
                }
            }
        }
        Fixed { key, jkt, header, requests }
    };
}

fn policy() -> ProofPolicy {
    ProofPolicy {
        max_bytes: MAX_DPOP_PROOF_BYTES,
        max_age: 60,
        max_ahead: 10,
    }
}

fn request<'a>(r: &'a (String, String, String), jkt: Option<&'a str>) -> Request<'a> {
    Request {
        method: &r.0,
        url: &r.1,
        access_token: Some(&r.2),
        jkt,
    }
}

/// Valid claims for a request: `htu` is the request's URL.
fn claims(method: &str, htu: &str, access_token: &str) -> Vec<u8> {
    json!({
        "jti": "fuzz-jti-0001",
        "htm": method,
        "htu": htu,
        "iat": NOW - 5,
        "ath": access_token_hash(access_token),
    })
    .to_string()
    .into_bytes()
}

fn signed(key: &Ed25519KeyPair, header: &[u8], payload: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = key.sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

/// What holds of every accepted proof.
fn check(result: &Result<Proof, DpopError>, request: &Request<'_>, policy: &ProofPolicy) {
    if let Ok(p) = result {
        assert!(
            p.iat >= NOW - policy.max_age && p.iat <= NOW + policy.max_ahead,
            "{p:?}"
        );
        assert!(
            !p.jti.is_empty() && p.jti.len() <= MAX_DPOP_JTI_BYTES,
            "{p:?}"
        );
        if let Some(jkt) = request.jkt {
            assert_eq!(p.jkt, jkt);
        }
    }
}

fuzz_target!(|data: &[u8]| FIXED.with(|f| {
    let policy = policy();
    if let Ok(text) = std::str::from_utf8(data) {
        for r in &f.requests {
            let req = request(r, None);
            let result = verify_proof(text, &req, &policy, NOW);
            check(&result, &req, &policy);
            if !matches!(
                result,
                Err(DpopError::MethodMismatch { .. } | DpopError::UrlMismatch(_))
            ) {
                break;
            }
        }
    }

    let [sel, hi, lo, rest @ ..] = data else {
        return;
    };
    let r = &f.requests[usize::from(sel >> 2) % f.requests.len()];
    let cut = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
    let (first, second) = rest.split_at(cut);
    let (proof, url, jkt) = match sel & 3 {
        0 => (signed(&f.key, first, second), r.1.clone(), None),
        1 => (
            signed(&f.key, &f.header, rest),
            r.1.clone(),
            Some(f.jkt.as_str()),
        ),
        2 => (
            signed(&f.key, rest, &claims(&r.0, &r.1, &r.2)),
            r.1.clone(),
            None,
        ),
        _ => {
            let htu = String::from_utf8_lossy(first);
            let payload = claims(&r.0, &htu, &r.2);
            (
                signed(&f.key, &f.header, &payload),
                String::from_utf8_lossy(second).into_owned(),
                Some(f.jkt.as_str()),
            )
        }
    };
    let r = (r.0.clone(), url, r.2.clone());
    let req = request(&r, jkt);
    let result = verify_proof(&proof, &req, &policy, NOW);
    check(&result, &req, &policy);
    // Only the harness's key signs here, so only it can have made a proof
    // that is accepted, whatever key the header claims.
    if let Ok(p) = &result {
        assert_eq!(p.jkt, f.jkt, "accepted with a key that did not sign");
    }
}));
