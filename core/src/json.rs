//! Strict JSON for token headers and payloads.
//!
//! serde_json alone keeps the last of duplicate member names and accepts
//! "\u0000"; a verifier that did the same could be made to see a different
//! claim than another parser of the same token. So every document is walked
//! once by a checker that rejects duplicates (at any depth), NUL and deep
//! nesting (without recursing beyond `MAX_DEPTH`, so hostile nesting cannot
//! overflow the stack), and that keeps only the top-level members the caller
//! asks for. Verification therefore never builds the whole payload: claims
//! are decoded later, once per token, only if a query reads them.
//!
//! Claims are later read from the payload's own text (`claims::RawClaims`),
//! so numbers of any size come back exactly as signed.
//!
//! Uses `error` only.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, Part, Result};

/// Deepest nesting of objects and arrays accepted (valid tokens use 2-4).
pub const MAX_DEPTH: usize = 32;

/// The top-level members a caller asked for, from a checked object.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Members {
    /// `values[i]` is the member named `wanted[i]`, if present.
    pub values: Vec<Option<Value>>,
    /// The first `required` name that is absent or JSON null.
    pub missing: Option<String>,
}

/// Checks that `bytes` is one strict JSON object and returns the members
/// named in `wanted`, and which of `required` is missing or null.
pub fn members(bytes: &[u8], part: Part, wanted: &[&str], required: &[String]) -> Result<Members> {
    // The first byte decides what the document is, so that a scalar is
    // reported as "not an object" rather than as a JSON error.
    match bytes.iter().find(|b| !b" \t\r\n".contains(b)) {
        Some(b'{') => {}
        Some(b'[' | b'"' | b't' | b'f' | b'n' | b'-' | b'0'..=b'9') => {
            return Err(Error::NotObject(part))
        }
        _ => return Err(Error::Json(part, "syntax error at column 1".into())),
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let top = Top { wanted, required };
    let found = top.deserialize(&mut de).and_then(|m| de.end().map(|()| m));
    let found = found.map_err(|e| classify(e, part))?;
    for v in found.values.iter().flatten() {
        check_value(v, 1, part)?;
    }
    Ok(found)
}

/// Parses a strict JSON object completely (for JWKs and JWKS documents).
pub fn parse_object(bytes: &[u8], part: Part) -> Result<Map<String, Value>> {
    members(bytes, part, &[], &[])?;
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::NotObject(part)),
        Err(e) => Err(classify(e, part)),
    }
}

/// The members extracted as values skipped the checker's NUL and depth
/// rules on the way; apply them. (Duplicates inside such a value are
/// irrelevant: every extracted member must be a string, number or array
/// of strings, and anything else is refused by its caller.)
fn check_value(v: &Value, depth: usize, part: Part) -> Result<()> {
    if depth > MAX_DEPTH {
        return Err(Error::TooDeep(part));
    }
    match v {
        Value::String(s) if s.contains('\0') => Err(Error::NulCharacter(part)),
        Value::Array(items) => items
            .iter()
            .try_for_each(|i| check_value(i, depth + 1, part)),
        Value::Object(m) => m.iter().try_for_each(|(k, i)| {
            if k.contains('\0') {
                Err(Error::NulCharacter(part))
            } else {
                check_value(i, depth + 1, part)
            }
        }),
        _ => Ok(()),
    }
}

// The checker reports its findings through serde's custom errors; these
// markers turn them back into our variants without echoing any input.
const DUPLICATE: &str = "jwt_rls:duplicate";
const NUL: &str = "jwt_rls:nul";
const DEEP: &str = "jwt_rls:deep";

fn classify(e: serde_json::Error, part: Part) -> Error {
    let text = e.to_string();
    if text.starts_with(DUPLICATE) {
        Error::DuplicateKey(part)
    } else if text.starts_with(NUL) {
        Error::NulCharacter(part)
    } else if text.starts_with(DEEP) || text.starts_with("recursion limit exceeded") {
        Error::TooDeep(part)
    } else {
        // Only the category and position: serde messages can quote input.
        let kind = match e.classify() {
            serde_json::error::Category::Io => "i/o",
            serde_json::error::Category::Syntax => "syntax",
            serde_json::error::Category::Data => "data",
            serde_json::error::Category::Eof => "unexpected end",
        };
        Error::Json(part, format!("{kind} error at column {}", e.column()))
    }
}

