//! DPoP proofs (RFC 9449) made by independent libraries: signed by PyJWT,
//! keys exported and thumbprinted by jwcrypto (tests/vectors/dpop/
//! generate.py, which says how to remake them). Each must verify, giving
//! back jwcrypto's thumbprint, and each change of the request, the time, the
//! access token or the proof's bytes must be refused in the expected way.
//! The two example proofs of RFC 9449 itself are checked too, at the end.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_rls_core::{verify_proof, Class, DpopError, Proof, ProofPolicy, Request};
use serde_json::Value;

/// Read at compile time: the test reads nothing at run time.
const PROOFS: &str = include_str!("vectors/dpop/proofs.json");
const REFUSED: &str = include_str!("vectors/dpop/refused.json");

/// Every proof has iat = 1800000000 (generate.py's IAT); ten seconds later,
/// well within the default window.
const IAT: i64 = 1_800_000_000;
const NOW: i64 = IAT + 10;

struct Case {
    name: String,
    alg: String,
    proof: String,
    method: String,
    url: String,
    access_token: String,
    jkt: String,
    jti: String,
}

fn cases() -> Vec<Case> {
    cases_of(PROOFS)
}

fn cases_of(file: &str) -> Vec<Case> {
    let all: Vec<Value> = serde_json::from_str(file).unwrap();
    let text = |v: &Value, m: &str| v[m].as_str().unwrap().to_string();
    all.iter()
        .map(|v| {
            assert_eq!(v["iat"].as_i64(), Some(IAT), "{v}");
            Case {
                name: text(v, "name"),
                alg: text(v, "alg"),
                proof: text(v, "proof"),
                method: text(v, "method"),
                url: text(v, "url"),
                access_token: text(v, "access_token"),
                jkt: text(v, "jkt"),
                jti: text(v, "jti"),
            }
        })
        .collect()
}

