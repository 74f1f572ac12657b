//! The signature check alone, as the core makes it: `Key::verify` on a
//! token's signing input and decoded signature, `n` times. This is the
//! primitive `make bench-instructions` (scripts/bench_instructions.py)
//! counts under callgrind beside the whole bind path; `--ath` adds the
//! SHA-256 of the access token that a DPoP proof check computes (its `ath`).
//!
//! usage: signature ALG FORMAT MATERIAL_FILE TOKEN_FILE N [--ath ACCESS_TOKEN_FILE]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jwt_rls_core::fingerprint::token_digest;
use jwt_rls_core::{Format, Key};

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .trim()
        .to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        eprintln!(
            "usage: signature ALG FORMAT MATERIAL_FILE TOKEN_FILE N [--ath ACCESS_TOKEN_FILE]"
        );
        std::process::exit(2);
    }
    let format = Format::from_name(&args[2]).expect("format: secret, pem or jwk");
    let key = Key::new("k", &args[1], format, &read(&args[3])).expect("a usable key");
    let token = read(&args[4]);
    let n: usize = args[5].parse().expect("N");
    let access = (args.get(6).map(String::as_str) == Some("--ath")).then(|| read(&args[7]));
    let (input, signature) = token.rsplit_once('.').expect("a JWS");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    let mut ok = 0usize;
    for _ in 0..n {
        ok += usize::from(key.verify(input.as_bytes(), &signature));
        if let Some(access) = &access {
            ok += usize::from(token_digest(access)[0] != 0xff);
        }
    }
    println!("{ok}");
}
