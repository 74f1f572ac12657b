//! Keys that follow the provider: an opt-in background worker that fetches
//! each configured issuer's JWKS over HTTPS (`jwt_rls_fetch`) on a
//! schedule, and at once (rate-limited) when a token names a kid nobody
//! holds, and adds and retires keys in `jwt_rls.keys`.
//!
//! Switched on by naming the database it serves in `jwt_rls.jwks_database`
//! (a postmaster setting; jwt_rls in shared_preload_libraries). Sources
//! are rows of `jwt_rls.jwks_sources`, which also shows each one's status.
//! The rules for what a fetch may change (a failed or hostile fetch never
//! removes a key; a key no longer published is retired after a grace
//! period; keys an administrator added or disabled are never touched) are
//! in `fetch/src/plan.rs`. The worker runs only on a primary: standbys get
//! the keys through replication; on a Citus cluster that shares the key
//! tables, only on the coordinator: the other nodes get the keys in their
//! placements.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jwt_rls_fetch::{
    fetch_jwks, plan, FetchPolicy, FetchedJwks, KeyState, RefetchLimiter, Source, StoredKey,
};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::store::modify as run;
use crate::pg::clock::unix_seconds;
use crate::pg::region::Region;

static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
static REFRESH_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(3600);
static RETIRE_AFTER: GucSetting<i32> = GucSetting::<i32>::new(24 * 3600);
static UNKNOWN_KID_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(60);
static TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(10);
static CA_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The worker's part of the shared segment: its latch (to wake it) and
/// the number of unknown-kid requests since it last looked.
#[repr(C)]
struct Shared {
    latch: AtomicPtr<pg_sys::Latch>,
    unknown_kid: AtomicU64,
}

/// Bytes this part asks of the shared segment.
pub const SHARED_BYTES: usize = std::mem::size_of::<Shared>();

/// This part's region of the shared segment.
pub static REGION: Region = Region::new();

fn shared() -> Option<&'static Shared> {
    // SAFETY: the region is SHARED_BYTES of zeroed, 64-byte aligned memory
    // for as long as the server runs; all-zero is a valid Shared.
    REGION
        .base()
        .map(|base| unsafe { &*(base as *const Shared) })
}

/// Defines the settings and registers the worker; called from _PG_init
/// during shared_preload_libraries.
pub fn init() {
    GucRegistry::define_string_guc(
        c"jwt_rls.jwks_database",
        c"Database whose jwt_rls.jwks_sources the key refresh worker serves (empty: no worker).",
        c"",
        &DATABASE,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    for (name, description, setting, min, max) in [
        (
            c"jwt_rls.jwks_refresh_interval",
            c"Seconds between scheduled fetches of each JWKS source.",
            &REFRESH_INTERVAL,
            1,
            7 * 86400,
        ),
        (
            c"jwt_rls.jwks_retire_after",
            c"Seconds a key no longer published stays enabled (cover the longest token lifetime).",
            &RETIRE_AFTER,
            0,
            365 * 86400,
        ),
        (
            c"jwt_rls.jwks_unknown_kid_interval",
            c"Least seconds between fetches of a source asked for by tokens with an unknown kid.",
            &UNKNOWN_KID_INTERVAL,
            10,
            86400,
        ),
        (
            c"jwt_rls.jwks_timeout",
            c"Seconds a whole fetch (discovery and JWKS) may take.",
            &TIMEOUT,
            1,
            300,
        ),
    ] {
        GucRegistry::define_int_guc(
            name,
            description,
            c"",
            setting,
            min,
            max,
            GucContext::Sighup,
            GucFlags::UNIT_S,
        );
    }
    GucRegistry::define_string_guc(
        c"jwt_rls.jwks_ca_file",
        c"PEM file of CA certificates trusted besides the system's, for JWKS fetches.",
        c"",
        &CA_FILE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    if DATABASE.get().is_none_or(|d| d.is_empty()) {
        return;
    }
    BackgroundWorkerBuilder::new("jwt_rls JWKS refresh")
        .set_type("jwt_rls JWKS refresh")
        .set_library("jwt_rls")
        .set_function("jwt_rls_jwks_worker_main")
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(10)))
        .load();
}

/// Asks the worker to fetch the sources again (a token named a kid no key
/// has). Cheap and safe to call from any backend: the worker rate-limits.
pub fn unknown_kid() {
    let Some(shared) = shared() else { return };
    shared.unknown_kid.fetch_add(1, Ordering::Relaxed);
    let latch = shared.latch.load(Ordering::Acquire);
    if !latch.is_null() {
        // SAFETY: the worker's process latch lives in shared memory (its
        // PGPROC) for as long as the server runs; SetLatch is safe to call
        // from any process.
        unsafe { pg_sys::SetLatch(latch) };
    }
}

