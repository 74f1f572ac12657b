//! fetch_jwks against real HTTPS servers on 127.0.0.1 (tests/support):
//! each behaviour of the fetch policy, seen from outside.

mod support;

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jwt_rls_core::keys::{Format, Key, KeySet};
use jwt_rls_core::sign::{generate, SigningKey};
use jwt_rls_core::{verify, Policy};
use jwt_rls_fetch::{
    fetch_jwks, plan, Document, ErrorKind, FetchError, FetchPolicy, FetchedJwks, KeyState, Plan,
    Source, StoredKey,
};
use support::{Ca, Reply, Server};

const DISCOVERY: &str = "/.well-known/openid-configuration";

fn policy(ca: &Ca) -> FetchPolicy {
    FetchPolicy {
        timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(2),
        system_roots: false,
        extra_ca_file: Some(ca.write()),
        ..FetchPolicy::default()
    }
}

/// A signing key and its public JWK text.
fn key(kid: &str) -> (SigningKey, String) {
    let signing = SigningKey::new(kid, "ES256", &generate("ES256").unwrap()).unwrap();
    let jwk = signing.verification_key().unwrap().1;
    (signing, jwk)
}

fn jwks(jwks: &[&str]) -> String {
    format!(r#"{{"keys":[{}]}}"#, jwks.join(","))
}

/// An OpenID provider: its discovery document names itself as issuer
/// (unless `claimed_issuer` says otherwise) and `/jwks`, which serves
/// whatever `jwks` holds at the time.
struct Provider {
    server: Server,
    jwks: Arc<Mutex<String>>,
    claimed_issuer: Arc<Mutex<Option<String>>>,
}

impl Provider {
    fn start(ca: &Ca, document: String) -> Provider {
        let jwks = Arc::new(Mutex::new(document));
        let claimed_issuer = Arc::new(Mutex::new(None::<String>));
        let origin = Arc::new(OnceLock::<String>::new());
        let server = {
            let (jwks, claimed, origin) = (jwks.clone(), claimed_issuer.clone(), origin.clone());
            Server::start(ca.server_config(&["127.0.0.1"]), move |path| {
                let origin = origin.get().unwrap();
                match path {
                    DISCOVERY => {
                        let issuer = claimed.lock().unwrap().clone().unwrap_or(origin.clone());
                        Reply::Full {
                            status: 200,
                            headers: vec![("Set-Cookie".into(), "session=1; Path=/".into())],
                            body: format!(r#"{{"issuer":"{issuer}","jwks_uri":"{origin}/jwks"}}"#)
                                .into(),
                        }
                    }
                    "/jwks" => Reply::ok(jwks.lock().unwrap().clone()),
                    _ => Reply::status(404, "no"),
                }
            })
        };
        origin.set(server.origin()).unwrap();
        Provider {
            server,
            jwks,
            claimed_issuer,
        }
    }

    fn issuer(&self) -> Source {
        Source::Issuer(self.server.origin())
    }
}

/// A server answering every path with `reply()`.
fn serving(ca: &Ca, reply: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Server {
    Server::start(ca.server_config(&["127.0.0.1"]), reply)
}

fn kind(r: Result<FetchedJwks, FetchError>) -> ErrorKind {
    match r {
        Ok(f) => panic!("fetched {:?}", f.keys()),
        Err(e) => {
            // No message may carry more than our own words and short
            // reasons; none of the test bodies' text.
            let text = e.to_string();
            assert!(!text.contains("GARBAGE"), "{text}");
            assert!(text.len() < 400, "{text}");
            e.kind
        }
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn discovery_then_jwks() {
    let ca = Ca::new("a");
    let (_, a) = key("a");
    let p = Provider::start(&ca, jwks(&[&a]));
    let fetched = fetch_jwks(&p.issuer(), &policy(&ca)).unwrap();
    assert_eq!(fetched.keys().len(), 1);
    assert_eq!(fetched.keys()[0].kid, "a");
    assert_eq!(fetched.jwks_uri(), p.server.url("/jwks"));
    assert_eq!(p.server.log.paths(), [DISCOVERY, "/jwks"]);
    // A configured issuer with a trailing slash still finds the document,
    // and then must match the discovery document's issuer exactly.
    let slash = Source::Issuer(format!("{}/", p.server.origin()));
    assert_eq!(
        kind(fetch_jwks(&slash, &policy(&ca))),
        ErrorKind::IssuerMismatch
    );
}

#[test]
fn jwks_url_directly() {
    let ca = Ca::new("a");
    let (_, a) = key("a");
    let p = Provider::start(&ca, jwks(&[&a]));
    let fetched = fetch_jwks(&Source::JwksUri(p.server.url("/jwks")), &policy(&ca)).unwrap();
    assert_eq!(fetched.keys()[0].kid, "a");
    assert_eq!(p.server.log.paths(), ["/jwks"]);
}

/// The identity the client shows, and what it does not send back.
#[test]
fn user_agent_no_cookies_no_compression() {
    let ca = Ca::new("a");
    let (_, a) = key("a");
    let p = Provider::start(&ca, jwks(&[&a]));
    fetch_jwks(&p.issuer(), &policy(&ca)).unwrap();
    let requests = p.server.log.requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        let ua = r.header("user-agent").unwrap();
        assert!(ua.starts_with("jwt_rls"), "{ua}");
        assert_eq!(
            r.header("cookie"),
            None,
            "the discovery answer set a cookie"
        );
        assert_eq!(r.header("accept-encoding"), Some("identity"));
    }
}

/// A key rotation between two fetches: the new kid is added, the old one
/// marked missing and still enabled, so a token signed just before the
/// rotation still verifies; it retires only after the grace period.
#[test]
fn rotation_between_fetches() {
    let ca = Ca::new("a");
    let (old_signer, old) = key("old");
    let (new_signer, new) = key("new");
    let p = Provider::start(&ca, jwks(&[&old]));
    let mut table: Vec<StoredKey> = vec![];
    let grace = 3600;
    let t0 = now();

    let first = fetch_jwks(&p.issuer(), &policy(&ca)).unwrap();
    let step = plan(&table, &first, t0, grace);
    apply(&mut table, &step, t0);
    assert_eq!(kids(&table), [("old", KeyState::Listed)]);
    let token = old_signer
        .sign(&format!(r#"{{"sub":"u","exp":{}}}"#, t0 + 600))
        .unwrap();

    *p.jwks.lock().unwrap() = jwks(&[&new]);
    let second = fetch_jwks(&p.issuer(), &policy(&ca)).unwrap();
    let step = plan(&table, &second, t0 + 60, grace);
    assert_eq!(step.add.len(), 1);
    assert_eq!(step.add[0].kid, "new");
    assert_eq!(step.missing, ["old"]);
    assert!(step.retire.is_empty());
    apply(&mut table, &step, t0 + 60);
    assert_eq!(
        kids(&table),
        [
            ("new", KeyState::Listed),
            ("old", KeyState::Missing { since: t0 + 60 })
        ]
    );
    let keys = keyset(&table);
    verify(&token, &keys, &Policy::default(), t0 + 61).expect("old token still verifies");
    let fresh = new_signer
        .sign(&format!(r#"{{"sub":"u","exp":{}}}"#, t0 + 600))
        .unwrap();
    verify(&fresh, &keys, &Policy::default(), t0 + 61).expect("new token verifies");

    // Still inside the grace period: nothing changes.
    let third = fetch_jwks(&p.issuer(), &policy(&ca)).unwrap();
    assert!(plan(&table, &third, t0 + 60 + grace - 1, grace).is_empty());
    let step = plan(&table, &third, t0 + 60 + grace, grace);
    assert_eq!(step.retire, ["old"]);
    apply(&mut table, &step, t0 + 60 + grace);
    let keys = keyset(&table);
    assert!(verify(&token, &keys, &Policy::default(), t0 + 61).is_err());
}

/// Hostile or broken answers after a good fetch: each is an error, so the
/// worker has nothing to plan from and the key table stays as it was.
#[test]
fn failed_fetches_retire_nothing() {
    let ca = Ca::new("a");
    let (_, a) = key("a");
    let p = Provider::start(&ca, jwks(&[&a]));
    let mut table: Vec<StoredKey> = vec![];
    let good = fetch_jwks(&p.issuer(), &policy(&ca)).unwrap();
    let step = plan(&table, &good, 0, 0);
    apply(&mut table, &step, 0);
    let before = table.clone();

    let small_rsa = r#"{"kty":"RSA","kid":"x","alg":"RS256","n":"AQAB","e":"AQAB"}"#;
    let secret = r#"{"kty":"oct","kid":"s","alg":"HS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}"#;
    let encryption = r#"{"kty":"RSA","use":"enc","kid":"e","n":"AQAB","e":"AQAB"}"#;
    // Each body, and the error it must give (as its Debug text starts).
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"GARBAGE <html>".to_vec(), "BadJwks(Key(JwksNotObject))"),
        (
            b"{\"keys\":[GARBAGE".to_vec(),
            "BadJwks(Key(JwksNotObject))",
        ),
        (b"{\"keys\":{}}".to_vec(), "BadJwks(Key(JwksNoKeys))"),
        (b"{\"keys\":[]}".to_vec(), "NoUsableKey"),
        (jwks(&[encryption]).into_bytes(), "NoUsableKey"),
        (jwks(&[secret]).into_bytes(), "NoUsableKey"),
        (jwks(&[small_rsa]).into_bytes(), "BadJwks(Key(JwksEntry"),
        (b"{\"keys\":[\xff]}".to_vec(), "NotUtf8"),
    ];
    for (body, want) in cases {
        let raw = serving(&ca, move |_| Reply::ok(body.clone()));
        let got = kind(fetch_jwks(&Source::JwksUri(raw.url("/jwks")), &policy(&ca)));
        assert!(format!("{got:?}").starts_with(want), "{got:?}");
        // The worker plans only from a FetchedJwks: with an error there is
        // nothing to plan from, and the table is what it was.
        assert_eq!(table, before);
    }
    // The good document is still fetched and changes nothing.
    let again = fetch_jwks(&p.issuer(), &policy(&ca)).unwrap();
    assert!(plan(&table, &again, 10, 0).is_empty());
}

/// A JWKS that mixes a usable key with a published secret: the key is
/// fetched, the secret refused and reported.
#[test]
fn published_secret_is_refused_beside_a_good_key() {
    let ca = Ca::new("a");
    let (_, a) = key("a");
    let secret = r#"{"kty":"oct","kid":"s","alg":"HS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}"#;
    let p = Provider::start(&ca, jwks(&[&a, secret]));
    let f = fetch_jwks(&p.issuer(), &policy(&ca)).unwrap();
    assert_eq!(f.keys().len(), 1);
    assert_eq!(f.secrets(), ["s"]);
}

#[test]
fn server_gone_is_a_connect_error() {
    let ca = Ca::new("a");
    let (_, a) = key("a");
    let mut p = Provider::start(&ca, jwks(&[&a]));
    fetch_jwks(&p.issuer(), &policy(&ca)).unwrap();
    p.server.stop();
    let e = fetch_jwks(&p.issuer(), &policy(&ca)).unwrap_err();
    assert_eq!(e.document, Document::Discovery);
    assert_eq!(e.kind, ErrorKind::Connect("connection refused".into()));
}

/// The server accepts the request and never answers: the deadline fires.
#[test]
fn silent_server_times_out() {
    let ca = Ca::new("a");
    let s = serving(&ca, |_| Reply::Silence(Duration::from_secs(15)));
    let limit = Duration::from_millis(1500);
    let pol = FetchPolicy {
        timeout: limit,
        ..policy(&ca)
    };
    let start = Instant::now();
    let got = kind(fetch_jwks(&Source::JwksUri(s.url("/jwks")), &pol));
    let took = start.elapsed();
    assert_eq!(got, ErrorKind::Timeout { limit });
    assert!(took >= limit - Duration::from_millis(100), "{took:?}");
    assert!(took < limit + Duration::from_millis(1000), "{took:?}");
}

/// A byte every 100 ms never lets a read wait long, so only a deadline
/// for the whole fetch stops it.
#[test]
fn dripping_body_times_out() {
    let ca = Ca::new("a");
    let s = serving(&ca, |_| Reply::Drip {
        total: 300,
        every: Duration::from_millis(100),
    });
    let limit = Duration::from_millis(1500);
    let pol = FetchPolicy {
        timeout: limit,
        ..policy(&ca)
    };
    let start = Instant::now();
    let got = kind(fetch_jwks(&Source::JwksUri(s.url("/jwks")), &pol));
    let took = start.elapsed();
    assert_eq!(got, ErrorKind::Timeout { limit });
    assert!(took < limit + Duration::from_millis(1000), "{took:?}");
}

/// A TCP listener that never speaks TLS: the handshake waits, the
/// deadline fires.
#[test]
fn silent_tls_handshake_times_out() {
    let ca = Ca::new("a");
    let mute = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}/jwks", mute.local_addr().unwrap());
    let limit = Duration::from_millis(1000);
    let pol = FetchPolicy {
        timeout: limit,
        ..policy(&ca)
    };
    let start = Instant::now();
    let got = kind(fetch_jwks(&Source::JwksUri(url), &pol));
    assert_eq!(got, ErrorKind::Timeout { limit });
    assert!(start.elapsed() < limit + Duration::from_millis(1000));
}

/// An endless body: the reader stops just past the cap, so the server
/// can only write what the cap and the socket buffers take.
#[test]
fn huge_body_stops_at_the_cap() {
    let ca = Ca::new("a");
    let total = 512 << 20;
    let s = serving(&ca, move |_| Reply::Endless { total });
    let pol = FetchPolicy {
        max_body_bytes: 64 << 10,
        ..policy(&ca)
    };
    let got = kind(fetch_jwks(&Source::JwksUri(s.url("/jwks")), &pol));
    assert_eq!(got, ErrorKind::TooLarge { limit: 64 << 10 });
    // Let the server notice the closed connection.
    std::thread::sleep(Duration::from_millis(300));
    let written = s.log.body_bytes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(written < 32 << 20, "the server wrote {written} bytes");
}

/// A Content-Length past the cap is refused before any body is read.
#[test]
fn declared_length_past_the_cap() {
    let ca = Ca::new("a");
    let s = serving(&ca, |_| {
        Reply::Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n{".to_vec())
    });
    let pol = FetchPolicy {
        max_body_bytes: 1000,
        ..policy(&ca)
    };
    let start = Instant::now();
    let got = kind(fetch_jwks(&Source::JwksUri(s.url("/jwks")), &pol));
    assert_eq!(got, ErrorKind::TooLarge { limit: 1000 });
    assert!(start.elapsed() < Duration::from_secs(2));
}

/// The cap is exact, whether the length is declared or the body just ends
/// when the connection closes.
#[test]
fn a_body_of_exactly_the_cap_is_read() {
    let ca = Ca::new("a");
    let (_, a) = key("a");
    let doc = jwks(&[&a]);
    let len = doc.len();
    let declared = Provider::start(&ca, doc.clone());
    let undeclared = serving(&ca, move |_| {
        let mut raw = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        raw.extend_from_slice(doc.as_bytes());
        Reply::Raw(raw)
    });
    for url in [declared.server.url("/jwks"), undeclared.url("/jwks")] {
        let cap = |max_body_bytes| FetchPolicy {
            max_body_bytes,
            ..policy(&ca)
        };
        fetch_jwks(&Source::JwksUri(url.clone()), &cap(len)).unwrap();
        let got = kind(fetch_jwks(&Source::JwksUri(url.clone()), &cap(len - 1)));
        assert_eq!(got, ErrorKind::TooLarge { limit: len - 1 }, "{url}");
    }
}

#[test]
fn not_http_at_all() {
    let ca = Ca::new("a");
    let s = serving(&ca, |_| Reply::Raw(b"GARBAGE GARBAGE\r\n\r\n".to_vec()));
    let got = kind(fetch_jwks(&Source::JwksUri(s.url("/jwks")), &policy(&ca)));
    assert!(matches!(got, ErrorKind::Http(_)), "{got:?}");
}

#[test]
fn redirect_loop() {
    let ca = Ca::new("a");
    let s = serving(&ca, |_| Reply::Redirect("/loop".into()));
    let pol = FetchPolicy {
        max_redirects: 3,
        ..policy(&ca)
    };
    let got = kind(fetch_jwks(&Source::JwksUri(s.url("/jwks")), &pol));
    assert_eq!(got, ErrorKind::Redirects { limit: 3 });
    assert_eq!(s.log.paths(), ["/jwks", "/loop", "/loop", "/loop"]);
    // With none allowed, the first redirect is the error.
    let pol = FetchPolicy {
        max_redirects: 0,
        ..policy(&ca)
    };
    let got = kind(fetch_jwks(&Source::JwksUri(s.url("/jwks")), &pol));
    assert_eq!(got, ErrorKind::Redirects { limit: 0 });
}

/// A Location that cannot be followed: an error in our words, without
/// the header's text.
#[test]
fn unusable_location() {
    let ca = Ca::new("a");
    let s = serving(&ca, |_| Reply::Redirect("../../GARBAGE-location".into()));
    let got = kind(fetch_jwks(&Source::JwksUri(s.url("/jwks")), &policy(&ca)));
    assert!(matches!(got, ErrorKind::Http(_)), "{got:?}");
}

#[test]
fn redirects_within_the_limit_are_followed() {
    let ca = Ca::new("a");
    let (_, a) = key("a");
    let doc = jwks(&[&a]);
    let s = serving(&ca, move |path| match path {
        "/jwks" => Reply::Redirect("/one".into()),
        "/one" => Reply::Redirect("/two".into()),
        _ => Reply::ok(doc.clone()),
    });
    let pol = FetchPolicy {
        max_redirects: 2,
        ..policy(&ca)
    };
    let f = fetch_jwks(&Source::JwksUri(s.url("/jwks")), &pol).unwrap();
    assert_eq!(f.keys()[0].kid, "a");
}

/// A redirect to http:// is refused before anything connects to it.
#[test]
fn redirect_to_http_is_refused() {
    let ca = Ca::new("a");
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    plain.set_nonblocking(true).unwrap();
    let target = format!("http://{}/jwks", plain.local_addr().unwrap());
    let s = serving(&ca, move |_| Reply::Redirect(target.clone()));
    let got = kind(fetch_jwks(&Source::JwksUri(s.url("/jwks")), &policy(&ca)));
    assert_eq!(got, ErrorKind::RedirectNotHttps);
    assert!(
        plain.accept().is_err(),
        "something connected to the http:// target"
    );
}

#[test]
fn http_urls_are_refused_without_connecting() {
    let ca = Ca::new("a");
    let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    plain.set_nonblocking(true).unwrap();
    let url = format!("http://{}", plain.local_addr().unwrap());
    let e = fetch_jwks(&Source::Issuer(url.clone()), &policy(&ca)).unwrap_err();
    assert_eq!(
        (e.document, e.kind),
        (Document::Discovery, ErrorKind::NotHttps)
    );
    let e = fetch_jwks(&Source::JwksUri(format!("{url}/jwks")), &policy(&ca)).unwrap_err();
    assert_eq!((e.document, e.kind), (Document::Jwks, ErrorKind::NotHttps));
    assert!(plain.accept().is_err());
}

/// A discovery document whose jwks_uri is http:// is refused.
#[test]
fn discovered_http_jwks_uri_is_refused() {
    let ca = Ca::new("a");
    let origin = Arc::new(OnceLock::<String>::new());
    let s = {
        let origin = origin.clone();
        serving(&ca, move |_| {
            let o = origin.get().unwrap();
            Reply::ok(format!(
                r#"{{"issuer":"{o}","jwks_uri":"http://127.0.0.1:1/jwks"}}"#
            ))
        })
    };
    origin.set(s.origin()).unwrap();
    let got = kind(fetch_jwks(&Source::Issuer(s.origin()), &policy(&ca)));
    assert!(matches!(got, ErrorKind::BadDiscovery(_)), "{got:?}");
}

#[test]
fn certificate_from_another_ca() {
    let trusted = Ca::new("trusted");
    let other = Ca::new("other");
    let s = Server::start(other.server_config(&["127.0.0.1"]), |_| Reply::ok("{}"));
    let got = kind(fetch_jwks(
        &Source::JwksUri(s.url("/jwks")),
        &policy(&trusted),
    ));
    assert_eq!(
        got,
        ErrorKind::Tls("the certificate is not signed by a trusted CA".into())
    );
    assert!(
        s.log.paths().is_empty(),
        "a request went out over a bad TLS"
    );
}

#[test]
fn certificate_for_another_host() {
    let ca = Ca::new("a");
    let s = Server::start(ca.server_config(&["other.example"]), |_| Reply::ok("{}"));
    let got = kind(fetch_jwks(&Source::JwksUri(s.url("/jwks")), &policy(&ca)));
    assert_eq!(
        got,
        ErrorKind::Tls("the certificate is not valid for the host name".into())
    );
    assert!(s.log.paths().is_empty());
}

/// The system store (whatever this machine has) does not hold the test
/// CA: verification is on with it too; adding the bundle makes it work.
#[test]
fn system_roots_and_the_extra_bundle() {
    let ca = Ca::new("a");
    let (_, a) = key("a");
    let p = Provider::start(&ca, jwks(&[&a]));
    let system_only = FetchPolicy {
        system_roots: true,
        extra_ca_file: None,
        ..policy(&ca)
    };
    let got = kind(fetch_jwks(&p.issuer(), &system_only));
    let want = if rustls_native_certs::load_native_certs().certs.is_empty() {
        ErrorKind::NoTrustedRoots
    } else {
        ErrorKind::Tls("the certificate is not signed by a trusted CA".into())
    };
    assert_eq!(got, want);
    let both = FetchPolicy {
        system_roots: true,
        ..policy(&ca)
    };
    fetch_jwks(&p.issuer(), &both).unwrap();
}

#[test]
fn unusable_ca_bundles() {
    let ca = Ca::new("a");
    let nothing = FetchPolicy {
        system_roots: false,
        extra_ca_file: None,
        ..policy(&ca)
    };
    let src = Source::JwksUri("https://127.0.0.1:1/jwks".into());
    assert_eq!(kind(fetch_jwks(&src, &nothing)), ErrorKind::NoTrustedRoots);
    let missing = FetchPolicy {
        extra_ca_file: Some("/nonexistent/ca.pem".into()),
        ..nothing.clone()
    };
    assert!(matches!(
        kind(fetch_jwks(&src, &missing)),
        ErrorKind::CaBundle(_)
    ));
    let empty = ca.write();
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let empty = FetchPolicy {
        extra_ca_file: Some(empty),
        ..nothing
    };
    assert_eq!(
        kind(fetch_jwks(&src, &empty)),
        ErrorKind::CaBundle("no certificate in it".into())
    );
}

#[test]
fn discovery_for_another_issuer() {
    let ca = Ca::new("a");
    let (_, a) = key("a");
    let p = Provider::start(&ca, jwks(&[&a]));
    *p.claimed_issuer.lock().unwrap() = Some("https://evil.example".into());
    let e = fetch_jwks(&p.issuer(), &policy(&ca)).unwrap_err();
    assert_eq!(
        (e.document, e.kind),
        (Document::Discovery, ErrorKind::IssuerMismatch)
    );
    assert_eq!(
        p.server.log.paths(),
        [DISCOVERY],
        "the JWKS was fetched anyway"
    );
}

#[test]
fn only_200_is_accepted() {
    let ca = Ca::new("a");
    for status in [201, 204, 304, 404, 500] {
        let s = serving(&ca, move |_| Reply::status(status, "{\"keys\":[]}"));
        let e = fetch_jwks(&Source::Issuer(s.origin()), &policy(&ca)).unwrap_err();
        let want = ErrorKind::Status(status);
        assert_eq!(e.kind, want, "{status}");
        assert!(
            !matches!(e.kind, ErrorKind::BadJwks(_) | ErrorKind::NoUsableKey),
            "{status}: the body was read"
        );
        assert_eq!(e.document, Document::Discovery);
    }
}

// --- a key table, as the worker would keep it -----------------------------

fn apply(table: &mut Vec<StoredKey>, plan: &Plan, now: i64) {
    for k in table.iter_mut() {
        if plan.missing.contains(&k.kid) {
            k.state = KeyState::Missing { since: now };
        }
        if plan.relisted.contains(&k.kid) || plan.revive.contains(&k.kid) {
            k.state = KeyState::Listed;
        }
        if plan.retire.contains(&k.kid) {
            k.state = KeyState::Retired;
        }
    }
    table.extend(plan.add.iter().map(|e| StoredKey {
        kid: e.kid.clone(),
        alg: e.alg.clone(),
        material: e.material.clone(),
        state: KeyState::Listed,
    }));
    table.sort_by(|a, b| a.kid.cmp(&b.kid));
}

fn kids(table: &[StoredKey]) -> Vec<(&str, KeyState)> {
    table.iter().map(|k| (k.kid.as_str(), k.state)).collect()
}

fn keyset(table: &[StoredKey]) -> KeySet {
    KeySet::new(
        table
            .iter()
            .map(|k| {
                let mut key = Key::new(&k.kid, &k.alg, Format::Jwk, &k.material).unwrap();
                key.enabled = matches!(k.state, KeyState::Listed | KeyState::Missing { .. });
                key
            })
            .collect(),
    )
}
