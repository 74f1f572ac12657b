//! Choosing the key a token is checked with, one rule for signature keys
//! and decryption keys (only their errors differ): the key the token names
//! by `kid`, refused when disabled or outside its validity window; or, for
//! a token that names none, the only key active now (with two or more, the
//! token must say which).
//!
//! Uses `error` only; `keys` and `jwe_keys` implement `Selectable`.

use crate::error::{Error, Result};

/// What choosing needs to know of a key.
pub trait Selectable {
    /// The errors this kind of key is refused with.
    const REFUSALS: Refusals;

    fn kid(&self) -> &str;
    fn enabled(&self) -> bool;
    /// Unix seconds [not_before, not_after) outside which the key is
    /// refused; None: unbounded on that side.
    fn window(&self) -> (Option<i64>, Option<i64>);

    /// Whether the key may be used at `now` (Unix seconds): enabled, and
    /// inside its window.
    fn active_at(&self, now: i64) -> bool {
        let (not_before, not_after) = self.window();
        self.enabled()
            && not_before.is_none_or(|nb| now >= nb)
            && not_after.is_none_or(|na| now < na)
    }
}

/// The errors one kind of key is refused with.
pub struct Refusals {
    pub unknown: fn(String) -> Error,
    pub disabled: fn(String) -> Error,
    pub not_in_window: fn(String) -> Error,
    /// No key is active (and the token named none).
    pub none_active: fn() -> Error,
    /// This many keys are active (and the token named none).
    pub ambiguous: fn(usize) -> Error,
}

/// The keys of one kind a backend holds: `KeySet` (signature keys) and
/// `DecryptionKeySet`.
#[derive(Debug)]
pub struct KeyRing<K> {
    keys: Vec<K>,
}

impl<K> Default for KeyRing<K> {
    fn default() -> Self {
        KeyRing { keys: Vec::new() }
    }
}

impl<K: Selectable> KeyRing<K> {
    pub fn new(keys: Vec<K>) -> Self {
        KeyRing { keys }
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a token names by kid, or the only active key when it names
    /// none. Never falls back to trying other keys: trying keys in turn
    /// would multiply the cost of a hostile token and blur which key
    /// verified or decrypted it.
    pub fn select(&self, kid: Option<&str>, now: i64) -> Result<&K> {
        let refuse = &K::REFUSALS;
        match kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid() == kid)
                    .ok_or_else(|| (refuse.unknown)(kid.to_string()))?;
                if !key.enabled() {
                    Err((refuse.disabled)(kid.to_string()))
                } else if !key.active_at(now) {
                    Err((refuse.not_in_window)(kid.to_string()))
                } else {
                    Ok(key)
                }
            }
            None => {
                let mut active = self.keys.iter().filter(|k| k.active_at(now));
                match (active.next(), active.count()) {
                    (None, _) => Err((refuse.none_active)()),
                    (Some(key), 0) => Ok(key),
                    (Some(_), more) => Err((refuse.ambiguous)(more + 1)),
                }
            }
        }
    }
}
