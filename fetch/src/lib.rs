//! jwt_rls_fetch: the network half of "keys follow the provider", with no
//! PostgreSQL dependency. The extension's background worker calls
//! `fetch_jwks` on a schedule (and, limited by `RefetchLimiter`, when a
//! token names an unknown kid), then `plan::plan` to decide what to write
//! to its key table.
//!
//! A crate of its own rather than a feature of `jwt_rls_core`: the core is
//! what every backend links to verify tokens, and what the fuzz targets
//! and benchmarks build; the HTTP client and TLS stack belong only to the
//! worker, and a feature would be switched on for all of them whenever any
//! workspace member asked for it.

#![forbid(unsafe_code)]

pub mod error;
pub mod fetch;
pub mod limit;
pub mod plan;

pub use error::{Document, ErrorKind, FetchError};
pub use fetch::{fetch_jwks, FetchPolicy, FetchedJwks, Source};
pub use limit::RefetchLimiter;
pub use plan::{plan, KeyState, Plan, StoredKey};