fn no_nul<E: serde::de::Error>(s: &str) -> std::result::Result<(), E> {
    if s.contains('\0') {
        Err(E::custom(NUL))
    } else {
        Ok(())
    }
}

/// Member names seen in one object. Most objects are small: a linear scan
/// over borrowed names is cheapest; large ones switch to a hash set so a
/// hostile object with thousands of members stays linear.
#[derive(Default)]
struct Names<'de> {
    /// The first names, on the stack: no allocation for small objects.
    few: [Option<Cow<'de, str>>; FEW],
    count: usize,
    many: HashSet<Cow<'de, str>>,
}

const FEW: usize = 16;

impl<'de> Names<'de> {
    fn insert<E: serde::de::Error>(&mut self, name: Cow<'de, str>) -> std::result::Result<(), E> {
        let fresh = if self.count < FEW {
            if self.few[..self.count]
                .iter()
                .flatten()
                .any(|seen| *seen == name)
            {
                false
            } else {
                self.few[self.count] = Some(name);
                self.count += 1;
                true
            }
        } else {
            if self.many.is_empty() {
                self.many
                    .extend(self.few.iter_mut().filter_map(Option::take));
            }
            self.many.insert(name)
        };
        if fresh {
            Ok(())
        } else {
            Err(E::custom(DUPLICATE))
        }
    }
}

/// A member name, borrowed from the input when it has no escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }
    fn visit_borrowed_str<E: serde::de::Error>(
        self,
        v: &'de str,
    ) -> std::result::Result<Self::Value, E> {
        no_nul(v)?;
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Self::Value, E> {
        no_nul(v)?;
        Ok(Cow::Owned(v.to_owned()))
    }
}

/// The top-level object: extracts `wanted` members, checks the rest.
struct Top<'a> {
    wanted: &'a [&'a str],
    required: &'a [String],
}

impl<'de> DeserializeSeed<'de> for Top<'_> {
    type Value = Members;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<Members, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Top<'_> {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Members, A::Error> {
        let mut names = Names::default();
        let mut values = vec![None; self.wanted.len()];
        let mut present = vec![false; self.required.len()];
        while let Some(name) = map.next_key_seed(Name)? {
            let wanted = self.wanted.iter().position(|w| *w == name);
            let required = self.required.iter().position(|r| *r == name);
            names.insert(name)?;
            match wanted {
                Some(i) => {
                    let v: Value = map.next_value()?;
                    if let Some(r) = required {
                        present[r] = !v.is_null();
                    }
                    values[i] = Some(v);
                }
                None => {
                    let is_null = map.next_value_seed(Check { depth: 1 })?;
                    if let Some(r) = required {
                        present[r] = !is_null;
                    }
                }
            }
        }
        let missing = present
            .iter()
            .position(|p| !p)
            .map(|i| self.required[i].clone());
        Ok(Members { values, missing })
    }
}

/// Walks a value without building it; answers whether it was null.
struct Check {
    depth: usize,
}

