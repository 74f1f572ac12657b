//! What a slow or surprising server can be diagnosed with from SQL: the
//! running build and this backend's cache.

use pgrx::prelude::*;

use crate::state;

/// This backend's verification cache: entries and estimated bytes.
#[pg_extern(volatile, parallel_safe)]
fn cache_stats() -> TableIterator<'static, (name!(entries, i64), name!(bytes, i64))> {
    let (entries, bytes) = state::cache_usage();
    TableIterator::once((entries as i64, bytes as i64))
}

/// The library this backend runs: its version, the commit it was built
/// from ("-dirty" when the work tree had uncommitted changes, "unknown"
/// outside a git checkout), whether it is a debug build (several times
/// slower: the README's test command must never leave one installed), and
/// the PostgreSQL major version it was compiled for.
#[pg_extern(stable, parallel_safe)]
fn build_info() -> TableIterator<
    'static,
    (
        name!(version, String),
        name!(git_commit, String),
        name!(debug_build, bool),
        name!(pg_major, i32),
    ),
> {
    TableIterator::once((
        env!("CARGO_PKG_VERSION").to_string(),
        env!("JWT_RLS_GIT_COMMIT").to_string(),
        cfg!(debug_assertions),
        pgrx::pg_sys::PG_VERSION_NUM as i32 / 10000,
    ))
}