struct SourceRow {
    id: i32,
    issuer: Option<String>,
    jwks_uri: Option<String>,
}

/// The worker runs as a superuser in a database whose owner may not be
/// one: it reads only the extension's own table (never a same-named table
/// or view someone created before the extension was installed, or after it
/// was dropped, which would run their code with its rights), and all its
/// SQL runs with search_path pinned to pg_catalog (`pin_search_path`).
const TRUSTED_SOURCES: &str = "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d \
     JOIN pg_catalog.pg_extension e ON e.oid OPERATOR(pg_catalog.=) d.refobjid \
     WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_class'::pg_catalog.regclass \
       AND d.objid OPERATOR(pg_catalog.=) pg_catalog.to_regclass('jwt_rls.jwks_sources') \
       AND d.deptype OPERATOR(pg_catalog.=) 'e' AND e.extname OPERATOR(pg_catalog.=) 'jwt_rls')";

/// Whether Citus shares the sources and this node is not the coordinator
/// (asked only where Citus's metadata exists).
const CITUS_FOLLOWER: &str = "SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition p \
       WHERE p.logicalrelid OPERATOR(pg_catalog.=) 'jwt_rls.jwks_sources'::pg_catalog.regclass) \
     AND NOT pg_catalog.citus_is_coordinator()";

/// Set once this worker has said it leaves the fetching to the coordinator.
static FOLLOWING: AtomicBool = AtomicBool::new(false);

/// Pins this session's search_path, over the database's and role's own
/// settings (which the database owner controls); the OAuth key snapshot
/// worker pins its own the same way.
pub(crate) fn pin_search_path() {
    Spi::run("SELECT pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', false)")
        .unwrap_or_else(|e| error!("jwt_rls could not pin its search_path: {e}"));
}

