//! The DPoP replay table in shared memory: one table for every backend of
//! the server, so that a proof accepted through one connection is refused
//! through any other (RFC 9449 section 11.1).
//!
//! The table itself (`jwt_rls_core::replay`) is plain bytes with no
//! pointers; this module gives it a region of jwt_rls's shared segment and
//! splits it into `PARTITIONS` partitions, each under an LWLock of its own,
//! so that concurrent binds rarely wait on each other. An insertion reads
//! at most 16 slots under its partition's lock.
//!
//! What survives what: the table is in shared memory, so it outlives every
//! backend and is lost when the server restarts (or after a crash). That
//! forgets nothing a proof's `iat` does not already bound: after a restart
//! a proof replayed within its window (`jwt_rls.dpop_max_age`) would be
//! accepted once more. SECURITY.md says so.
//!
//! Without shared_preload_libraries there is no table, and proofs are
//! refused (`record` answers None): a per-backend table would let a proof
//! be replayed through another connection.

use std::ffi::CStr;
use std::sync::atomic::{AtomicPtr, Ordering};

use jwt_rls_core::replay::{
    bytes_for, partition_of, partition_span, slots_in, Outcome, ReplayKey, ReplayTable,
};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;

use crate::pg::region::Region;

/// This part's region of the shared segment: the partitions, one after
/// the other.
pub static REGION: Region = Region::new();

/// Partitions of the table, each under its own lock.
pub const PARTITIONS: usize = 16;

/// The name of the LWLock tranche (as pg_stat_activity's wait_event shows it).
pub const TRANCHE: &CStr = c"jwt_rls_dpop_replay";

/// Slots of the replay table (0: no table, DPoP proofs refused).
static ENTRIES: GucSetting<i32> = GucSetting::<i32>::new(65536);

/// The partitions' locks (PARTITIONS of them), once the segment is attached.
static LOCKS: AtomicPtr<pg_sys::LWLockPadded> = AtomicPtr::new(std::ptr::null_mut());

/// Defines `jwt_rls.dpop_replay_entries`. Called from _PG_init while
/// shared_preload_libraries are loaded, before the segment is sized.
pub fn init() {
    GucRegistry::define_int_guc(
        c"jwt_rls.dpop_replay_entries",
        c"DPoP proofs remembered in shared memory to refuse their replay (0: DPoP proofs are refused).",
        c"Needs jwt_rls in shared_preload_libraries; 40 bytes each; rounded up to a multiple of 128. A proof holds its entry for at most jwt_rls.dpop_max_age + 20 seconds; when every entry a proof may use is held, proofs are refused.",
        &ENTRIES,
        0,
        4 * 1024 * 1024,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

/// Bytes the table needs: whole sets in every partition.
pub fn shared_bytes() -> usize {
    let slots = ENTRIES.get().max(0) as usize;
    if slots == 0 {
        return 0;
    }
    PARTITIONS * bytes_for(slots.div_ceil(PARTITIONS))
}

/// Locks to request with the segment: one per partition, none without a
/// table.
pub fn locks_wanted() -> usize {
    if shared_bytes() == 0 {
        0
    } else {
        PARTITIONS
    }
}

/// Called by the layout alone, with the tranche's first lock, when the
/// segment is attached.
pub fn attach_locks(locks: *mut pg_sys::LWLockPadded) {
    LOCKS.store(locks, Ordering::Release);
}

/// Slots of the table as attached (0 without one).
pub fn slots() -> usize {
    slots_in(REGION.len() / PARTITIONS) * PARTITIONS
}

/// Records `key` until `expires` unless it is recorded and unexpired at
/// `now`; None when there is no table (not preloaded, or sized 0).
pub fn record(key: &ReplayKey, expires: i64, now: i64) -> Option<Outcome> {
    let base = REGION.base()?;
    let locks = LOCKS.load(Ordering::Acquire);
    if locks.is_null() || REGION.len() < PARTITIONS {
        return None;
    }
    let partition = partition_of(key, PARTITIONS);
    let span = partition_span(REGION.len(), PARTITIONS, partition);
    // SAFETY: the tranche has PARTITIONS locks and `partition` is below
    // it; the span lies inside the region (partition_span splits the
    // region's length). The partition's bytes are only read or written
    // while its lock is held exclusively, so the mutable slice is the only
    // access to them until the release; the insertion cannot raise, and if
    // it panicked the abort would release the lock (LWLockReleaseAll).
    unsafe {
        let lock = &raw mut (*locks.add(partition)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let bytes = std::slice::from_raw_parts_mut(base.add(span.start), span.len());
        let outcome = ReplayTable::from_bytes(bytes).insert_if_new(key, expires, now);
        pg_sys::LWLockRelease(lock);
        Some(outcome)
    }
}

/// Entries in use at `now` and slots in all (for stats()); (0, 0) without
/// a table.
pub fn usage(now: i64) -> (usize, usize) {
    let (Some(base), locks) = (REGION.base(), LOCKS.load(Ordering::Acquire)) else {
        return (0, 0);
    };
    if locks.is_null() || REGION.len() < PARTITIONS {
        return (0, 0);
    }
    let mut live = 0;
    for partition in 0..PARTITIONS {
        let span = partition_span(REGION.len(), PARTITIONS, partition);
        // SAFETY: as in record, with the lock held shared: nobody writes
        // the partition while the shared slice is read.
        unsafe {
            let lock = &raw mut (*locks.add(partition)).lock;
            pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED);
            let bytes = std::slice::from_raw_parts(base.add(span.start), span.len());
            live += ReplayTable::from_bytes(bytes).count_live(now);
            pg_sys::LWLockRelease(lock);
        }
    }
    (live, slots())
}
