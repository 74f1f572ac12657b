//! The whole verification of one token, in the order that parses the least
//! before the signature is known to be good: size and alphabet, header,
//! key selection, signature, and only then the payload and its claims.

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::claims::{validate, Policy, Times};
use crate::compact::{decode, split};
use crate::error::{Error, Part, Result};
use crate::header::{self, algorithm_name};
use crate::json::parse_object;
use crate::keys::KeySet;

/// A token whose signature and claims were checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The payload as decoded JSON, for claim look-ups.
    pub claims: Map<String, Value>,
    /// The payload exactly as signed, for `jsonb` output with exact numbers.
    pub payload: String,
    pub times: Times,
    pub kid: String,
    pub alg: Algorithm,
}

impl Verified {
    /// Rough heap footprint, for the cache's byte bound.
    pub fn approx_bytes(&self) -> usize {
        // The decoded map costs a few times its JSON text.
        std::mem::size_of::<Self>() + self.payload.len() * 4 + self.kid.len()
    }
}

/// Verifies `token` with `keys` under `policy` at `now` (Unix seconds).
pub fn verify(token: &str, keys: &KeySet, policy: &Policy, now: i64) -> Result<Verified> {
    let seg = split(token, policy.max_bytes)?;
    let header_bytes = decode(seg.header, Part::Header)?;
    let header = header::parse(&parse_object(&header_bytes, Part::Header)?)?;
    let payload_bytes = decode(seg.payload, Part::Payload)?;
    let signature = decode(seg.signature, Part::Signature)?;

    let key = keys.select(header.kid.as_deref(), now)?;
    if key.alg != header.alg {
        return Err(Error::AlgMismatch {
            kid: key.kid.clone(),
            key_alg: algorithm_name(key.alg),
            token_alg: algorithm_name(header.alg),
        });
    }
    if !key.verify(seg.signing_input.as_bytes(), &signature) {
        return Err(Error::BadSignature);
    }

    let claims = parse_object(&payload_bytes, Part::Payload)?;
    let times = validate(&claims, policy, now)?;
    // parse_object accepted the bytes, so they are UTF-8.
    let payload = String::from_utf8(payload_bytes).map_err(|_| Error::Json(Part::Payload, "not UTF-8".into()))?;
    Ok(Verified { claims, payload, times, kid: key.kid.clone(), alg: key.alg })
}
