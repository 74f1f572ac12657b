//! The JOSE header: which algorithm and which key, and nothing else.
//!
//! Members that would let a token choose its own key (`jwk`, `jku`, `x5u`,
//! `x5c`) are never read; members that change how the token must be
//! processed (`crit`, `b64`, `zip`, `enc`) are refused, because a verifier
//! that ignores them may accept a token its issuer meant differently.
//!
//! Uses `error`, `json` and `alg` (the algorithm names, kept in that
//! leaf because error messages need them too).

use jsonwebtoken::Algorithm;
use serde_json::Value;

// The algorithm table moved to the leaf `alg` (error messages name
// algorithms too); re-exported because callers know it by this path.
pub use crate::alg::{algorithm, algorithm_name, ALGORITHMS};
use crate::error::{Error, Part, Result};
use crate::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: Algorithm,
    pub kid: Option<String>,
    /// The `typ` as given (one of the accepted spellings), if any.
    pub typ: Option<String>,
}

impl Header {
    /// Whether `typ` says an OAuth access token (RFC 9068 section 2.1:
    /// `at+jwt`, or its full media type), in any case.
    pub fn is_at_jwt(&self) -> bool {
        self.typ.as_deref().is_some_and(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        })
    }
}

/// The header members read; the last four are refused when present.
const MEMBERS: [&str; 7] = ["alg", "kid", "typ", "crit", "b64", "zip", "enc"];

/// Members that change how a JWS must be processed, refused wherever one
/// is read (tokens here, DPoP proofs in `dpop`): the last four of `MEMBERS`.
pub(crate) const REFUSED_MEMBERS: [&str; 4] = ["crit", "b64", "zip", "enc"];

/// Parses and checks a decoded header.
pub fn parse(bytes: &[u8]) -> Result<Header> {
    let found = json::members(bytes, Part::Header, &MEMBERS, &[])?;
    let get =
        |name: &str| found.values[MEMBERS.iter().position(|m| *m == name).unwrap_or(0)].as_ref();
    for member in &REFUSED_MEMBERS {
        if get(member).is_some() {
            return Err(Error::UnsupportedHeader(member));
        }
    }
    let alg = check_alg(get("alg"))?;
    let kid = match get("kid") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(Error::HeaderType("kid")),
    };
    check_typ(get("typ"))?;
    let typ = get("typ").and_then(Value::as_str).map(str::to_string);
    Ok(Header { alg, kid, typ })
}

/// The `alg` member: a supported algorithm's name; `none` in any case is
/// an unsecured token. Shared with DPoP proofs, which map the errors.
pub(crate) fn check_alg(alg: Option<&Value>) -> Result<Algorithm> {
    let name = match alg {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(Error::HeaderType("alg")),
        None => return Err(Error::UnsupportedAlg(String::new())),
    };
    if name.eq_ignore_ascii_case("none") {
        return Err(Error::UnsecuredToken);
    }
    algorithm(name).ok_or_else(|| Error::UnsupportedAlg(name.to_string()))
}

/// The `typ` member, when present, must name a JWT (RFC 7519 section 5.1,
/// RFC 9068 for at+jwt), case-insensitively. Shared with the JWE header.
pub(crate) fn check_typ(typ: Option<&Value>) -> Result<()> {
    match typ {
        None => Ok(()),
        Some(Value::String(t)) => {
            let ok = ["JWT", "at+jwt", "application/jwt", "application/at+jwt"];
            if ok.iter().any(|o| o.eq_ignore_ascii_case(t)) {
                Ok(())
            } else {
                Err(Error::BadTyp(t.clone()))
            }
        }
        Some(_) => Err(Error::HeaderType("typ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn h(v: Value) -> Result<Header> {
        parse(&serde_json::to_vec(&v).unwrap())
    }

    #[test]
    fn algorithms_are_exact() {
        assert_eq!(h(json!({"alg":"HS256"})).unwrap().alg, Algorithm::HS256);
        for none in ["none", "None", "NONE", "nOnE"] {
            assert_eq!(h(json!({"alg": none})).unwrap_err(), Error::UnsecuredToken);
        }
        assert!(matches!(
            h(json!({"alg":"hs256"})),
            Err(Error::UnsupportedAlg(_))
        ));
        assert!(matches!(
            h(json!({"alg":"ES512"})),
            Err(Error::UnsupportedAlg(_))
        ));
        assert!(matches!(h(json!({})), Err(Error::UnsupportedAlg(_))));
        assert_eq!(
            h(json!({"alg":["HS256"]})).unwrap_err(),
            Error::HeaderType("alg")
        );
        for (name, alg) in ALGORITHMS {
            assert_eq!(algorithm_name(alg), name);
        }
    }

    #[test]
    fn refused_and_typed_members() {
        assert_eq!(
            h(json!({"alg":"HS256","crit":[]})).unwrap_err(),
            Error::UnsupportedHeader("crit")
        );
        assert_eq!(
            h(json!({"alg":"HS256","b64":false})).unwrap_err(),
            Error::UnsupportedHeader("b64")
        );
        assert_eq!(
            h(json!({"alg":"HS256","kid":7})).unwrap_err(),
            Error::HeaderType("kid")
        );
        assert!(matches!(
            h(json!({"alg":"HS256","typ":"JWE"})),
            Err(Error::BadTyp(_))
        ));
        assert!(h(json!({"alg":"HS256","typ":"jwt"})).is_ok());
        assert!(h(json!({"alg":"HS256","typ":"at+jwt","jku":"https://evil","jwk":{}})).is_ok());
    }
}
