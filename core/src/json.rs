//! Strict JSON for token headers and payloads.
//!
//! serde_json alone keeps the last of duplicate member names and accepts
//! "\u0000"; a verifier that did the same could be made to see a different
//! claim than another parser of the same token. So a first pass walks the
//! document and rejects duplicates, NUL and deep nesting (without recursion
//! beyond `MAX_DEPTH`, so hostile nesting cannot overflow the stack), and a
//! second pass builds the value. Numbers keep their exact text
//! (`arbitrary_precision`), so an integer above 2^64 reads back unchanged.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::error::{Error, Part, Result};

/// Deepest nesting of objects and arrays accepted (valid tokens use 2-4).
pub const MAX_DEPTH: usize = 32;

/// Parses a JSON object strictly; anything else is an error about `part`.
pub fn parse_object(bytes: &[u8], part: Part) -> Result<Map<String, Value>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let checked = Check { depth: 0 }.deserialize(&mut de).and_then(|()| de.end());
    if let Err(e) = checked {
        return Err(classify(e, part));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::NotObject(part)),
        Err(e) => Err(classify(e, part)),
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

/// Walks a value without building it.
struct Check {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn no_nul<E: serde::de::Error>(s: &str) -> std::result::Result<(), E> {
    if s.contains('\0') {
        Err(E::custom(NUL))
    } else {
        Ok(())
    }
}

impl Check {
    fn nested<E: serde::de::Error>(&self) -> std::result::Result<Check, E> {
        if self.depth >= MAX_DEPTH {
            Err(E::custom(DEEP))
        } else {
            Ok(Check { depth: self.depth + 1 })
        }
    }
}

/// A member name: checked for NUL and kept for the duplicate test.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<String, D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        no_nul(&s)?;
        Ok(s)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> std::result::Result<(), E> {
        Ok(())
    }
    fn visit_str<E: serde::de::Error>(self, s: &str) -> std::result::Result<(), E> {
        no_nul(s)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        let inner = self.nested()?;
        while seq.next_element_seed(Check { depth: inner.depth })?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        // With arbitrary_precision, serde_json hands numbers over as a
        // one-member map; the extra level is harmless for the depth count.
        let inner = self.nested()?;
        let mut seen = HashSet::new();
        while let Some(name) = map.next_key_seed(Name)? {
            if !seen.insert(name) {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
            map.next_value_seed(Check { depth: inner.depth })?;
        }
        Ok(())
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
        for j in ["[]", "\"s\"", "1", "null", "true"] {
            assert_eq!(err(j), Error::NotObject(Part::Payload), "{j}");
        }
        assert!(matches!(err("{"), Error::Json(..)));
        assert!(matches!(err(r#"{"a":1} x"#), Error::Json(..)));
        assert!(matches!(err(r#"{"a":1,}"#), Error::Json(..)));
    }

    #[test]
    fn duplicates_nul_and_depth() {
        assert_eq!(err(r#"{"a":1,"a":2}"#), Error::DuplicateKey(Part::Payload));
        assert_eq!(err(r#"{"o":{"b":1,"b":1}}"#), Error::DuplicateKey(Part::Payload));
        assert_eq!(err(r#"{"a":"x\u0000"}"#), Error::NulCharacter(Part::Payload));
        assert_eq!(err(r#"{"a\u0000":1}"#), Error::NulCharacter(Part::Payload));
        assert!(matches!(err(r#"{"a":"\ud800"}"#), Error::Json(..)));
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(err(&deep), Error::TooDeep(Part::Payload));
        let ok = format!("{{\"a\":{}1{}}}", "[".repeat(20), "]".repeat(20));
        assert!(parse_object(ok.as_bytes(), Part::Payload).is_ok());
        assert!(matches!(parse_object(b"{\"a\":\"\xff\"}", Part::Payload), Err(Error::Json(..))));
    }

    #[test]
    fn numbers_stay_exact() {
        let m = parse_object(br#"{"big":184467440737095516160}"#, Part::Payload).unwrap();
        assert_eq!(m["big"].to_string(), "184467440737095516160");
    }
}
