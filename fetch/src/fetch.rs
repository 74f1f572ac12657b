//! Getting a JWKS over HTTPS, strictly.
//!
//! What a fetch does and refuses, and why:
//! - https:// only, for the configured URL, the discovered `jwks_uri` and
//!   every redirect: the keys decide who may log in, so they must come
//!   from the provider, authenticated.
//! - Certificates are always verified, against the operating system's trust
//!   store (read at each fetch, so distro updates and an organisation's own
//!   CA apply without rebuilding the extension; `rustls-native-certs` also
//!   honours `SSL_CERT_FILE`/`SSL_CERT_DIR`, as OpenSSL does) plus an
//!   optional extra PEM bundle. There is no switch to turn verification off.
//! - One deadline covers the whole fetch (discovery, redirects, JWKS,
//!   bodies), so a server that drips a byte at a time cannot hold the
//!   worker; connecting has its own shorter limit.
//! - Each body is capped; reading stops one byte past the cap.
//! - Only status 200 is accepted; the content type is ignored and the body
//!   is parsed strictly (UTF-8, the core's JSON rules) instead.
//! - No cookies, no compression (no decompression bombs), no proxy: the
//!   worker runs with the postmaster's environment, and an `HTTPS_PROXY`
//!   set there for something else must not silently route key fetches.
//! - Symmetric (`oct`) keys in a fetched JWKS are refused: a secret that is
//!   published is a secret anyone can sign with.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jwt_rls_core::error::KeyError;
use jwt_rls_core::keys::{parse_jwks, JwkEntry};
use serde_json::Value;
use ureq::http::{header, StatusCode, Uri};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};
use ureq::Agent;

use crate::error::{sanitized, Document, ErrorKind, FetchError};

/// The path OpenID Connect Discovery 1.0 section 4 appends to an issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Largest extra CA bundle read, in bytes (a bundle of every public root
/// is about 250 KB).
const MAX_CA_BUNDLE: u64 = 4 << 20;

/// Where the keys are published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An OpenID Connect issuer: its discovery document names the JWKS.
    Issuer(String),
    /// A JWKS URL, used as it is.
    JwksUri(String),
}

/// The limits of one fetch. `Default` gives the values the worker should
/// use unless an administrator sets others.
#[derive(Debug, Clone)]
pub struct FetchPolicy {
    /// Deadline for the whole fetch: discovery, JWKS, redirects and bodies.
    pub timeout: Duration,
    /// Limit for opening each TCP connection (within `timeout`).
    pub connect_timeout: Duration,
    /// Largest body accepted, in bytes, for each document.
    pub max_body_bytes: usize,
    /// Redirects followed for each document; one more is an error.
    pub max_redirects: u32,
    /// Whether the operating system's trust store is used.
    pub system_roots: bool,
    /// A PEM file of further CA certificates to trust (a private CA).
    pub extra_ca_file: Option<PathBuf>,
    /// Sent as `User-Agent`, so providers can tell who is asking.
    pub user_agent: String,
}

impl Default for FetchPolicy {
    fn default() -> FetchPolicy {
        FetchPolicy {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            // The largest JWKS seen from the common providers (Entra ID,
            // with x5c chains) is about 10 KB; discovery documents are a
            // few KB. 256 KiB is far above both and still small.
            max_body_bytes: 256 << 10,
            max_redirects: 3,
            system_roots: true,
            extra_ca_file: None,
            user_agent: concat!("jwt_rls-jwks-fetch/", env!("CARGO_PKG_VERSION")).into(),
        }
    }
}

/// A fetched JWKS with at least one storable signature key. Only
/// `fetch_jwks` and `FetchedJwks::parse` make one, so a value of this type
/// is proof that the fetch succeeded; `plan::plan` takes nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedJwks {
    jwks_uri: String,
    keys: Vec<JwkEntry>,
    skipped: Vec<KeyError>,
    secrets: Vec<String>,
    encryption: usize,
    unnamed: usize,
}

