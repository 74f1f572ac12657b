//! jwt_rls_core: strict JWT (JWS compact) verification with no PostgreSQL
//! dependency. The extension crate is a thin shell around `verify`,
//! `Verified::claim` (`claims::claim_text`) and the key store types here.
//!
//! Signatures are checked by the `jsonwebtoken` crate's aws-lc-rs backend;
//! everything it is lenient about (JSON duplicates and types, time claims,
//! header extensions, base64 spelling) is checked here first.

#![forbid(unsafe_code)]

pub mod cache;
pub mod claims;
pub mod compact;
pub mod error;
pub mod header;
pub mod json;
pub mod keys;
pub mod sign;
pub mod verify;

pub use claims::{Policy, Times};
pub use error::{Class, Error, KeyError, Result};
pub use keys::{Format, Key, KeySet};
pub use verify::{verify, Verified};
