//! Fetches a JWKS the way the worker will, and prints what it found:
//! `cargo run -p jwt_rls_fetch --example fetch_jwks -- [--ca FILE] issuer|jwks URL`.
//! A URL whose path ends in `.json` or contains `jwks`/`certs`/`keys` is
//! taken as a JWKS URL, anything else as an issuer.

use std::time::Instant;

use jwt_rls_fetch::{fetch_jwks, FetchPolicy, Source};

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut policy = FetchPolicy::default();
    if args.first().map(String::as_str) == Some("--ca") && args.len() > 1 {
        policy.extra_ca_file = Some(args[1].clone().into());
        args.drain(..2);
    }
    let Some(url) = args.first() else {
        eprintln!("usage: fetch_jwks [--ca FILE] ISSUER_OR_JWKS_URL");
        std::process::exit(2);
    };
    let path = url.rsplit('/').next().unwrap_or("");
    let jwks_like =
        path.ends_with(".json") || ["jwks", "certs", "keys"].iter().any(|w| url.contains(w));
    let source = if jwks_like {
        Source::JwksUri(url.clone())
    } else {
        Source::Issuer(url.clone())
    };
    let start = Instant::now();
    match fetch_jwks(&source, &policy) {
        Ok(f) => {
            println!("{} ({:?})", f.jwks_uri(), start.elapsed());
            for k in f.keys() {
                println!("  key {} {}", k.kid, k.alg);
            }
            for s in f.skipped() {
                println!("  skipped: {s}");
            }
            for s in f.secrets() {
                println!("  refused published secret {s}");
            }
            if f.encryption() > 0 {
                println!("  {} encryption key(s) left out", f.encryption());
            }
        }
        Err(e) => {
            eprintln!("{e} ({:?})", start.elapsed());
            std::process::exit(1);
        }
    }
}