impl FetchedJwks {
    /// Checks a JWKS document as `fetch_jwks` does after getting it.
    pub fn parse(jwks_uri: &str, text: &str) -> Result<FetchedJwks, ErrorKind> {
        let jwks = parse_jwks(text).map_err(ErrorKind::BadJwks)?;
        let (secrets, keys): (Vec<JwkEntry>, Vec<JwkEntry>) =
            jwks.keys.into_iter().partition(|k| k.alg.starts_with("HS"));
        if keys.is_empty() {
            return Err(ErrorKind::NoUsableKey);
        }
        // Entries refused before their kid was read: while there is one,
        // a stored kid missing from `kids()` may just be unreadable now.
        let unnamed = jwks
            .skipped
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    KeyError::JwksEntryNotObject(_) | KeyError::JwksEntryNoKid(_)
                )
            })
            .count();
        Ok(FetchedJwks {
            jwks_uri: jwks_uri.to_string(),
            keys,
            skipped: jwks.skipped,
            secrets: secrets.into_iter().map(|k| k.kid).collect(),
            encryption: jwks.encryption,
            unnamed,
        })
    }

    /// The URL the JWKS was fetched from (after discovery, before redirects).
    pub fn jwks_uri(&self) -> &str {
        &self.jwks_uri
    }

    /// The signature keys to store; never empty.
    pub fn keys(&self) -> &[JwkEntry] {
        &self.keys
    }

    /// Keys listed but unusable, each with why (the core's reasons).
    pub fn skipped(&self) -> &[KeyError] {
        &self.skipped
    }

    /// Kids of symmetric keys, refused because they were published.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// How many encryption keys were left out.
    pub fn encryption(&self) -> usize {
        self.encryption
    }

    /// How many listed entries could not even be attributed to a kid.
    pub fn unnamed(&self) -> usize {
        self.unnamed
    }

    /// Every kid the document names, usable or not. A stored key whose kid
    /// is here is still published by the provider.
    pub fn listed_kids(&self) -> impl Iterator<Item = &str> {
        let skipped = self.skipped.iter().filter_map(|e| match e {
            KeyError::JwksEntry { kid, .. }
            | KeyError::JwksEntryNoAlg(kid)
            | KeyError::JwksDuplicateKid(kid) => Some(kid.as_str()),
            _ => None,
        });
        self.keys
            .iter()
            .map(|k| k.kid.as_str())
            .chain(self.secrets.iter().map(String::as_str))
            .chain(skipped)
    }
}

/// Fetches and checks the JWKS of `source`. For an issuer, the discovery
/// document is fetched first and its `issuer` must equal the configured
/// issuer exactly (OpenID Connect Discovery 1.0 section 4.3), so that a
/// document served for another issuer cannot hand over its keys.
pub fn fetch_jwks(source: &Source, policy: &FetchPolicy) -> Result<FetchedJwks, FetchError> {
    let deadline = Instant::now() + policy.timeout;
    let first = match source {
        Source::Issuer(_) => Document::Discovery,
        Source::JwksUri(_) => Document::Jwks,
    };
    let first_url = match source {
        Source::Issuer(url) | Source::JwksUri(url) => url,
    };
    // Refuse a bad URL before reading the trust store (some milliseconds).
    let early = |kind| FetchError {
        document: first,
        kind,
    };
    check_url(first_url).map_err(early)?;
    let agent = agent(policy).map_err(early)?;
    let jwks_uri = match source {
        Source::JwksUri(url) => url.clone(),
        Source::Issuer(issuer) => {
            discover(&agent, issuer, policy, deadline).map_err(|kind| FetchError {
                document: Document::Discovery,
                kind,
            })?
        }
    };
    let jwks_err = |kind| FetchError {
        document: Document::Jwks,
        kind,
    };
    check_url(&jwks_uri).map_err(jwks_err)?;
    let text = get(
        &agent,
        &jwks_uri,
        "application/jwk-set+json, application/json",
        policy,
        deadline,
    )
    .map_err(jwks_err)?;
    FetchedJwks::parse(&jwks_uri, &text).map_err(jwks_err)
}

/// The discovery step: the `jwks_uri` of `issuer`.
fn discover(
    agent: &Agent,
    issuer: &str,
    policy: &FetchPolicy,
    deadline: Instant,
) -> Result<String, ErrorKind> {
    check_url(issuer)?;
    // An issuer is a URL "with no query or fragment components" (OpenID
    // Connect Core 1.0 section 2).
    if issuer.contains('?') {
        return Err(ErrorKind::BadUrl("an issuer has no query"));
    }
    // Section 4: "any terminating / MUST be removed before appending".
    let url = format!(
        "{}{DISCOVERY_PATH}",
        issuer.strip_suffix('/').unwrap_or(issuer)
    );
    let text = get(agent, &url, "application/json", policy, deadline)?;
    discovered_jwks_uri(issuer, &text)
}

