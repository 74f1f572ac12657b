//! Claim validation (the policy an admin sets) and claim access.
//!
//! Stricter than jsonwebtoken's `Validation`: registered claims must have
//! their RFC 7519 JSON types (a numeric `iss` or an `aud` array holding a
//! number is refused, not skipped), `exp` is required, `nbf` and `iat` are
//! always checked, and `exp == now` is already expired.
//!
//! Uses `error`, `json` and `fingerprint` (for `Policy::fingerprint`).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::{Error, Part, Result};
use crate::json::{self, Members};

/// The registered claims validation reads, in the order of `Members`.
const REGISTERED: [&str; 7] = ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"];

/// Latest NumericDate accepted: 9999-12-31T23:59:59Z.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

/// What a token's claims must satisfy. Built from the extension's settings
/// (and copied into shared memory for the OAuth login, `login::Snapshot`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Policy {
    /// Accepted `iss` values; empty means any string (or none).
    pub issuers: Vec<String>,
    /// Accepted audiences. When empty, a token that carries `aud` is
    /// refused (RFC 7519 §4.1.3: a recipient that does not identify itself
    /// with a value in `aud` must reject the token) unless `any_audience`.
    pub audiences: Vec<String>,
    /// With no accepted audience configured, accept tokens whatever their
    /// `aud` (an explicit opt-out; `aud` is still type-checked).
    pub any_audience: bool,
    /// Clock skew allowed on exp, nbf and iat, in seconds.
    pub leeway: i64,
    /// Longest allowed exp - iat in seconds; 0 turns the check off.
    pub max_lifetime: i64,
    /// Claims that must be present and not null (exp always is).
    pub required: Vec<String>,
    /// Largest token accepted, in bytes, checked before any decoding.
    pub max_bytes: usize,
    /// Accept only OAuth access tokens: header `typ` `at+jwt` (RFC 9068),
    /// which refuses ID tokens and other JWTs presented as access tokens.
    pub require_at_jwt: bool,
}

impl Policy {
    /// Identifies the policy exactly: a verification shared by another
    /// backend is used only under the same policy (settings can differ per
    /// database and role).
    pub fn fingerprint(&self) -> crate::fingerprint::Fingerprint {
        crate::fingerprint::fingerprint(&[format!("{self:?}").as_bytes()])
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            issuers: vec![],
            audiences: vec![],
            any_audience: false,
            leeway: 10,
            max_lifetime: 0,
            required: vec![],
            max_bytes: 16 * 1024,
            require_at_jwt: false,
        }
    }
}

/// The time claims of a verified token, kept to re-check them at every read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Times {
    pub exp: i64,
    pub nbf: Option<i64>,
    pub iat: Option<i64>,
}

impl Times {
    /// exp, nbf and iat against `now` (Unix seconds) with `leeway`.
    pub fn check(&self, now: i64, leeway: i64) -> Result<()> {
        if now >= self.exp.saturating_add(leeway) {
            return Err(Error::Expired { exp: self.exp, now });
        }
        if let Some(nbf) = self.nbf {
            if now.saturating_add(leeway) < nbf {
                return Err(Error::NotYetValid { nbf, now });
            }
        }
        if let Some(iat) = self.iat {
            if iat > now.saturating_add(leeway) {
                return Err(Error::IssuedInFuture { iat, now });
            }
        }
        Ok(())
    }
}

fn wrong_type(claim: &str, expected: &'static str) -> Error {
    Error::ClaimType {
        claim: claim.to_string(),
        expected,
    }
}

/// A NumericDate: an integer number of seconds in [0, MAX_NUMERIC_DATE].
/// Floats, exponents, strings and booleans are refused rather than rounded.
fn numeric_date(value: Option<&Value>, name: &str) -> Result<Option<i64>> {
    match value {
        None => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            // Only JSON integers are i64: "1e3", "1000.0" and anything
            // beyond i64 parse as floats (or u64) and are refused.
            Some(t) if (0..=MAX_NUMERIC_DATE).contains(&t) => Ok(Some(t)),
            _ => Err(wrong_type(name, "an integer NumericDate")),
        },
        Some(_) => Err(wrong_type(name, "an integer NumericDate")),
    }
}

fn optional_string<'a>(value: Option<&'a Value>, name: &str) -> Result<Option<&'a str>> {
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong_type(name, "a string")),
    }
}

/// `aud` as a list: a string, or a non-empty array made only of strings.
fn audiences(value: Option<&Value>) -> Result<Option<Vec<&str>>> {
    const EXPECTED: &str = "a string or an array of strings";
    match value {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(vec![s.as_str()])),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| wrong_type("aud", EXPECTED)))
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(wrong_type("aud", EXPECTED)),
    }
}

