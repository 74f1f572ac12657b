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
//!
//! On a Citus node where a table has been made a reference table
//! (`share_with_citus()`), the rows live in a placement, a table named
//! `<table>_<shardid>` on every node, and the table itself is an empty
//! shell Citus plans around. The verification path reads and watches the
//! placement directly: Citus refuses a distributed query (which a read of
//! the shell is) from inside a shard query, where a worker evaluates a
//! policy, and the placement is written on every node in the same
//! two-phase commit, so each node's copy is the cluster's. Writes keep
//! going through the table itself, which Citus sends to every placement.

use std::ffi::{CStr, CString};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgRelation;

use super::errors;

/// One watched table: its name, the OIDs of the table and of the relation
/// read here once looked up (0 before; the same table without Citus), the
/// generation bumped when either changes, and the Citus shard found at a
/// generation (`placed_at` is that generation + 1, 0 before any lookup).
pub struct Watched {
    name: &'static CStr,
    oid: AtomicU32,
    shell: AtomicU32,
    generation: AtomicU64,
    shard: AtomicU64,
    placed_at: AtomicU64,
}

/// Where this backend reads a watched table: the table itself, or its
/// local Citus placement.
pub struct Relation {
    pub oid: pg_sys::Oid,
    name: String,
}

impl Relation {
    /// The schema-qualified name to put in a query.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Watched {
    const fn new(name: &'static CStr) -> Watched {
        Watched {
            name,
            oid: AtomicU32::new(0),
            shell: AtomicU32::new(0),
            generation: AtomicU64::new(0),
            shard: AtomicU64::new(0),
            placed_at: AtomicU64::new(0),
        }
    }

    /// Bumped when the table changes in any backend (or on a cache reset).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// The relation to read this table from (see the module comment),
    /// remembered for the invalidation callback; None when the extension
    /// is not installed in this database. The Citus lookup runs again
    /// only after the table (or its metadata) changed. A table Citus
    /// shares but this node holds no copy of raises an error: reading the
    /// table itself would read another node's copy, whose changes this
    /// node's backends would never hear of.
    pub fn relation(&self) -> Option<Relation> {
        let table = table_oid(self.name)?;
        self.shell.store(table.to_u32(), Ordering::Relaxed);
        let generation = self.generation();
        let shard = if self.placed_at.load(Ordering::Relaxed) == generation.wrapping_add(1) {
            self.shard.load(Ordering::Relaxed)
        } else {
            let shard = match citus_placement(table) {
                Placement::None => 0,
                Placement::Local(shard) => shard,
                Placement::Elsewhere => errors::no_local_copy(&self.name.to_string_lossy()),
            };
            // Only an answer read under the latest snapshot is kept (a
            // parallel worker reads under the statement's).
            if fresh() {
                self.shard.store(shard, Ordering::Relaxed);
                self.placed_at
                    .store(generation.wrapping_add(1), Ordering::Relaxed);
            }
            shard
        };
        let name = self.name.to_string_lossy();
        if shard == 0 {
            self.oid.store(table.to_u32(), Ordering::Relaxed);
            return Some(Relation {
                oid: table,
                name: format!("jwt_rls.{name}"),
            });
        }
        let local = format!("{name}_{shard}");
        let oid = CString::new(local.as_str())
            .ok()
            .and_then(|local| table_oid(&local))
            .unwrap_or_else(|| errors::no_local_copy(&name));
        self.oid.store(oid.to_u32(), Ordering::Relaxed);
        Some(Relation {
            oid,
            name: format!("jwt_rls.{local}"),
        })
    }

    fn changed(&self, relid: pg_sys::Oid) {
        let known = self.oid.load(Ordering::Relaxed);
        let shell = self.shell.load(Ordering::Relaxed);
        if relid == pg_sys::InvalidOid
            || known == 0
            || relid.to_u32() == known
            || relid.to_u32() == shell
        {
            self.generation.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Where Citus keeps `table`'s rows, seen from this node.
enum Placement {
    /// Not a table Citus manages (or no Citus here): the table itself.
    None,
    /// Its one shard (a reference table's), placed on this node.
    Local(u64),
    /// Managed by Citus, but with no placement on this node.
    Elsewhere,
}

/// Citus keeps its metadata in pg_catalog.pg_dist_shard and
/// pg_dist_placement in a database where its extension exists; elsewhere
/// nothing is read. A table with more than one shard (not one of ours as
/// `share_with_citus()` makes them) counts as elsewhere: fail closed.
fn citus_placement(table: pg_sys::Oid) -> Placement {
    // SAFETY: a catalog lookup by NUL-terminated name; InvalidOid when absent.
    let metadata = unsafe {
        pg_sys::get_relname_relid(
            c"pg_dist_shard".as_ptr(),
            pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE),
        )
    };
    if metadata == pg_sys::InvalidOid {
        return Placement::None;
    }
    let (shard, local) = as_owner_of(table, || {
        read_row::<i64, bool>(
            "SELECT CASE WHEN pg_catalog.count(*) OPERATOR(pg_catalog.=) 1 THEN pg_catalog.min(s.shardid) \
                         WHEN pg_catalog.count(*) OPERATOR(pg_catalog.>) 1 THEN 0 END, \
                    pg_catalog.bool_or(EXISTS (SELECT 1 FROM pg_catalog.pg_dist_placement p \
                        WHERE p.shardid OPERATOR(pg_catalog.=) s.shardid \
                          AND p.groupid OPERATOR(pg_catalog.=) (SELECT g.groupid FROM pg_catalog.pg_dist_local_group g))) \
             FROM pg_catalog.pg_dist_shard s \
             WHERE s.logicalrelid OPERATOR(pg_catalog.=) $1::pg_catalog.regclass",
            &[table.into()],
        )
    });
    match (shard.map(u64::try_from), local) {
        (None, _) => Placement::None,
        (Some(Ok(shard)), Some(true)) if shard != 0 => Placement::Local(shard),
        _ => Placement::Elsewhere,
    }
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
pub static JWKS_SOURCES: Watched = Watched::new(c"jwks_sources");

static WATCHED: [&Watched; 7] = [
    &DECRYPTION_KEYS,
    &JWKS_SOURCES,
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