/// Reads a discovery document: its `issuer` must be `issuer` exactly, and
/// its `jwks_uri` an https:// URL.
pub fn discovered_jwks_uri(issuer: &str, text: &str) -> Result<String, ErrorKind> {
    // The core's strict JSON reader: duplicate members (which a second
    // parser could resolve the other way), NUL and deep nesting refused.
    let doc = jwt_rls_core::json::parse_object(text.as_bytes(), jwt_rls_core::error::Part::Payload)
        .map_err(|_| ErrorKind::BadDiscovery("is not a strict JSON object"))?;
    match doc.get("issuer") {
        Some(Value::String(found)) if found == issuer => {}
        Some(Value::String(_)) => return Err(ErrorKind::IssuerMismatch),
        _ => return Err(ErrorKind::BadDiscovery("has no string issuer")),
    }
    match doc.get("jwks_uri") {
        Some(Value::String(uri)) => {
            check_url(uri).map_err(|_| {
                ErrorKind::BadDiscovery("names a jwks_uri that is not an https:// URL")
            })?;
            Ok(uri.clone())
        }
        _ => Err(ErrorKind::BadDiscovery("has no string jwks_uri")),
    }
}

/// An absolute https:// URL with a host and no user name or password.
fn check_url(url: &str) -> Result<(), ErrorKind> {
    if url.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(ErrorKind::BadUrl(
            "it contains spaces or control characters",
        ));
    }
    if url.contains('#') {
        return Err(ErrorKind::BadUrl("it has a fragment"));
    }
    let uri: Uri = url
        .parse()
        .map_err(|_| ErrorKind::BadUrl("it cannot be parsed"))?;
    match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => {}
        Some(_) => return Err(ErrorKind::NotHttps),
        None => return Err(ErrorKind::BadUrl("it is not absolute")),
    }
    let authority = uri.authority().ok_or(ErrorKind::BadUrl("it has no host"))?;
    if authority.as_str().contains('@') {
        return Err(ErrorKind::BadUrl("it carries a user name or password"));
    }
    if authority.host().is_empty() {
        return Err(ErrorKind::BadUrl("it has no host"));
    }
    Ok(())
}

/// The HTTP client for one fetch. A new one each time: the worker fetches
/// every few minutes at most, so pooled connections would only go stale,
/// and the trust store is read again.
fn agent(policy: &FetchPolicy) -> Result<Agent, ErrorKind> {
    let roots = trusted_roots(policy)?;
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(RootCerts::new_with_certs(&roots))
        // Passed explicitly rather than installed as the process default:
        // the worker must not change what other code in the server gets.
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .build();
    let config = Agent::config_builder()
        .tls_config(tls)
        .https_only(true)
        .proxy(None)
        .http_status_as_error(false)
        .max_redirects(policy.max_redirects)
        .max_redirects_will_error(true)
        .user_agent(policy.user_agent.as_str())
        // Ask for the body as it is: without this, nothing is decoded
        // anyway (no compression feature), and a compressed body would
        // just fail to parse.
        .accept_encoding("identity")
        .max_response_header_size(32 << 10)
        .max_idle_connections(0)
        .build();
    Ok(config.into())
}

/// The certificates to trust: the system's, then the extra bundle's.
fn trusted_roots(policy: &FetchPolicy) -> Result<Vec<Certificate<'static>>, ErrorKind> {
    let mut roots = Vec::new();
    if policy.system_roots {
        // Unreadable files in the store are skipped (`errors`), as OpenSSL
        // does; an empty result is reported below.
        let found = rustls_native_certs::load_native_certs();
        roots.extend(
            found
                .certs
                .iter()
                .map(|c| Certificate::from_der(c.as_ref()).to_owned()),
        );
    }
    if let Some(path) = &policy.extra_ca_file {
        let mut pem = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CA_BUNDLE + 1).read_to_end(&mut pem))
            .map_err(|e| ErrorKind::CaBundle(sanitized(&e.to_string())))?;
        if pem.len() as u64 > MAX_CA_BUNDLE {
            return Err(ErrorKind::CaBundle(format!(
                "larger than {MAX_CA_BUNDLE} bytes"
            )));
        }
        let mut count = 0;
        for item in ureq::tls::parse_pem(&pem) {
            match item {
                Ok(PemItem::Certificate(c)) => {
                    roots.push(c);
                    count += 1;
                }
                Ok(_) => {}
                Err(e) => return Err(ErrorKind::CaBundle(sanitized(&e.to_string()))),
            }
        }
        if count == 0 {
            return Err(ErrorKind::CaBundle("no certificate in it".into()));
        }
    }
    if roots.is_empty() {
        return Err(ErrorKind::NoTrustedRoots);
    }
    Ok(roots)
}