/// Checks a decoded payload strictly (see `json`) and validates its claims
/// against the policy at `now`; returns the time claims.
pub fn validate(payload: &[u8], policy: &Policy, now: i64) -> Result<Times> {
    let found = json::members(payload, Part::Payload, &REGISTERED, &policy.required)?;
    validate_members(&found, policy, now)
}

fn validate_members(found: &Members, policy: &Policy, now: i64) -> Result<Times> {
    let get =
        |name: &str| found.values[REGISTERED.iter().position(|r| *r == name).unwrap_or(0)].as_ref();
    let exp = numeric_date(get("exp"), "exp")?.ok_or_else(|| Error::MissingClaim("exp".into()))?;
    let times = Times {
        exp,
        nbf: numeric_date(get("nbf"), "nbf")?,
        iat: numeric_date(get("iat"), "iat")?,
    };
    let iss = optional_string(get("iss"), "iss")?;
    optional_string(get("sub"), "sub")?;
    optional_string(get("jti"), "jti")?;
    let aud = audiences(get("aud"))?;
    if let Some(name) = &found.missing {
        return Err(Error::MissingClaim(name.clone()));
    }
    times.check(now, policy.leeway)?;
    if policy.max_lifetime > 0 {
        let iat = times.iat.ok_or_else(|| Error::MissingClaim("iat".into()))?;
        let lifetime = exp - iat;
        if lifetime > policy.max_lifetime {
            return Err(Error::LifetimeTooLong {
                lifetime,
                max: policy.max_lifetime,
            });
        }
    }
    if !policy.issuers.is_empty() {
        let iss = iss.ok_or_else(|| Error::MissingClaim("iss".into()))?;
        if !policy.issuers.iter().any(|i| i == iss) {
            return Err(Error::Issuer);
        }
    }
    if !policy.audiences.is_empty() {
        let aud = aud.ok_or_else(|| Error::MissingClaim("aud".into()))?;
        if !aud.iter().any(|a| policy.audiences.iter().any(|p| p == a)) {
            return Err(Error::Audience);
        }
    } else if aud.is_some() && !policy.any_audience {
        return Err(Error::UnexpectedAudience);
    }
    Ok(times)
}

/// A decoded object: where each top-level member's name and JSON text lie
/// in the document, so that a claim is read from the payload's own text
/// (numbers of any size and precision come back exactly as signed). One
/// allocation for the whole payload: a bind that builds it (a token found
/// in the shared cache) and the eviction that drops it cost little, where
/// a map of owned names and values cost two allocations per claim.
#[derive(Debug, Default)]
pub struct RawClaims {
    members: Vec<(Name, Range<usize>)>,
    /// The length of the document parsed: `get` answers nothing for
    /// another one, rather than slicing it where this one's members lie.
    len: usize,
}

/// A member's name: its place in the document, or, when written with
/// escapes, the name they spell.
#[derive(Debug)]
enum Name {
    At(Range<usize>),
    Unescaped(Box<str>),
}

impl RawClaims {
    /// Decodes `doc`, a JSON object that passed the strict checks (no
    /// duplicate names), into members; an empty set if it is not one.
    pub fn parse(doc: &str) -> RawClaims {
        let within = |s: &str| {
            let at = s.as_ptr() as usize - doc.as_ptr() as usize;
            at..at + s.len()
        };
        let members = serde_json::from_str::<Object>(doc)
            .map(|object| {
                object
                    .0
                    .into_iter()
                    .map(|(key, value)| {
                        let name = match key.0 {
                            Cow::Borrowed(name) => Name::At(within(name)),
                            Cow::Owned(name) => Name::Unescaped(name.into()),
                        };
                        (name, within(value.get()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        RawClaims {
            members,
            len: doc.len(),
        }
    }

    /// The JSON text of the member `name` of `doc`, which must be the
    /// document parsed (None for any other).
    pub fn get<'d>(&self, doc: &'d str, name: &str) -> Option<&'d str> {
        if doc.len() != self.len {
            return None;
        }
        self.members.iter().find_map(|(n, value)| {
            let this = match n {
                Name::At(at) => doc.get(at.clone())?,
                Name::Unescaped(s) => s,
            };
            (this == name).then(|| doc.get(value.clone())).flatten()
        })
    }
}

/// An object's members in order, names and values borrowed from the
/// document.
struct Object<'a>(Vec<(Key<'a>, &'a RawValue)>);

impl<'de> Deserialize<'de> for Object<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = Object<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<Object<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Object(members))
            }
        }
        d.deserialize_map(ObjectVisitor)
    }
}

/// A member name, borrowed from the document unless written with escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a member name")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> std::result::Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(s.to_owned())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

