//! The extension's own tables (`jwt_rls.keys`, the revocation lists):
//! finding them, reading them with their owner's rights, and noticing that
//! they changed.
//!
//! Application roles cannot read these tables, so they are read as the
//! table owner inside a security-restricted operation, by queries that call
//! no function or operator a crafted search_path could replace. Every
//! change to them fires a statement trigger that queues a relcache
//! invalidation for the table; Postgres delivers it to every backend (and,
//! through WAL, to hot standbys) at commit, and the callback below bumps
//! the table's generation, so the next read reloads or re-checks.

use std::ffi::CStr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgRelation;

/// One watched table: its name, its OID once looked up (0 before), and
/// the generation bumped when it changes.
pub struct Watched {
    name: &'static CStr,
    oid: AtomicU32,
    generation: AtomicU64,
}

impl Watched {
    const fn new(name: &'static CStr) -> Watched {
        Watched {
            name,
            oid: AtomicU32::new(0),
            generation: AtomicU64::new(0),
        }
    }

    /// Bumped when the table changes in any backend (or on a cache reset).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The table's OID, None when the extension is not installed in this
    /// database. Remembered for the invalidation callback.
    pub fn oid(&self) -> Option<pg_sys::Oid> {
        let oid = table_oid(self.name)?;
        self.oid.store(oid.to_u32(), Ordering::Relaxed);
        Some(oid)
    }

    fn changed(&self, relid: pg_sys::Oid) {
        let known = self.oid.load(Ordering::Relaxed);
        if relid == pg_sys::InvalidOid || known == 0 || relid.to_u32() == known {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether the extension's schema holds a table of this name (a newer
/// library can run on an older schema during ALTER EXTENSION UPDATE).
pub fn has_table(name: &CStr) -> bool {
    table_oid(name).is_some()
}

/// The OID of table `name` in schema jwt_rls; None when there is none.
fn table_oid(name: &CStr) -> Option<pg_sys::Oid> {
    // SAFETY: catalog lookups by NUL-terminated names; with missing_ok they
    // return InvalidOid instead of raising.
    let oid = unsafe {
        let schema = pg_sys::get_namespace_oid(c"jwt_rls".as_ptr(), true);
        if schema == pg_sys::InvalidOid {
            return None;
        }
        pg_sys::get_relname_relid(name.as_ptr(), schema)
    };
    (oid != pg_sys::InvalidOid).then_some(oid)
}

pub static KEYS: Watched = Watched::new(c"keys");
pub static REVOKED_TOKENS: Watched = Watched::new(c"revoked_tokens");
pub static REVOKED_SUBJECTS: Watched = Watched::new(c"revoked_subjects");
pub static SIGNING_KEYS: Watched = Watched::new(c"signing_keys");
pub static SESSIONS: Watched = Watched::new(c"sessions");
pub static DECRYPTION_KEYS: Watched = Watched::new(c"decryption_keys");

static WATCHED: [&Watched; 6] = [
    &DECRYPTION_KEYS,
    &KEYS,
    &REVOKED_TOKENS,
    &REVOKED_SUBJECTS,
    &SIGNING_KEYS,
    &SESSIONS,
];

#[pg_guard]
unsafe extern "C-unwind" fn relcache_changed(_arg: pg_sys::Datum, relid: pg_sys::Oid) {
    for table in WATCHED {
        table.changed(relid);
    }
}

pub fn init() {
    // SAFETY: called once from _PG_init; the callback is a #[pg_guard]
    // function that only bumps counters.
    unsafe {
        pg_sys::CacheRegisterRelcacheCallback(Some(relcache_changed), pg_sys::Datum::from(0))
    };
}

/// Runs `read` with the rights of `table`'s owner inside a
/// security-restricted operation, restoring the caller's user and security
/// context whether `read` returns or raises.
pub fn as_owner_of<T>(table: pg_sys::Oid, read: impl FnOnce() -> T) -> T {
    // SAFETY: `table` is an existing relation's OID (just looked up); the
    // lock keeps its pg_class row valid while we read the owner.
    let owner = unsafe {
        let rel = PgRelation::with_lock(table, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        (*rel.rd_rel).relowner
    };
    let (mut saved_user, mut saved_context) = (pg_sys::InvalidOid, 0);
    // SAFETY: writes the current user and security context into our locals.
    unsafe { pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context) };
    let restricted =
        (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32;
    // SAFETY: this is how Postgres itself runs code as a table owner (e.g.
    // for index expressions and REFRESH MATERIALIZED VIEW): switch to the
    // owner inside a security-restricted operation, in which nothing the
    // query could reach may change session state, and restore the saved
    // user and context on every exit. The `finally` below restores them
    // whether `read` returns or raises.
    unsafe { pg_sys::SetUserIdAndSecContext(owner, saved_context | restricted) };
    PgTryBuilder::new(AssertUnwindSafe(|| {
        // SAFETY: a GUC nest level and a snapshot pushed here are undone
        // right after `read` returns; when it raises, the (sub)transaction
        // abort undoes both. The search path is pinned to pg_catalog first
        // and pg_temp last, so that nothing the caller created (a temp
        // domain named like a type, say) can run as the owner; the snapshot
        // is the latest, so a revocation or key change committed before
        // this read is seen even inside a REPEATABLE READ transaction.
        unsafe {
            let nest = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                c"search_path".as_ptr(),
                c"pg_catalog, pg_temp".as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                pg_sys::PGERROR as i32,
                false,
            );
            // Parallel workers (and a leader in parallel mode) may not take
            // a new snapshot: they read under the statement's, and the
            // callers keep nothing they learn then (`fresh()`).
            let fresh = !pg_sys::IsInParallelMode();
            if fresh {
                pg_sys::PushActiveSnapshot(pg_sys::GetLatestSnapshot());
            }
            let result = read();
            if fresh {
                pg_sys::PopActiveSnapshot();
            }
            pg_sys::AtEOXact_GUC(true, nest);
            result
        }
    }))
    // SAFETY: restores exactly what GetUserIdAndSecContext saved.
    .finally(|| unsafe { pg_sys::SetUserIdAndSecContext(saved_user, saved_context) })
    .execute()
}

/// Whether `as_owner_of` reads under the latest snapshot now (not in
/// parallel mode): only such answers may be remembered past the statement.
pub fn fresh() -> bool {
    // SAFETY: reads a backend-global flag.
    !unsafe { pg_sys::IsInParallelMode() }
}

/// The first row of a read-only query, as the caller (wrap it in
/// `as_owner_of` for the extension's tables). Read-only SPI, unlike
/// `Spi::get_one`, runs in parallel workers and on hot standbys, and takes
/// no new command id.
pub fn read_row<A: FromDatum + IntoDatum, B: FromDatum + IntoDatum>(
    query: &str,
    args: &[pgrx::datum::DatumWithOid],
) -> (Option<A>, Option<B>) {
    Spi::connect(|client| {
        client
            .select(query, Some(1), args)?
            .first()
            .get_two::<A, B>()
    })
    .unwrap_or_else(|e| error!("jwt_rls could not read its tables: {e}"))
}

/// Statement trigger on the extension's tables: queue the invalidation
/// that tells every backend the table changed, once this transaction
/// commits.
#[pg_trigger]
fn table_changed<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError> {
    // SAFETY: the trigger's relation OID names an existing relation; this
    // only queues an invalidation message sent at commit.
    unsafe { pg_sys::CacheInvalidateRelcacheByRelid(trigger.relid()?) };
    Ok(None)
}