impl Case {
    fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            url: &self.url,
            access_token: Some(&self.access_token),
            jkt: Some(&self.jkt),
        }
    }

    fn check_at(&self, proof: &str, request: &Request<'_>, now: i64) -> Result<Proof, DpopError> {
        verify_proof(proof, request, &ProofPolicy::default(), now)
    }

    fn check(&self, request: &Request<'_>) -> Result<Proof, DpopError> {
        self.check_at(&self.proof, request, NOW)
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn json_of(segment: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

fn segments(proof: &str) -> [&str; 3] {
    let parts: Vec<&str> = proof.split('.').collect();
    [parts[0], parts[1], parts[2]]
}

#[test]
fn every_proof_verifies_with_the_independent_thumbprint() {
    let cases = cases();
    let mut algs: Vec<&str> = cases.iter().map(|c| c.alg.as_str()).collect();
    algs.sort_unstable();
    assert_eq!(algs, ["ES256", "ES384", "EdDSA", "PS256", "RS256"]);
    for c in &cases {
        let proof = c
            .check(&c.request())
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(
            proof,
            Proof {
                jkt: c.jkt.clone(),
                jti: c.jti.clone(),
                iat: IAT,
            },
            "{}",
            c.name
        );
    }
}

/// Proofs a careless client could make (a 1024-bit RSA key, its private
/// key as the jwk, typ JWT, a float iat), each refused as expected (the
/// variant's Debug text starts with "expect").
#[test]
fn careless_proofs_are_refused() {
    let all: Vec<Value> = serde_json::from_str(REFUSED).unwrap();
    let cases = cases_of(REFUSED);
    assert_eq!(cases.len(), 4);
    for (c, v) in cases.iter().zip(&all) {
        let expect = v["expect"].as_str().unwrap();
        let e = c.check(&c.request()).unwrap_err();
        assert!(format!("{e:?}").starts_with(expect), "{}: {e:?}", c.name);
        assert_eq!(e.class(), Class::Rejected, "{}", c.name);
    }
}

/// The one case whose htu is spelled differently from its request URL
/// (case, default port, dot segments, percent-encoding, query, fragment).
#[test]
fn a_differently_spelled_htu_is_the_same_url() {
    let cases = cases();
    let c = cases.iter().find(|c| c.name == "eddsa_normalised").unwrap();
    let htu = json_of(segments(&c.proof)[1])["htu"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(htu, c.url);
    assert!(c.check(&c.request()).is_ok());
    // Without the query, or with another one, it is still the same URL.
    for url in [
        "https://rp.example.com/a/~alice/%2Fx",
        "https://rp.example.com/a/%7Ealice/%2fx?other=2#f",
    ] {
        let request = Request { url, ..c.request() };
        assert!(c.check(&request).is_ok(), "{url}");
    }
    // "%2F" is not "/": a reserved character stays encoded.
    let request = Request {
        url: "https://rp.example.com/a/~alice//x",
        ..c.request()
    };
    assert_eq!(
        c.check(&request).unwrap_err(),
        DpopError::UrlMismatch("path")
    );
}

#[test]
fn the_iat_window_has_inclusive_edges() {
    for c in cases() {
        let request = c.request();
        assert!(c.check_at(&c.proof, &request, IAT + 60).is_ok());
        assert_eq!(
            c.check_at(&c.proof, &request, IAT + 61).unwrap_err(),
            DpopError::IatTooOld {
                iat: IAT,
                now: IAT + 61,
                max_age: 60
            }
        );
        assert!(c.check_at(&c.proof, &request, IAT - 5).is_ok());
        assert_eq!(
            c.check_at(&c.proof, &request, IAT - 6).unwrap_err(),
            DpopError::IatInFuture {
                iat: IAT,
                now: IAT - 6,
                max_ahead: 5
            }
        );
    }
}

#[test]
fn another_request_is_refused() {
    let cases = cases();
    for (i, c) in cases.iter().enumerate() {
        let lower = c.method.to_lowercase();
        let request = Request {
            method: &lower,
            ..c.request()
        };
        assert!(
            matches!(c.check(&request), Err(DpopError::MethodMismatch { .. })),
            "{}",
            c.name
        );
        let other_path = format!("{}/more", c.url.split('?').next().unwrap());
        let request = Request {
            url: &other_path,
            ..c.request()
        };
        assert_eq!(
            c.check(&request).unwrap_err(),
            DpopError::UrlMismatch("path"),
            "{}",
            c.name
        );
        let request = Request {
            access_token: Some("another.access.token"),
            ..c.request()
        };
        assert_eq!(
            c.check(&request).unwrap_err(),
            DpopError::AthMismatch,
            "{}",
            c.name
        );
        // Without an access token (a token endpoint), ath is not checked.
        let request = Request {
            access_token: None,
            ..c.request()
        };
        assert!(c.check(&request).is_ok(), "{}", c.name);
        // Bound to the next case's key.
        let next = &cases[(i + 1) % cases.len()];
        let request = Request {
            jkt: Some(&next.jkt),
            ..c.request()
        };
        assert_eq!(
            c.check(&request).unwrap_err(),
            DpopError::JktMismatch,
            "{}",
            c.name
        );
    }
}

#[test]
fn changed_bytes_are_refused() {
    let cases = cases();
    for (i, c) in cases.iter().enumerate() {
        let [header, payload, signature] = segments(&c.proof);
        // One signature byte flipped (decoded, changed, re-encoded, so the
        // encoding stays canonical).
        let mut sig = URL_SAFE_NO_PAD.decode(signature).unwrap();
        sig[5] ^= 1;
        let flipped = format!("{header}.{payload}.{}", b64(&sig));
        assert_eq!(
            c.check_at(&flipped, &c.request(), NOW).unwrap_err(),
            DpopError::BadSignature,
            "{}",
            c.name
        );
        // The claims changed to those of a request they were not signed for.
        let mut claims = json_of(payload);
        claims["htm"] = Value::from("PATCH");
        let forged = format!(
            "{header}.{}.{signature}",
            b64(claims.to_string().as_bytes())
        );
        let request = Request {
            method: "PATCH",
            ..c.request()
        };
        assert_eq!(
            c.check_at(&forged, &request, NOW).unwrap_err(),
            DpopError::BadSignature,
            "{}",
            c.name
        );
        // The header's key replaced by the next case's key of the same
        // algorithm, if any; otherwise its alg changes too and the key no
        // longer matches it, or the signature fails.
        let next = &cases[(i + 1) % cases.len()];
        let mut swapped = json_of(header);
        swapped["jwk"] = json_of(segments(&next.proof)[0])["jwk"].clone();
        let proof = format!(
            "{}.{payload}.{signature}",
            b64(swapped.to_string().as_bytes())
        );
        let request = Request {
            jkt: Some(&next.jkt),
            ..c.request()
        };
        let e = c.check_at(&proof, &request, NOW).unwrap_err();
        assert!(
            matches!(e, DpopError::BadSignature | DpopError::JwkMismatch(_)),
            "{}: {e:?}",
            c.name
        );
    }
}

#[test]
fn headers_that_are_not_a_dpop_proof_are_refused() {
    let c = &cases()[0];
    let [header, payload, signature] = segments(&c.proof);
    let with_header = |f: &dyn Fn(&mut Value)| {
        let mut h = json_of(header);
        f(&mut h);
        format!("{}.{payload}.{signature}", b64(h.to_string().as_bytes()))
    };
    let check = |proof: String| c.check_at(&proof, &c.request(), NOW);
    assert_eq!(
        check(with_header(&|h| h["typ"] = Value::from("JWT"))).unwrap_err(),
        DpopError::BadTyp(Some("JWT".into()))
    );
    assert_eq!(
        check(with_header(&|h| h["alg"] = Value::from("HS256"))).unwrap_err(),
        DpopError::SymmetricAlg("HS256")
    );
    // An unsecured proof: alg none and an empty signature.
    let unsecured = with_header(&|h| h["alg"] = Value::from("none"));
    let unsecured = format!("{}.", unsecured.rsplit_once('.').unwrap().0);
    assert_eq!(check(unsecured).unwrap_err(), DpopError::Unsecured);
    assert_eq!(
        check(with_header(&|h| h["jwk"]["d"] = Value::from("AAAA"))).unwrap_err(),
        DpopError::PrivateJwk("d")
    );
}

#[test]
fn malformed_proofs_are_told_apart_from_refused_ones() {
    let c = &cases()[0];
    let [header, payload, _] = segments(&c.proof);
    for bad in [
        String::new(),
        format!("{header}.{payload}"),
        format!("{header}.{payload}.AA.AA"),
        format!("Bearer {}", c.proof),
        format!("{}=", c.proof),
    ] {
        let e = c.check_at(&bad, &c.request(), NOW).unwrap_err();
        assert_eq!(e.class(), Class::Malformed, "{e:?}");
    }
    let small = ProofPolicy {
        max_bytes: c.proof.len() - 1,
        ..ProofPolicy::default()
    };
    let e = verify_proof(&c.proof, &c.request(), &small, NOW).unwrap_err();
    assert_eq!(
        e,
        DpopError::TooLarge {
            size: c.proof.len(),
            limit: c.proof.len() - 1
        }
    );
    let request = Request {
        url: "server.example.com/token",
        ..c.request()
    };
    assert_eq!(c.check(&request).unwrap_err(), DpopError::BadRequestUrl);
    assert_eq!(DpopError::BadSignature.class(), Class::Rejected);
}

/// The example proofs of RFC 9449: section 4.1 (figure 2), for a token
/// request, so without ath; section 7.1 (figure 13), presented with the
/// access token of figure 12, whose hash it carries as ath. Both are signed
/// by the key whose thumbprint section 6.1 gives.
const RFC9449_HEADER: &str = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19";
const RFC9449_TOKEN_REQUEST: [&str; 2] = [
    "eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIjoiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwiaWF0IjoxNTYyMjYyNjE2fQ",
    "2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg",
];
const RFC9449_RESOURCE: [&str; 2] = [
    "eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9",
    "2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA",
];
const RFC9449_ACCESS_TOKEN: &str = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";
const RFC9449_JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

fn rfc9449(parts: [&str; 2]) -> String {
    format!("{RFC9449_HEADER}.{}.{}", parts[0], parts[1])
}

#[test]
fn the_rfc9449_example_proofs_verify() {
    let policy = ProofPolicy::default();
    let token_request = Request {
        method: "POST",
        url: "https://server.example.com/token",
        access_token: None,
        jkt: Some(RFC9449_JKT),
    };
    let proof = rfc9449(RFC9449_TOKEN_REQUEST);
    assert_eq!(
        verify_proof(&proof, &token_request, &policy, 1_562_262_616).unwrap(),
        Proof {
            jkt: RFC9449_JKT.into(),
            jti: "-BwC3ESc6acc2lTc".into(),
            iat: 1_562_262_616,
        }
    );
    // Presented with an access token, it lacks the ath that would need.
    let with_token = Request {
        access_token: Some(RFC9449_ACCESS_TOKEN),
        ..token_request
    };
    assert_eq!(
        verify_proof(&proof, &with_token, &policy, 1_562_262_616).unwrap_err(),
        DpopError::MissingClaim("ath")
    );

    let resource = Request {
        method: "GET",
        url: "https://resource.example.org/protectedresource",
        access_token: Some(RFC9449_ACCESS_TOKEN),
        jkt: Some(RFC9449_JKT),
    };
    let proof = rfc9449(RFC9449_RESOURCE);
    assert_eq!(
        verify_proof(&proof, &resource, &policy, 1_562_262_618).unwrap(),
        Proof {
            jkt: RFC9449_JKT.into(),
            jti: "e1j3V_bKic8-LAEB".into(),
            iat: 1_562_262_618,
        }
    );
    let other_token = Request {
        access_token: Some("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxV"),
        ..resource
    };
    assert_eq!(
        verify_proof(&proof, &other_token, &policy, 1_562_262_618).unwrap_err(),
        DpopError::AthMismatch
    );
}