/// A claim of `payload` (decoded as `claims`) as SQL text. The top-level
/// member of exactly that name comes first (names such as
/// "https://example.com/roles" contain dots); then `name` is a dotted path
/// through objects and array indexes ("org.id", "roles.0"). Strings come
/// unquoted, numbers, booleans, objects and arrays as their JSON text as
/// signed; JSON null and the empty string are absent, so that a policy
/// comparing against them fails closed.
pub fn claim_text(claims: &RawClaims, payload: &str, name: &str) -> Option<String> {
    if let Some(v) = claims.get(payload, name) {
        return text(v);
    }
    let mut parts = name.split('.');
    let mut current = claims.get(payload, parts.next()?)?;
    for part in parts {
        current = match current.as_bytes().first() {
            Some(b'{') => RawClaims::parse(current).get(current, part)?,
            Some(b'[') => {
                let items = serde_json::from_str::<Vec<&RawValue>>(current).ok()?;
                let i = part.parse::<usize>().ok().filter(|i| *i < items.len())?;
                items[i].get()
            }
            _ => return None,
        };
    }
    text(current)
}

fn text(json: &str) -> Option<String> {
    match json.as_bytes().first() {
        Some(b'"') => serde_json::from_str::<String>(json)
            .ok()
            .filter(|s| !s.is_empty()),
        Some(b'n') | None => None,
        Some(_) => Some(json.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    fn policy() -> Policy {
        Policy {
            issuers: vec!["https://issuer.example".into()],
            audiences: vec!["api".into()],
            leeway: 0,
            ..Policy::default()
        }
    }

    fn check(v: Value) -> Result<Times> {
        validate(&serde_json::to_vec(&v).unwrap(), &policy(), NOW)
    }

    fn with_policy(v: Value, p: &Policy) -> Result<Times> {
        validate(&serde_json::to_vec(&v).unwrap(), p, NOW)
    }

    fn base() -> Value {
        json!({"iss":"https://issuer.example","aud":"api","exp": NOW + 60})
    }

    fn with(key: &str, value: Value) -> Value {
        let mut b = base();
        b[key] = value;
        b
    }

    #[test]
    fn exp_is_strict() {
        assert!(check(base()).is_ok());
        assert!(matches!(
            check(with("exp", json!(NOW))),
            Err(Error::Expired { .. })
        ));
        let mut no_exp = base();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            check(no_exp).unwrap_err(),
            Error::MissingClaim("exp".into())
        );
        for bad in [
            json!("4102444800"),
            json!(4102444800.0),
            json!(-1),
            json!(1e19),
            json!(true),
            json!(null),
        ] {
            assert!(
                matches!(
                    check(with("exp", bad.clone())),
                    Err(Error::ClaimType { .. })
                ),
                "{bad}"
            );
        }
        let base = r#"{"iss":"https://issuer.example","aud":"api","exp":"#;
        for literal in [
            "1e10",
            "2000000000.0",
            "2.0e9",
            "-0",
            "99999999999999999999",
        ] {
            let raw = format!("{base}{literal}}}");
            let got = validate(raw.as_bytes(), &policy(), NOW);
            assert!(
                matches!(
                    got,
                    Err(Error::ClaimType { .. }) | Err(Error::Expired { .. })
                ),
                "{literal}: {got:?}"
            );
        }
        let leeway = Policy {
            leeway: 30,
            ..policy()
        };
        assert!(with_policy(with("exp", json!(NOW - 29)), &leeway).is_ok());
        assert!(with_policy(with("exp", json!(NOW - 30)), &leeway).is_err());
    }

    #[test]
    fn nbf_iat_and_lifetime() {
        assert!(matches!(
            check(with("nbf", json!(NOW + 1))),
            Err(Error::NotYetValid { .. })
        ));
        assert!(check(with("nbf", json!(NOW))).is_ok());
        assert!(matches!(
            check(with("iat", json!(NOW + 1))),
            Err(Error::IssuedInFuture { .. })
        ));
        let short = Policy {
            max_lifetime: 3600,
            ..policy()
        };
        assert_eq!(
            with_policy(base(), &short).unwrap_err(),
            Error::MissingClaim("iat".into())
        );
        assert!(with_policy(with("iat", json!(NOW - 10)), &short).is_ok());
        assert!(matches!(
            with_policy(with("iat", json!(NOW - 7200)), &short),
            Err(Error::LifetimeTooLong { .. })
        ));
    }

    #[test]
    fn aud_without_configured_audience_is_refused_unless_opted_out() {
        let strict = Policy {
            audiences: vec![],
            ..policy()
        };
        // RFC 7519 §4.1.3: a token for some audience is not for us.
        for aud in [json!("api"), json!(["api", "other"])] {
            assert_eq!(
                with_policy(with("aud", aud.clone()), &strict).unwrap_err(),
                Error::UnexpectedAudience
            );
            let lenient = Policy {
                any_audience: true,
                ..strict.clone()
            };
            assert!(with_policy(with("aud", aud), &lenient).is_ok());
        }
        // No aud at all is fine either way.
        let mut no_aud = base();
        no_aud.as_object_mut().unwrap().remove("aud");
        assert!(with_policy(no_aud, &strict).is_ok());
        // The opt-out still type-checks aud.
        let lenient = Policy {
            any_audience: true,
            ..strict
        };
        assert!(matches!(
            with_policy(with("aud", json!(7)), &lenient),
            Err(Error::ClaimType { .. })
        ));
    }

    #[test]
    fn registered_claims_have_types() {
        assert!(matches!(
            check(with("iss", json!(1))),
            Err(Error::ClaimType { .. })
        ));
        assert!(matches!(
            check(with("sub", json!({"id":1}))),
            Err(Error::ClaimType { .. })
        ));
        assert!(matches!(
            check(with("aud", json!(["api", 1]))),
            Err(Error::ClaimType { .. })
        ));
        assert!(matches!(
            check(with("aud", json!([]))),
            Err(Error::ClaimType { .. })
        ));
        assert!(check(with("aud", json!(["other", "api"]))).is_ok());
        assert_eq!(
            check(with("aud", json!("other"))).unwrap_err(),
            Error::Audience
        );
        assert_eq!(
            check(with("iss", json!("https://issuer.example/"))).unwrap_err(),
            Error::Issuer
        );
        let required = Policy {
            required: vec!["tenant_id".into()],
            ..policy()
        };
        assert!(with_policy(with("tenant_id", json!(null)), &required).is_err());
        assert!(with_policy(with("tenant_id", json!("t1")), &required).is_ok());
    }

    #[test]
    fn claims_as_text() {
        let payload = r#"{"org":{"id":"o1","roles":["a","b"]},"https://x.example/t":"t","e":"","n":null,
            "big":123456789012345678901234567890,"f":1.50,"esc":"caf\u00e9","obj":{ "k" : [1, 2] }}"#;
        let c = RawClaims::parse(payload);
        let t = |name: &str| claim_text(&c, payload, name);
        assert_eq!(t("org.id").as_deref(), Some("o1"));
        assert_eq!(t("org.roles.1").as_deref(), Some("b"));
        assert_eq!(t("org.roles.2"), None);
        assert_eq!(t("org.roles").as_deref(), Some(r#"["a","b"]"#));
        assert_eq!(t("https://x.example/t").as_deref(), Some("t"));
        assert_eq!(t("e"), None);
        assert_eq!(t("n"), None);
        assert_eq!(t("missing"), None);
        assert_eq!(t("org.id.x"), None);
        assert_eq!(t("big").as_deref(), Some("123456789012345678901234567890"));
        assert_eq!(t("f").as_deref(), Some("1.50"));
        assert_eq!(t("esc").as_deref(), Some("café"));
        assert_eq!(t("obj").as_deref(), Some(r#"{ "k" : [1, 2] }"#));
        assert_eq!(t("obj.k.0").as_deref(), Some("1"));
    }

    #[test]
    fn claim_names_written_with_escapes_are_found_by_the_names_they_spell() {
        let payload = r#"{"t\u0065nant":"t1","o":{"\u0069d":"o1"},"a\"b":1}"#;
        let c = RawClaims::parse(payload);
        let t = |name: &str| claim_text(&c, payload, name);
        assert_eq!(t("tenant").as_deref(), Some("t1"));
        assert_eq!(t("o.id").as_deref(), Some("o1"));
        assert_eq!(t("a\"b").as_deref(), Some("1"));
        assert_eq!(t("t\\u0065nant"), None);
        assert_eq!(claim_text(&RawClaims::parse("[1]"), "[1]", "0"), None);
    }

    #[test]
    fn claims_answer_only_for_the_document_they_were_decoded_from() {
        let payload = r#"{"sub":"u1","tenant_id":"t1"}"#;
        let c = RawClaims::parse(payload);
        assert_eq!(c.get(payload, "tenant_id"), Some(r#""t1""#));
        assert_eq!(c.get(r#"{"sub":"u1"}"#, "sub"), None);
        // Same length, but "sub"'s place cuts a character in two: no panic.
        let cut = r#"{"xxé":"u","tenant_id":"t1"}"#;
        assert_eq!((cut.len(), c.get(cut, "sub")), (payload.len(), None));
    }
}