/// GETs `url` and returns its body as text, within the policy's limits.
fn get(
    agent: &Agent,
    url: &str,
    accept: &str,
    policy: &FetchPolicy,
    deadline: Instant,
) -> Result<String, ErrorKind> {
    let timeout = ErrorKind::Timeout {
        limit: policy.timeout,
    };
    let left = deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| timeout.clone())?;
    let response = agent
        .get(url)
        .header(header::ACCEPT, accept)
        .config()
        .timeout_global(Some(left))
        .timeout_connect(Some(policy.connect_timeout.min(left)))
        .build()
        .call()
        .map_err(|e| classify(e, policy))?;
    let status = response.status();
    let redirect = matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
        && response.headers().contains_key(header::LOCATION);
    if redirect {
        // Only reached with max_redirects = 0: ureq hands the redirect back
        // instead of failing, and it is still a redirect not followed.
        return Err(ErrorKind::Redirects {
            limit: policy.max_redirects,
        });
    }
    if status != StatusCode::OK {
        return Err(ErrorKind::Status(status.as_u16()));
    }
    let limit = policy.max_body_bytes;
    let too_large = ErrorKind::TooLarge { limit };
    let declared = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large);
    }
    let mut reader = response.into_body().into_reader();
    // Read in fixed steps into a buffer that never grows past limit + one
    // step, whatever the server sends or claims.
    let mut body = Vec::with_capacity(declared.map_or(8 << 10, |n| n as usize));
    let mut chunk = [0u8; 8 << 10];
    loop {
        if Instant::now() >= deadline {
            return Err(timeout);
        }
        let n = reader
            .read(&mut chunk)
            .map_err(|e| classify(e.into(), policy))?;
        if n == 0 {
            break;
        }
        if body.len() + n > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(body).map_err(|_| ErrorKind::NotUtf8)
}

/// Maps ureq's error to ours, in our own words where the text could carry
/// something the peer sent.
fn classify(e: ureq::Error, policy: &FetchPolicy) -> ErrorKind {
    use ureq::Error as U;
    match e {
        U::Timeout(_) => ErrorKind::Timeout {
            limit: policy.timeout,
        },
        U::TooManyRedirects => ErrorKind::Redirects {
            limit: policy.max_redirects,
        },
        // The first URL is checked before the call, so this is a redirect.
        U::RequireHttpsOnly(_) | U::TlsRequired => ErrorKind::RedirectNotHttps,
        U::RedirectFailed => ErrorKind::Http("a redirect has no usable Location".into()),
        U::BadUri(_) | U::Http(_) => ErrorKind::Http("a redirect names an unusable URL".into()),
        U::HostNotFound => ErrorKind::Connect("host not found".into()),
        U::ConnectionFailed => ErrorKind::Connect("connection failed".into()),
        U::BodyExceedsLimit(_) => ErrorKind::TooLarge {
            limit: policy.max_body_bytes,
        },
        U::LargeResponseHeader(..) => ErrorKind::Http("the headers are too large".into()),
        // Only the variant's name: some carry the peer's bytes (a bad
        // Location header, as sent).
        U::Protocol(p) => {
            let debug = format!("{p:?}");
            let name = debug.split(['(', ' ', '{']).next().unwrap_or("");
            ErrorKind::Http(sanitized(&format!("protocol error {name}")))
        }
        U::Rustls(r) => ErrorKind::Tls(tls_reason(&r)),
        U::Tls(why) => ErrorKind::Tls(why.into()),
        U::Io(io) => io_kind(&io, policy),
        other => ErrorKind::Network(sanitized(&other.to_string())),
    }
}

fn io_kind(io: &std::io::Error, policy: &FetchPolicy) -> ErrorKind {
    use std::io::ErrorKind as K;
    // rustls reports handshake failures as an io::Error wrapping its own.
    if let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        return ErrorKind::Tls(tls_reason(tls));
    }
    match io.kind() {
        K::ConnectionRefused => ErrorKind::Connect("connection refused".into()),
        K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
            ErrorKind::Connect(sanitized(&io.kind().to_string()))
        }
        K::TimedOut | K::WouldBlock => ErrorKind::Timeout {
            limit: policy.timeout,
        },
        // The system resolver's failure arrives as a plain io::Error.
        _ if io.to_string().contains("failed to lookup address") => {
            ErrorKind::Connect("host not found".into())
        }
        K::UnexpectedEof => ErrorKind::Network("the server closed the connection early".into()),
        _ => ErrorKind::Network(sanitized(&io.to_string())),
    }
}

