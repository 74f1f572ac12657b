//! Why a fetch failed. Every message is lower case (Postgres style) and
//! never carries a response body: bodies, headers and certificate names are
//! chosen by whoever answers, so only our own words, numbers, and short
//! sanitised reasons from the TLS and socket layers appear.

use std::fmt;
use std::time::Duration;

/// Which document a fetch was getting when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// `<issuer>/.well-known/openid-configuration`.
    Discovery,
    /// The JWK Set itself.
    Jwks,
}

impl fmt::Display for Document {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Document::Discovery => "the OpenID discovery document",
            Document::Jwks => "the JWKS",
        })
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The URL cannot be used (why, in our words).
    BadUrl(&'static str),
    /// The configured URL (or the discovered `jwks_uri`) is not https://.
    NotHttps,
    /// A redirect pointed somewhere that is not https://.
    RedirectNotHttps,
    /// More redirects than the policy allows.
    Redirects { limit: u32 },
    /// No complete answer before the deadline.
    Timeout { limit: Duration },
    /// No connection could be made (DNS, refused, unreachable).
    Connect(String),
    /// The connection broke after it was made.
    Network(String),
    /// The TLS handshake failed, most often the certificate check.
    Tls(String),
    /// The answer is not HTTP we can read.
    Http(String),
    /// The answer's status is not 200.
    Status(u16),
    /// The body is longer than the policy's cap; reading stopped there.
    TooLarge { limit: usize },
    /// The body is not UTF-8.
    NotUtf8,
    /// The discovery document is not usable (why, in our words).
    BadDiscovery(&'static str),
    /// The discovery document's `issuer` is not the configured issuer.
    IssuerMismatch,
    /// The body is not a JWKS with a usable key (the core's reason).
    BadJwks(jwt_rls_core::Error),
    /// The JWKS parses and lists no signature key that can be stored.
    NoUsableKey,
    /// The extra CA bundle cannot be read or holds no certificate.
    CaBundle(String),
    /// Nothing to verify certificates against.
    NoTrustedRoots,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use ErrorKind::*;
        match self {
            BadUrl(why) => write!(f, "the URL is not usable ({why})"),
            NotHttps => f.write_str("the URL is not https://"),
            RedirectNotHttps => f.write_str("a redirect led to a URL that is not https://"),
            Redirects { limit } => write!(f, "more than {limit} redirects"),
            Timeout { limit } => write!(f, "no complete answer within {} ms", limit.as_millis()),
            Connect(why) => write!(f, "cannot connect ({why})"),
            Network(why) => write!(f, "the connection failed ({why})"),
            Tls(why) => write!(f, "TLS failed ({why})"),
            Http(why) => write!(f, "the answer is not usable HTTP ({why})"),
            Status(code) => write!(f, "the server answered HTTP status {code}; only 200 is accepted"),
            TooLarge { limit } => write!(f, "the body is larger than {limit} bytes"),
            NotUtf8 => f.write_str("the body is not UTF-8 text"),
            BadDiscovery(why) => write!(f, "the discovery document {why}"),
            IssuerMismatch => f.write_str(
                "the discovery document names another issuer; it must be the configured issuer exactly",
            ),
            BadJwks(e) => write!(f, "the body is not a usable JWKS ({})", e.message()),
            NoUsableKey => f.write_str("the JWKS lists no signature key that jwt_rls can use"),
            CaBundle(why) => write!(f, "the extra CA bundle cannot be used ({why})"),
            NoTrustedRoots => f.write_str(
                "no trusted root certificate: the system store is empty or off and no CA bundle is configured",
            ),
        }
    }
}

/// A failed fetch: which document, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchError {
    pub document: Document,
    pub kind: ErrorKind,
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not fetch {}: {}", self.document, self.kind)
    }
}

impl std::error::Error for FetchError {}

/// Reduces a library's error text to something safe to log: printable
/// ASCII only, at most `MAX_REASON` characters. The TLS and socket layers
/// can quote what the peer sent (certificate names, header bytes), so
/// their words are never passed on as they are.
pub(crate) fn sanitized(text: &str) -> String {
    const MAX_REASON: usize = 120;
    let mut out: String = text
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(MAX_REASON)
        .collect();
    if text.chars().count() > MAX_REASON {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitized_keeps_ascii_and_cuts() {
        assert_eq!(sanitized("connection refused"), "connection refused");
        assert_eq!(sanitized("a\nb\u{7f}c\u{e9}"), "a?b?c?");
        let long = "x".repeat(500);
        assert_eq!(sanitized(&long), format!("{}...", "x".repeat(120)));
    }

    /// Every message, pinned: the worker shows them to administrators.
    #[test]
    fn messages() {
        use ErrorKind::*;
        let cases: Vec<(ErrorKind, &str)> = vec![
            (BadUrl("it has a query"), "the URL is not usable (it has a query)"),
            (NotHttps, "the URL is not https://"),
            (RedirectNotHttps, "a redirect led to a URL that is not https://"),
            (Redirects { limit: 3 }, "more than 3 redirects"),
            (
                Timeout {
                    limit: Duration::from_millis(1500),
                },
                "no complete answer within 1500 ms",
            ),
            (Connect("connection refused".into()), "cannot connect (connection refused)"),
            (Network("reset".into()), "the connection failed (reset)"),
            (Tls("bad".into()), "TLS failed (bad)"),
            (Http("bad".into()), "the answer is not usable HTTP (bad)"),
            (Status(404), "the server answered HTTP status 404; only 200 is accepted"),
            (TooLarge { limit: 10 }, "the body is larger than 10 bytes"),
            (NotUtf8, "the body is not UTF-8 text"),
            (BadDiscovery("is not a JSON object"), "the discovery document is not a JSON object"),
            (
                IssuerMismatch,
                "the discovery document names another issuer; it must be the configured issuer exactly",
            ),
            (
                BadJwks(jwt_rls_core::KeyError::JwksNoKeys.into()),
                "the body is not a usable JWKS (invalid key: the JWKS has no \"keys\" array)",
            ),
            (NoUsableKey, "the JWKS lists no signature key that jwt_rls can use"),
            (CaBundle("empty".into()), "the extra CA bundle cannot be used (empty)"),
            (
                NoTrustedRoots,
                "no trusted root certificate: the system store is empty or off and no CA bundle is configured",
            ),
        ];
        for (kind, text) in cases {
            assert_eq!(kind.to_string(), text);
        }
        let e = FetchError {
            document: Document::Discovery,
            kind: Status(500),
        };
        assert_eq!(
            e.to_string(),
            "could not fetch the OpenID discovery document: the server answered HTTP status 500; only 200 is accepted"
        );
    }
}
