//! The whole verification of one token, in the order that parses the least
//! before the signature is known to be good: size and alphabet, header,
//! key selection, signature, and only then the payload and its claims.
//!
//! Uses `compact`, `header`, `keys`, `claims`, `error` and `alg`; `cache`
//! and `jwe` build on it.

use std::cell::RefCell;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

use jsonwebtoken::Algorithm;

use crate::alg::algorithm_name;
use crate::claims::{claim_text, validate, Policy, RawClaims, Times};
use crate::compact::{decode, split};
use crate::error::{Error, Part, Result};
use crate::header::{self, Header};
use crate::keys::KeySet;

/// A token whose signature and claims were checked.
#[derive(Debug)]
pub struct Verified {
    /// The payload exactly as signed (strict JSON, UTF-8), for `jsonb`
    /// output with exact numbers.
    pub payload: String,
    pub times: Times,
    pub kid: String,
    pub alg: Algorithm,
    /// Whether the token named its key (`kid` in the header). A token that
    /// did not was verified with the only active key; sharing it with a
    /// backend that holds more keys would skip the "name your key" rule.
    pub kid_named: bool,
    /// For a nested JWT (JWE), the kid of the decryption key; None for a
    /// plain JWS.
    pub decryption_kid: Option<String>,
    /// A number the holder may keep with this verification; 0 when never
    /// set. (The extension records the generation of the revocation lists
    /// the token was last found absent from.)
    pub stamp: AtomicU64,
    /// An encoding of the payload the holder may keep with this
    /// verification, built by it on first use. (The extension keeps
    /// Postgres's jsonb of the claims, which costs a parse of the payload
    /// to build.)
    pub encoded: OnceLock<Box<[u8]>>,
    /// The payload decoded, built on first use: verification itself only
    /// reads the registered claims.
    claims: OnceLock<RawClaims>,
}

impl Verified {
    pub fn new(payload: String, times: Times, kid: String, alg: Algorithm) -> Verified {
        Verified {
            payload,
            times,
            kid,
            alg,
            kid_named: true,
            decryption_kid: None,
            stamp: AtomicU64::new(0),
            encoded: OnceLock::new(),
            claims: OnceLock::new(),
        }
    }

    /// All claims, decoded once per token.
    pub fn claims(&self) -> &RawClaims {
        self.claims.get_or_init(|| RawClaims::parse(&self.payload))
    }

    /// A claim as SQL text (see `claims::claim_text`).
    pub fn claim(&self, name: &str) -> Option<String> {
        claim_text(self.claims(), &self.payload, name)
    }

    /// Rough heap footprint, for the cache's byte bound: the text, the
    /// decoded claims once built (40 bytes a claim, about twice the text of
    /// a short one) and the holder's encoding (jsonb: about 1.5 times the
    /// text), with room to spare.
    pub fn approx_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.payload.len() * 6 + self.kid.len()
    }
}

thread_local! {
    /// The last header segment and what it parsed to. Tokens of one issuer
    /// and key share their header byte for byte, so most verifications skip
    /// decoding it; a different segment is parsed as usual.
    ///
    /// Measured with benches/verify.rs (fastest of 21 interleaved criterion
    /// runs, same binary, a busy 2-core machine): HS256 verify 1.54 us with
    /// the memo, 2.07 us without (about 0.5 us, a quarter of the cost);
    /// ES256 56.4 vs 56.1 us, where the signature dominates and the saving
    /// is below the noise.
    static LAST_HEADER: RefCell<Option<(String, Header)>> = const { RefCell::new(None) };
}

fn parse_header(segment: &str) -> Result<Header> {
    if let Some(h) = LAST_HEADER.with_borrow(|last| {
        last.as_ref()
            .filter(|(s, _)| s == segment)
            .map(|(_, h)| h.clone())
    }) {
        return Ok(h);
    }
    let header = header::parse(&decode(segment, Part::Header)?)?;
    LAST_HEADER.with_borrow_mut(|last| *last = Some((segment.to_string(), header.clone())));
    Ok(header)
}

/// Verifies `token` with `keys` under `policy` at `now` (Unix seconds).
pub fn verify(token: &str, keys: &KeySet, policy: &Policy, now: i64) -> Result<Verified> {
    let seg = split(token, policy.max_bytes)?;
    let header = parse_header(seg.header)?;
    if policy.require_at_jwt && !header.is_at_jwt() {
        return Err(Error::NotAccessToken(header.typ));
    }
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

    let times = match &key.issuer {
        None => validate(&payload, policy, now)?,
        Some(bound) => {
            if !policy.issuers.is_empty() && !policy.issuers.contains(bound) {
                return Err(Error::Issuer);
            }
            let narrowed = Policy {
                issuers: vec![bound.clone()],
                ..policy.clone()
            };
            validate(&payload, &narrowed, now)?
        }
    };
    let payload = payload_text(payload)?;
    let mut verified = Verified::new(payload, times, key.kid.clone(), key.alg);
    verified.kid_named = header.kid.is_some();
    Ok(verified)
}

/// The payload as text. `validate` parsed it as JSON from bytes (serde_json
/// checks every string as UTF-8, and any non-ASCII byte outside a string is
/// a syntax error), so this cannot fail after it; checking again costs a few
/// nanoseconds and keeps the core free of `unsafe`.
fn payload_text(payload: Vec<u8>) -> Result<String> {
    String::from_utf8(payload).map_err(|_| Error::Json(Part::Payload, "invalid UTF-8".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_text_refuses_bytes_that_are_not_utf8() {
        assert_eq!(
            payload_text(b"{\"sub\":\"caf\xc3\xa9\"}".to_vec()).unwrap(),
            "{\"sub\":\"café\"}"
        );
        let err = payload_text(b"{\"sub\":\"\xff\"}".to_vec()).unwrap_err();
        assert_eq!(err, Error::Json(Part::Payload, "invalid UTF-8".into()));
        assert_eq!(err.message(), "token payload is not valid JSON");
        assert_eq!(err.detail().as_deref(), Some("JSON error: invalid UTF-8."));
    }
}