/// The certificate failures an administrator will meet, in plain words;
/// the rest as rustls says them (sanitised: they can quote the peer's
/// certificate names).
fn tls_reason(e: &rustls::Error) -> String {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "the certificate is not signed by a trusted CA".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => {
                "the certificate is not valid for the host name".into()
            }
            C::Expired | C::ExpiredContext { .. } => "the certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "the certificate is not valid yet".into()
            }
            C::Revoked => "the certificate is revoked".into(),
            other => sanitized(&format!("invalid certificate: {other:?}")),
        },
        other => sanitized(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(check_url("https://issuer.example"), Ok(()));
        assert_eq!(check_url("https://issuer.example:8443/realms/a/"), Ok(()));
        assert_eq!(check_url("HTTPS://issuer.example/"), Ok(()));
        assert_eq!(
            check_url("http://issuer.example/"),
            Err(ErrorKind::NotHttps)
        );
        assert_eq!(check_url("ftp://issuer.example/"), Err(ErrorKind::NotHttps));
        for bad in [
            "issuer.example",
            "/jwks",
            "https://",
            "https://u:p@issuer.example/",
            "https://issuer.example/#x",
            "https://issuer.example/a b",
            "https://issuer.example/\n",
            "",
        ] {
            assert!(matches!(check_url(bad), Err(ErrorKind::BadUrl(_))), "{bad}");
        }
    }

    #[test]
    fn discovery_documents() {
        let iss = "https://id.example/realms/a";
        let doc = |body: &str| discovered_jwks_uri(iss, body);
        assert_eq!(
            doc(
                r#"{"issuer":"https://id.example/realms/a","jwks_uri":"https://id.example/certs"}"#
            ),
            Ok("https://id.example/certs".into())
        );
        // Exactly: not with a trailing slash, not in another case.
        for other in [
            "https://id.example/realms/a/",
            "https://ID.example/realms/a",
            "https://evil.example",
        ] {
            let body = format!(r#"{{"issuer":"{other}","jwks_uri":"https://id.example/certs"}}"#);
            assert_eq!(doc(&body), Err(ErrorKind::IssuerMismatch), "{other}");
        }
        let bad = |body: &str| match doc(body) {
            Err(ErrorKind::BadDiscovery(_)) => {}
            other => panic!("{body}: {other:?}"),
        };
        bad("not json");
        bad("[]");
        bad(r#"{"jwks_uri":"https://id.example/certs"}"#);
        bad(r#"{"issuer":1,"jwks_uri":"https://id.example/certs"}"#);
        bad(r#"{"issuer":"https://id.example/realms/a"}"#);
        bad(r#"{"issuer":"https://id.example/realms/a","jwks_uri":7}"#);
        bad(r#"{"issuer":"https://id.example/realms/a","jwks_uri":"http://id.example/certs"}"#);
        // A second "issuer" member must not be read either way.
        bad(
            r#"{"issuer":"https://evil.example","issuer":"https://id.example/realms/a","jwks_uri":"https://id.example/certs"}"#,
        );
    }

    #[test]
    fn published_secrets_are_refused() {
        let secret = r#"{"kty":"oct","kid":"s1","alg":"HS256","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}"#;
        let only_secret = format!(r#"{{"keys":[{secret}]}}"#);
        assert_eq!(
            FetchedJwks::parse("https://x/", &only_secret),
            Err(ErrorKind::NoUsableKey)
        );
    }

    #[test]
    fn empty_and_encryption_only_sets_have_no_usable_key() {
        assert_eq!(
            FetchedJwks::parse("https://x/", r#"{"keys":[]}"#),
            Err(ErrorKind::NoUsableKey)
        );
        let enc = r#"{"keys":[{"kty":"RSA","use":"enc","kid":"e1","n":"AQAB","e":"AQAB"}]}"#;
        assert_eq!(
            FetchedJwks::parse("https://x/", enc),
            Err(ErrorKind::NoUsableKey)
        );
    }
}
