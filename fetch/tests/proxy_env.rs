//! Proxy variables in the environment are not followed: the worker runs
//! with the postmaster's environment, and a proxy set there for something
//! else must not see (or stall) key fetches. Its own test binary, because
//! it changes the process environment.

mod support;

use std::net::TcpListener;

use jwt_rls_fetch::{fetch_jwks, FetchPolicy, Source};
use support::{Ca, Reply, Server};

#[test]
fn proxy_variables_are_ignored() {
    let ca = Ca::new("a");
    let jwk = {
        let pem = jwt_rls_core::sign::generate("ES256").unwrap();
        let key = jwt_rls_core::sign::SigningKey::new("a", "ES256", &pem).unwrap();
        key.verification_key().unwrap().1
    };
    let doc = format!(r#"{{"keys":[{jwk}]}}"#);
    let s = Server::start(ca.server_config(&["127.0.0.1"]), move |_| {
        Reply::ok(doc.clone())
    });
    let proxy = TcpListener::bind("127.0.0.1:0").unwrap();
    proxy.set_nonblocking(true).unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    // The only test in this binary: nothing else reads the environment
    // while it changes.
    for name in [
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "HTTP_PROXY",
        "http_proxy",
    ] {
        std::env::set_var(name, &proxy_url);
    }
    for name in ["NO_PROXY", "no_proxy"] {
        std::env::remove_var(name);
    }
    let policy = FetchPolicy {
        system_roots: false,
        extra_ca_file: Some(ca.write()),
        ..FetchPolicy::default()
    };
    let fetched = fetch_jwks(&Source::JwksUri(s.url("/jwks")), &policy).unwrap();
    assert_eq!(fetched.keys()[0].kid, "a");
    assert!(proxy.accept().is_err(), "the fetch went through the proxy");
}
