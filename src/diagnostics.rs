//! What a slow or surprising server can be diagnosed with from SQL: the
//! counters, the shared cache's and DPoP replay table's sizes (`stats()`), this backend's cache
//! and the running build. Reads the parts it reports on; nothing uses it.

use pgrx::prelude::*;

use crate::dpop::replay;
use crate::pg::clock;
use crate::shared::{cache, counters};
use crate::verification;

/// This backend's verification cache: entries and estimated bytes.
#[pg_extern(volatile, parallel_safe)]
fn cache_stats() -> TableIterator<'static, (name!(entries, i64), name!(bytes, i64))> {
    let (entries, bytes) = verification::cache_usage();
    TableIterator::once((entries as i64, bytes as i64))
}

/// `jwt_rls.stats()`: every counter, and the shared cache's size; `scope`
/// says whether they are the server's or this backend's.
#[pg_extern(volatile, parallel_safe)]
fn stats() -> TableIterator<
    'static,
    (
        name!(name, String),
        name!(value, i64),
        name!(scope, &'static str),
    ),
> {
    let scope = if counters::server_wide() {
        "server"
    } else {
        "backend"
    };
    let mut rows: Vec<(String, i64, &'static str)> = counters::values()
        .into_iter()
        .map(|(name, value)| (name.to_string(), value as i64, scope))
        .collect();
    let (slots, used, bytes) = cache::usage();
    rows.push(("shared_cache_slots".into(), slots as i64, scope));
    rows.push(("shared_cache_used".into(), used as i64, scope));
    rows.push(("shared_cache_bytes".into(), bytes as i64, scope));
    let now = clock::wall_seconds();
    let (live, slots, keys) = replay::usage(now);
    rows.push(("dpop_replay_slots".into(), slots as i64, scope));
    rows.push(("dpop_replay_used".into(), live as i64, scope));
    rows.push(("dpop_replay_keys".into(), keys as i64, scope));
    if let Some(since) = replay::recording_since(now) {
        rows.push(("dpop_replay_recording_since".into(), since, scope));
    }
    TableIterator::new(rows)
}

/// `jwt_rls.reset_stats()`: zeroes the counters (not the cache).
#[pg_extern(volatile, parallel_unsafe)]
fn reset_stats() {
    counters::reset();
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
