//! The whole verification of one token, in the order that parses the least
//! before the signature is known to be good: size and alphabet, header,
//! key selection, signature, and only then the payload and its claims.

use std::sync::OnceLock;

use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::claims::{validate, Policy, Times};
use crate::compact::{decode, split};
use crate::error::{Error, Part, Result};
use crate::header::{self, algorithm_name};
use crate::keys::KeySet;

/// A token whose signature and claims were checked.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The payload exactly as signed (strict JSON, UTF-8), for `jsonb`
    /// output with exact numbers.
    pub payload: String,
    pub times: Times,
    pub kid: String,
    pub alg: Algorithm,
    /// The payload decoded, built on first use: verification itself only
    /// reads the registered claims.
    claims: OnceLock<Map<String, Value>>,
}

impl Verified {
    pub fn new(payload: String, times: Times, kid: String, alg: Algorithm) -> Verified {
        Verified { payload, times, kid, alg, claims: OnceLock::new() }
    }

    /// All claims, decoded once per token.
    pub fn claims(&self) -> &Map<String, Value> {
        self.claims.get_or_init(|| serde_json::from_str(&self.payload).unwrap_or_default())
    }

    /// Rough heap footprint, for the cache's byte bound: the text, and the
    /// decoded map, which costs a few times its text once built.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.payload.len() * 4 + self.kid.len()
    }
}

/// Verifies `token` with `keys` under `policy` at `now` (Unix seconds).
pub fn verify(token: &str, keys: &KeySet, policy: &Policy, now: i64) -> Result<Verified> {
    let seg = split(token, policy.max_bytes)?;
    let header = header::parse(&decode(seg.header, Part::Header)?)?;
    let payload = decode(seg.payload, Part::Payload)?;
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

    let times = validate(&payload, policy, now)?;
    // The strict check accepted the bytes, so they are UTF-8.
    let payload = String::from_utf8(payload).map_err(|_| Error::Json(Part::Payload, "not UTF-8".into()))?;
    Ok(Verified::new(payload, times, key.kid.clone(), key.alg))
}