fn sources() -> Vec<SourceRow> {
    Spi::connect(|client| {
        let trusted: Option<bool> = client.select(TRUSTED_SOURCES, None, &[])?.first().get(1)?;
        if trusted != Some(true) {
            return Ok(vec![]);
        }
        // On a Citus cluster whose sources are shared (share_with_citus()),
        // the coordinator's worker fetches for every node; another node's
        // would write the same keys again, racing it.
        let citus: Option<bool> = client
            .select(
                "SELECT pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL \
                   AND pg_catalog.to_regprocedure('pg_catalog.citus_is_coordinator()') IS NOT NULL",
                None,
                &[],
            )?
            .first()
            .get(1)?;
        if citus == Some(true) {
            let follower: Option<bool> = client.select(CITUS_FOLLOWER, None, &[])?.first().get(1)?;
            if follower != Some(false) {
                if !FOLLOWING.swap(true, Ordering::Relaxed) {
                    log!("jwt_rls: JWKS sources are shared by Citus; the coordinator's worker fetches them");
                }
                return Ok(vec![]);
            }
        }
        let mut out = vec![];
        for row in client.select(
            "SELECT id, issuer, jwks_uri FROM jwt_rls.jwks_sources WHERE enabled ORDER BY id",
            None,
            &[],
        )? {
            out.push(SourceRow {
                id: row.get::<i32>(1)?.unwrap_or_default(),
                issuer: row.get::<String>(2)?,
                jwks_uri: row.get::<String>(3)?,
            });
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .unwrap_or_else(|e| error!("jwt_rls could not read jwt_rls.jwks_sources: {e}"))
}

fn stored_keys(source: i32) -> Vec<StoredKey> {
    Spi::connect(|client| {
        let mut out = vec![];
        for row in client.select(
            "SELECT kid, alg, material, enabled, source_state, \
                    pg_catalog.date_part('epoch', missing_since)::pg_catalog.int8 \
             FROM jwt_rls.keys WHERE source_id OPERATOR(pg_catalog.=) $1",
            None,
            &[source.into()],
        )? {
            let enabled = row.get::<bool>(4)?.unwrap_or(false);
            let state = row.get::<String>(5)?;
            let since = row.get::<i64>(6)?.unwrap_or(0);
            out.push(StoredKey {
                kid: row.get::<String>(1)?.unwrap_or_default(),
                alg: row.get::<String>(2)?.unwrap_or_default(),
                material: row.get::<String>(3)?.unwrap_or_default(),
                state: match (enabled, state.as_deref()) {
                    (true, Some("missing")) => KeyState::Missing { since },
                    (true, _) => KeyState::Listed,
                    (false, Some("retired")) => KeyState::Retired,
                    (false, _) => KeyState::Disabled,
                },
            });
        }
        Ok::<_, pgrx::spi::Error>(out)
    })
    .unwrap_or_else(|e| error!("jwt_rls could not read jwt_rls.keys: {e}"))
}

/// New keys one fetch may add: a provider publishes a handful; a document
/// with more is refused whole (a hostile one would otherwise grow the key
/// table, which every backend loads, without bound).
const MAX_NEW_KEYS: usize = 20;

/// Retired keys are deleted this long after they went missing.
const DELETE_RETIRED_AFTER: &str = "30 days";

/// Applies a successful fetch to the key table and the source's status.
fn apply(source: i32, fetched: &FetchedJwks, now: i64) {
    let p = plan(
        &stored_keys(source),
        fetched,
        now,
        i64::from(RETIRE_AFTER.get()),
    );
    if p.add.len() > MAX_NEW_KEYS {
        failed(
            source,
            &format!(
                "the JWKS lists {} new keys; at most {MAX_NEW_KEYS} are added in one fetch, so none was",
                p.add.len()
            ),
        );
        return;
    }
    for e in &p.add {
        let added = run(
            "INSERT INTO jwt_rls.keys (kid, alg, format, material, source_id, source_state) \
             VALUES ($1, $2, 'jwk', $3, $4, 'listed') ON CONFLICT (kid) DO NOTHING RETURNING 1",
            &[
                e.kid.as_str().into(),
                e.alg.as_str().into(),
                e.material.as_str().into(),
                source.into(),
            ],
        );
        if added == 0 {
            log!(
                "jwt_rls: JWKS source {source} lists kid {}, which another key already has; not added",
                jwt_rls_core::error::shown(&e.kid)
            );
        }
    }
    let updates: [(&[String], &str); 4] = [
        (&p.missing, "UPDATE jwt_rls.keys SET source_state = 'missing', missing_since = pg_catalog.now() \
                      WHERE source_id OPERATOR(pg_catalog.=) $1 AND kid OPERATOR(pg_catalog.=) $2"),
        (&p.relisted, "UPDATE jwt_rls.keys SET source_state = 'listed', missing_since = NULL \
                       WHERE source_id OPERATOR(pg_catalog.=) $1 AND kid OPERATOR(pg_catalog.=) $2"),
        (&p.retire, "UPDATE jwt_rls.keys SET enabled = false, source_state = 'retired' \
                     WHERE source_id OPERATOR(pg_catalog.=) $1 AND kid OPERATOR(pg_catalog.=) $2"),
        (&p.revive, "UPDATE jwt_rls.keys SET enabled = true, source_state = 'listed', missing_since = NULL \
                     WHERE source_id OPERATOR(pg_catalog.=) $1 AND kid OPERATOR(pg_catalog.=) $2"),
    ];
    for (kids, sql) in updates {
        for kid in kids {
            run(sql, &[source.into(), kid.as_str().into()]);
        }
    }
    for kid in &p.conflicts {
        log!(
            "jwt_rls: JWKS source {source} lists kid {} with other material than is stored; the stored key is kept",
            jwt_rls_core::error::shown(kid)
        );
    }
    run(
        &format!(
            "DELETE FROM jwt_rls.keys WHERE source_id OPERATOR(pg_catalog.=) $1 \
             AND source_state OPERATOR(pg_catalog.=) 'retired' \
             AND missing_since OPERATOR(pg_catalog.<) (pg_catalog.now() OPERATOR(pg_catalog.-) '{DELETE_RETIRED_AFTER}'::pg_catalog.interval)"
        ),
        &[source.into()],
    );
    run(
        "UPDATE jwt_rls.jwks_sources SET last_attempt = pg_catalog.now(), last_success = pg_catalog.now(), \
         last_error = NULL, failures = 0, keys_listed = $2 WHERE id OPERATOR(pg_catalog.=) $1",
        &[source.into(), (fetched.keys().len() as i32).into()],
    );
}

fn failed(source: i32, why: &str) {
    run(
        "UPDATE jwt_rls.jwks_sources SET last_attempt = pg_catalog.now(), last_error = $2, \
         failures = failures OPERATOR(pg_catalog.+) 1 WHERE id OPERATOR(pg_catalog.=) $1",
        &[source.into(), why.into()],
    );
}

fn policy() -> FetchPolicy {
    let ca = CA_FILE
        .get()
        .map(|c| c.to_string_lossy().into_owned())
        .filter(|c| !c.is_empty());
    FetchPolicy {
        timeout: Duration::from_secs(TIMEOUT.get().max(1) as u64),
        connect_timeout: Duration::from_secs((TIMEOUT.get().max(2) / 2) as u64),
        extra_ca_file: ca.map(Into::into),
        ..FetchPolicy::default()
    }
}

/// The worker's main function (named in its registration).
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn jwt_rls_jwks_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = DATABASE
        .get()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    BackgroundWorker::transaction(pin_search_path);
    if let Some(s) = shared() {
        // SAFETY: MyLatch is this process's latch in shared memory, set up
        // before a background worker's main function runs.
        s.latch.store(unsafe { pg_sys::MyLatch }, Ordering::Release);
    }
    log!("jwt_rls: JWKS refresh worker started for database {database}");

    let mut due: HashMap<i32, Instant> = HashMap::new();
    let mut limiter = RefetchLimiter::new(Duration::from_secs(UNKNOWN_KID_INTERVAL.get() as u64));
    while BackgroundWorker::wait_latch(Some(Duration::from_secs(1))) {
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a worker to reload its settings.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
            limiter = RefetchLimiter::new(Duration::from_secs(UNKNOWN_KID_INTERVAL.get() as u64));
        }
        let asked = shared().is_some_and(|s| s.unknown_kid.swap(0, Ordering::Relaxed) > 0);
        let rows = BackgroundWorker::transaction(sources);
        due.retain(|id, _| rows.iter().any(|r| r.id == *id));
        for row in rows {
            let now = Instant::now();
            let key = row.id.to_string();
            let scheduled = due.get(&row.id).is_none_or(|t| *t <= now);
            let wanted = scheduled || (asked && limiter.try_unknown_kid(&key, now));
            if !wanted {
                continue;
            }
            limiter.fetched(&key, now);
            let source = match (&row.issuer, &row.jwks_uri) {
                (Some(issuer), _) => Source::Issuer(issuer.clone()),
                (None, Some(uri)) => Source::JwksUri(uri.clone()),
                (None, None) => continue,
            };
            // The network wait happens outside any transaction.
            let result = fetch_jwks(&source, &policy());
            let id = row.id;
            let interval = Duration::from_secs(REFRESH_INTERVAL.get().max(1) as u64);
            match result {
                Ok(fetched) => {
                    BackgroundWorker::transaction(|| apply(id, &fetched, unix_seconds_now()));
                    due.insert(id, Instant::now() + interval);
                }
                Err(e) => {
                    let why = e.to_string();
                    log!("jwt_rls: fetching JWKS source {id} failed: {why}; its keys are kept");
                    BackgroundWorker::transaction(|| failed(id, &why));
                    // Retry sooner than the schedule, but not in a loop.
                    due.insert(id, Instant::now() + interval.min(Duration::from_secs(30)));
                }
            }
        }
    }
    if let Some(s) = shared() {
        s.latch.store(std::ptr::null_mut(), Ordering::Release);
    }
}

fn unix_seconds_now() -> i64 {
    // SAFETY: reads the current time; cannot fail.
    unix_seconds(unsafe { pg_sys::GetCurrentTimestamp() })
}

extension_sql!(
    r#"
CREATE TABLE jwt_rls.jwks_sources (
    id           integer GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    issuer       text UNIQUE CHECK (issuer LIKE 'https://%'),
    jwks_uri     text UNIQUE CHECK (jwks_uri LIKE 'https://%'),
    enabled      boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_attempt timestamptz,
    last_success timestamptz,
    last_error   text,
    failures     integer NOT NULL DEFAULT 0,
    keys_listed  integer,
    CHECK ((issuer IS NULL) <> (jwks_uri IS NULL))
);
COMMENT ON TABLE jwt_rls.jwks_sources IS
    'Where the JWKS refresh worker fetches keys from (an OpenID issuer or a JWKS URL), and how each fetch went';
REVOKE ALL ON jwt_rls.jwks_sources FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.jwks_sources', '');
-- The identity's sequence too: pg_dump leaves out an extension's
-- sequences unless marked, and a restored database would then hand out
-- ids that its restored sources already hold.
SELECT pg_catalog.pg_extension_config_dump('jwt_rls.jwks_sources_id_seq', '');

ALTER TABLE jwt_rls.keys
    ADD COLUMN source_id integer REFERENCES jwt_rls.jwks_sources (id) ON DELETE CASCADE,
    ADD COLUMN source_state text CHECK (source_state IN ('listed', 'missing', 'retired')),
    ADD COLUMN missing_since timestamptz;
COMMENT ON COLUMN jwt_rls.keys.source_id IS
    'The JWKS source the refresh worker keeps this key for (deleting the source deletes its keys); NULL: added by hand';

-- A fetched key verifies only its source's issuer's tokens, so a source
-- whose issuer changes changes what its keys accept: every backend reloads
-- its keys at commit, as for a change to the key table. The worker's own
-- status writes (last_attempt, failures, ...) do not reload anything.
CREATE TRIGGER jwks_sources_changed
    AFTER UPDATE OF id, issuer OR DELETE OR TRUNCATE ON jwt_rls.jwks_sources
    FOR EACH STATEMENT EXECUTE FUNCTION jwt_rls.table_changed();
"#,
    name = "jwks_sources",
    requires = ["key_table", pg::catalog::table_changed]
);