impl Check {
    fn nested<E: serde::de::Error>(&self) -> std::result::Result<usize, E> {
        if self.depth >= MAX_DEPTH {
            Err(E::custom(DEEP))
        } else {
            Ok(self.depth + 1)
        }
    }
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E>(self) -> std::result::Result<bool, E> {
        Ok(true)
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<bool, E> {
        no_nul(s).map(|()| false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<bool, A::Error> {
        let depth = self.nested()?;
        while seq.next_element_seed(Check { depth })?.is_some() {}
        Ok(false)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<bool, A::Error> {
        let depth = self.nested()?;
        let mut names = Names::default();
        while let Some(name) = map.next_key_seed(Name)? {
            names.insert(name)?;
            map.next_value_seed(Check { depth })?;
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(json: &str) -> Error {
        parse_object(json.as_bytes(), Part::Payload).unwrap_err()
    }

    #[test]
    fn objects_only() {
        assert!(parse_object(br#"{"a":1}"#, Part::Payload).is_ok());
        assert!(parse_object(b" \r\n{}", Part::Payload).is_ok());
        for j in [
            "[]",
            "\"s\"",
            "1",
            "-1",
            "null",
            "true",
            " 12345678901234567890123",
        ] {
            assert_eq!(err(j), Error::NotObject(Part::Payload), "{j}");
        }
        for j in ["{", r#"{"a":1} x"#, r#"{"a":1,}"#, "", "x", "{'a':1}"] {
            assert!(matches!(err(j), Error::Json(..)), "{j}");
        }
    }

    #[test]
    fn duplicates_nul_and_depth() {
        assert_eq!(err(r#"{"a":1,"a":2}"#), Error::DuplicateKey(Part::Payload));
        assert_eq!(
            err(r#"{"a":1,"\u0061":2}"#),
            Error::DuplicateKey(Part::Payload)
        );
        assert_eq!(
            err(r#"{"o":{"b":1,"b":1}}"#),
            Error::DuplicateKey(Part::Payload)
        );
        let many: Vec<String> = (0..100).map(|i| format!("\"k{i}\":{i}")).collect();
        assert!(parse_object(format!("{{{}}}", many.join(",")).as_bytes(), Part::Payload).is_ok());
        assert_eq!(
            err(&format!("{{{},\"k50\":0}}", many.join(","))),
            Error::DuplicateKey(Part::Payload)
        );
        assert_eq!(
            err(r#"{"a":"x\u0000"}"#),
            Error::NulCharacter(Part::Payload)
        );
        assert_eq!(err(r#"{"a\u0000":1}"#), Error::NulCharacter(Part::Payload));
        assert!(matches!(err(r#"{"a":"\ud800"}"#), Error::Json(..)));
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(err(&deep), Error::TooDeep(Part::Payload));
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(20), "]".repeat(20));
        assert!(parse_object(ok.as_bytes(), Part::Payload).is_ok());
        assert!(matches!(
            parse_object(b"{\"a\":\"\xff\"}", Part::Payload),
            Err(Error::Json(..))
        ));
    }

    #[test]
    fn wanted_members_are_checked_too() {
        let m = members(
            br#"{"aud":["x","y"],"exp":1,"z":null}"#,
            Part::Payload,
            &["exp", "aud"],
            &[],
        )
        .unwrap();
        assert_eq!(
            m.values,
            vec![
                Some(serde_json::json!(1)),
                Some(serde_json::json!(["x", "y"]))
            ]
        );
        let nul = members(br#"{"aud":["x\u0000"]}"#, Part::Payload, &["aud"], &[]);
        assert_eq!(nul.unwrap_err(), Error::NulCharacter(Part::Payload));
        let deep = format!("{{\"aud\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            members(deep.as_bytes(), Part::Payload, &["aud"], &[]).unwrap_err(),
            Error::TooDeep(Part::Payload)
        );
        let dup = members(br#"{"exp":1,"exp":2}"#, Part::Payload, &["exp"], &[]);
        assert_eq!(dup.unwrap_err(), Error::DuplicateKey(Part::Payload));
    }

    #[test]
    fn required_members() {
        let req = vec!["t".to_string(), "u".to_string()];
        let m = members(br#"{"t":1,"u":2}"#, Part::Payload, &[], &req).unwrap();
        assert_eq!(m.missing, None);
        let m = members(br#"{"t":1,"u":null}"#, Part::Payload, &[], &req).unwrap();
        assert_eq!(m.missing.as_deref(), Some("u"));
        let m = members(br#"{"u":{}}"#, Part::Payload, &["u"], &req).unwrap();
        assert_eq!(m.missing.as_deref(), Some("t"));
    }

    #[test]
    fn number_sizes() {
        // Integers beyond u64 pass (claims are read from the text later)...
        assert!(members(
            br#"{"big":184467440737095516160123}"#,
            Part::Payload,
            &[],
            &[]
        )
        .is_ok());
        // ...but a number no double can hold is not JSON serde_json accepts.
        let huge = members(br#"{"f":1e400}"#, Part::Payload, &[], &[]);
        assert!(matches!(huge, Err(Error::Json(..))), "{huge:?}");
    }
}
