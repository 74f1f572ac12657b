//! The worker that keeps the logins' snapshot current: connected to
//! `jwt_rls.oauth_database`, it looks every second at the generations of
//! the key table, the JWKS sources, the revocation lists and the policy
//! (all bumped at commit in every backend, and on a hot standby when the
//! change is replayed), and rewrites the snapshot when one moved, or a
//! minute passed. Each look is stamped, so a login refuses the copy of a
//! worker that stopped looking (`STALE_AFTER`).
//!
//! It runs on primaries and hot standbys alike (from a consistent state):
//! a standby's logins check the keys it has replayed. A database-level
//! setting (`ALTER DATABASE ... SET jwt_rls.audience`, say) reaches a
//! session only when it starts, so the worker watches pg_db_role_setting
//! for its database and exits when it changed, to be started again at once
//! with the new values.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jwt_rls_core::login::Snapshot;
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::snapshot;
use crate::keys::jwks_worker;
use crate::keys::store as keystore;
use crate::lifecycle::revocation;
use crate::pg::clock::wall_seconds;
use crate::settings::{self, POLICY_GENERATION};
use crate::verification::keys_generation;

/// Longest time between two rewrites, whatever the generations say.
const REWRITE_EVERY: Duration = Duration::from_secs(60);

pub fn register() {
    BackgroundWorkerBuilder::new("jwt_rls OAuth key snapshot")
        .set_type("jwt_rls OAuth key snapshot")
        .set_library("jwt_rls")
        .set_function("jwt_rls_oauth_publisher_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

/// The database's own settings (for every role), as text: a change means
/// this session's settings are no longer the database's.
fn database_settings() -> Option<String> {
    Spi::get_one::<String>(
        "SELECT pg_catalog.array_to_string(s.setconfig, pg_catalog.chr(10)) \
         FROM pg_catalog.pg_db_role_setting s \
         WHERE s.setdatabase OPERATOR(pg_catalog.=) \
               (SELECT d.oid FROM pg_catalog.pg_database d \
                WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database()) \
           AND s.setrole OPERATOR(pg_catalog.=) 0",
    )
    .unwrap_or_else(|e| error!("jwt_rls could not read the database's settings: {e}"))
}

fn generations() -> (u64, u64, u64) {
    (
        keys_generation(),
        revocation::generation(),
        POLICY_GENERATION.load(Ordering::Relaxed),
    )
}

/// The snapshot of this database now.
fn take(database: &str) -> Vec<u8> {
    let mut s = Snapshot::new(database, settings::policy());
    s.role_claim = settings::role_claim();
    s.keys = keystore::rows();
    let lists = revocation::entries();
    s.revoked_jtis = lists.jtis;
    s.revoked_sessions = lists.sessions;
    s.revoked_subjects = lists.subjects;
    s.encode()
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn jwt_rls_oauth_publisher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = super::database().unwrap_or_default();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // Everything this worker runs is pinned to pg_catalog, over the
    // database's and role's search_path (which the database owner sets).
    BackgroundWorker::transaction(jwks_worker::pin_search_path);
    let started_with = BackgroundWorker::transaction(database_settings);
    let mut published: Option<((u64, u64, u64), Instant)> = None;
    let mut too_large_said = false;
    loop {
        let now = wall_seconds();
        let (changed, settings_now, gens) = BackgroundWorker::transaction(|| {
            let gens = generations();
            let due = published.is_none_or(|(g, at)| g != gens || at.elapsed() >= REWRITE_EVERY);
            let settings_now = database_settings();
            let bytes = (due && settings_now == started_with).then(|| take(&database));
            (bytes, settings_now, gens)
        });
        if settings_now != started_with {
            log!("jwt_rls: the settings of database {database} changed; the OAuth key snapshot worker restarts to apply them");
            // SAFETY: exiting with 1 asks the postmaster to start the
            // worker again after its restart time.
            unsafe { pg_sys::proc_exit(1) };
        }
        match changed {
            Some(bytes) => {
                if snapshot::publish(&bytes, now) {
                    too_large_said = false;
                } else if !too_large_said {
                    too_large_said = true;
                    ereport!(
                        WARNING,
                        PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
                        "the OAuth key snapshot does not fit in jwt_rls.oauth_snapshot_size; every OAuth login is refused",
                        format!(
                            "The keys, revocation lists and settings of database {database} take {} kB; {} kB are reserved.",
                            bytes.len().div_ceil(1024),
                            snapshot::size_kb()
                        )
                    );
                }
                published = Some((gens, Instant::now()));
            }
            None => snapshot::checked(now),
        }
        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a worker to reload its settings.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
}
