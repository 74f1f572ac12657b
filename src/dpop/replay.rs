//! The DPoP replay table in shared memory: one table for every backend of
//! the server, so that a proof accepted through one connection is refused
//! through any other (RFC 9449 section 11.1); beside it, each proof key's
//! share of it (`jwt_rls_core::replay_quota`), so that one key sending
//! fresh proofs at full speed cannot have every other key's proofs refused;
//! and the moment the table began recording, so that a proof it may have
//! forgotten is refused.
//!
//! The tables themselves are plain bytes with no pointers; this module
//! gives them regions of jwt_rls's shared segment and splits each into
//! `PARTITIONS` partitions, each under an LWLock of its own (a tranche of
//! 2 x PARTITIONS locks: the shares' first, then the replay table's), so
//! that concurrent binds rarely wait on each other. A proof takes its key's
//! share lock, then its replay partition's lock, always in that order (no
//! deadlock), and holds the first while the second is taken so that no
//! other proof of the key is counted in between. Each reads at most 16
//! slots under its lock.
//!
//! What survives what: the tables are in shared memory, so they outlive
//! every backend and are lost when the server restarts (or after a crash,
//! when the postmaster makes a new segment). What was lost cannot be
//! checked, so a proof made before the new table began recording (plus
//! the MAX_AHEAD seconds an `iat` may lie ahead) is refused
//! (`accepted_from`). A standby's table holds only the proofs it accepted
//! itself; when it is promoted, the primary's are not there, so the first
//! proof checked after the promotion starts recording anew.
//!
//! Without shared_preload_libraries there is no table, and proofs are
//! refused (`record` answers None): a per-backend table would let a proof
//! be replayed through another connection.

use std::ffi::CStr;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU32, Ordering};

use jwt_rls_core::replay::{self as table, ReplayKey, ReplayTable};
use jwt_rls_core::replay_quota::{self as shares, OwnerKey, Share, ShareTable};
use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;

use crate::pg::region::Region;

/// The replay table's region: its partitions, one after the other.
pub static REGION: Region = Region::new();
/// The shares' region: as many slots as the replay table, partitioned
/// alike (an owner with a live proof holds one slot, so the shares never
/// run out before the table does).
pub static SHARES: Region = Region::new();
/// Since when the table records (`State`).
pub static STATE: Region = Region::new();

/// Partitions of each table, each under its own lock.
pub const PARTITIONS: usize = 16;

/// The name of the LWLock tranche (as pg_stat_activity's wait_event shows it).
pub const TRANCHE: &CStr = c"jwt_rls_dpop_replay";

/// Slots of the replay table (0: no table, DPoP proofs refused).
static ENTRIES: GucSetting<i32> = GucSetting::<i32>::new(65536);

/// Proofs one key may hold in the table at once.
static PER_KEY: GucSetting<i32> = GucSetting::<i32>::new(1024);

/// The locks (2 x PARTITIONS of them), once the segment is attached.
static LOCKS: AtomicPtr<pg_sys::LWLockPadded> = AtomicPtr::new(std::ptr::null_mut());

/// The state region's contents: Unix seconds since which the table has
/// recorded every accepted proof, and whether the server started as a
/// standby (or in targeted recovery) and has not been seen promoted yet.
#[repr(C)]
struct State {
    since: AtomicI64,
    awaiting_promotion: AtomicU32,
}

/// Bytes of the state region.
pub const STATE_BYTES: usize = 64;
const _: () = assert!(std::mem::size_of::<State>() <= STATE_BYTES);

/// Defines `jwt_rls.dpop_replay_entries` and `jwt_rls.dpop_proofs_per_key`.
/// Called from _PG_init while shared_preload_libraries are loaded, before
/// the segment is sized.
pub fn init() {
    GucRegistry::define_int_guc(
        c"jwt_rls.dpop_replay_entries",
        c"DPoP proofs remembered in shared memory to refuse their replay (0: DPoP proofs are refused).",
        c"Needs jwt_rls in shared_preload_libraries; 96 bytes each (40 in the table, 56 for the per-key shares); rounded up to a multiple of 128. A proof holds its entry for at most jwt_rls.dpop_max_age + 20 seconds; when every entry a proof may use is held, proofs are refused.",
        &ENTRIES,
        0,
        4 * 1024 * 1024,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    // Server-wide (reload), like the table it divides.
    GucRegistry::define_int_guc(
        c"jwt_rls.dpop_proofs_per_key",
        c"DPoP proofs of one key the replay table holds at once; further proofs of that key are refused until older ones leave their window.",
        c"A key sending on average fewer than this / (2 x (jwt_rls.dpop_max_age + 21)) proofs per second is never refused; other keys are not affected by one key's flood.",
        &PER_KEY,
        1,
        4 * 1024 * 1024,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

/// The per-key limit now in force.
pub fn per_key() -> u32 {
    PER_KEY.get().max(1) as u32
}

fn configured_slots() -> usize {
    ENTRIES.get().max(0) as usize
}

/// Bytes the table needs: whole sets in every partition.
pub fn shared_bytes() -> usize {
    match configured_slots() {
        0 => 0,
        slots => PARTITIONS * table::bytes_for(slots.div_ceil(PARTITIONS)),
    }
}

/// Bytes the shares need: as many slots as the table.
pub fn share_bytes() -> usize {
    match configured_slots() {
        0 => 0,
        slots => PARTITIONS * shares::bytes_for(slots.div_ceil(PARTITIONS)),
    }
}

/// Locks to request with the segment: two per partition, none without a
/// table.
pub fn locks_wanted() -> usize {
    if shared_bytes() == 0 {
        0
    } else {
        2 * PARTITIONS
    }
}

/// Called by the layout alone, with the tranche's first lock, when the
/// segment is attached.
pub fn attach_locks(locks: *mut pg_sys::LWLockPadded) {
    LOCKS.store(locks, Ordering::Release);
}

fn state() -> Option<&'static State> {
    let base = STATE.base()?;
    (STATE.len() >= STATE_BYTES).then(|| {
        // SAFETY: the region is STATE_BYTES of memory reserved for State,
        // 64-byte aligned and zeroed when the segment was made, for as long
        // as the server runs; State holds only atomics, which any process
        // may read and write at the same time.
        unsafe { &*(base as *const State) }
    })
}

/// Called by the layout alone, in the postmaster, when it has made a new
/// segment (server start, or the restart after a crash): the table is
/// empty, so it records from now; a server starting as a standby or in
/// targeted recovery (standby.signal or recovery.signal in its data
/// directory) will record anew when it is promoted.
pub fn new_segment(now: i64) {
    let Some(state) = state() else { return };
    state.since.store(now, Ordering::SeqCst);
    let recovering = ["standby.signal", "recovery.signal"]
        .iter()
        .any(|name| data_dir().is_some_and(|dir| dir.join(name).exists()));
    state
        .awaiting_promotion
        .store(u32::from(recovering), Ordering::SeqCst);
}

fn data_dir() -> Option<std::path::PathBuf> {
    // SAFETY: DataDir is set before shared memory is made and never
    // changes afterwards; it is NULL or a NUL-terminated string.
    let dir = unsafe { pg_sys::DataDir };
    if dir.is_null() {
        return None;
    }
    // SAFETY: as above, a valid NUL-terminated string.
    let dir = unsafe { CStr::from_ptr(dir) };
    Some(std::path::PathBuf::from(dir.to_string_lossy().into_owned()))
}

/// Unix seconds since which the table has recorded every accepted proof
/// (None without a table). On a server that started in recovery, the first
/// call after it is promoted moves that moment to `now`: the old primary's
/// proofs were never in this table.
pub fn recording_since(now: i64) -> Option<i64> {
    let state = state()?;
    if state.awaiting_promotion.load(Ordering::SeqCst) != 0 {
        // SAFETY: RecoveryInProgress takes no arguments and only reads
        // shared state (it may update a backend-local cache of it).
        let in_recovery = unsafe { pg_sys::RecoveryInProgress() };
        if !in_recovery {
            // The moment first, then the flag: whoever sees the flag
            // cleared also sees the new moment.
            state.since.fetch_max(now, Ordering::SeqCst);
            state.awaiting_promotion.store(0, Ordering::SeqCst);
        }
    }
    Some(state.since.load(Ordering::SeqCst))
}

/// Slots of the table as attached (0 without one).
pub fn slots() -> usize {
    table::slots_in(REGION.len() / PARTITIONS) * PARTITIONS
}

/// Records `key` (a proof of the key whose share is `owner`) until
/// `expires` unless it is recorded and unexpired at `now`, or the key
/// holds `per_key()` proofs already; None when there is no table (not
/// preloaded, or sized 0).
pub fn record(owner: &OwnerKey, key: &ReplayKey, expires: i64, now: i64) -> Option<Share> {
    let (base, share_base) = (REGION.base()?, SHARES.base()?);
    let locks = LOCKS.load(Ordering::Acquire);
    if locks.is_null() || REGION.len() < PARTITIONS || SHARES.len() < PARTITIONS {
        return None;
    }
    let share_partition = shares::partition_of(owner, PARTITIONS);
    let share_span = shares::partition_span(SHARES.len(), PARTITIONS, share_partition);
    let partition = table::partition_of(key, PARTITIONS);
    let span = table::partition_span(REGION.len(), PARTITIONS, partition);
    let limit = per_key();
    // SAFETY: the tranche has 2 x PARTITIONS locks, the shares' first;
    // both partition indexes are below PARTITIONS; each span lies inside
    // its region (partition_span splits the region's length). A
    // partition's bytes are only read or written while its lock is held
    // exclusively, so each mutable slice is the only access to them until
    // its release; the locks are always taken share first, so two
    // backends never wait on each other in a circle. Nothing in between
    // can raise, and if it panicked the abort would release both locks
    // (LWLockReleaseAll).
    unsafe {
        let share_lock = &raw mut (*locks.add(share_partition)).lock;
        let lock = &raw mut (*locks.add(PARTITIONS + partition)).lock;
        pg_sys::LWLockAcquire(share_lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let share_bytes =
            std::slice::from_raw_parts_mut(share_base.add(share_span.start), share_span.len());
        let share =
            ShareTable::from_bytes(share_bytes).record_within(owner, expires, now, limit, || {
                pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
                let bytes = std::slice::from_raw_parts_mut(base.add(span.start), span.len());
                let outcome = ReplayTable::from_bytes(bytes).insert_if_new(key, expires, now);
                pg_sys::LWLockRelease(lock);
                outcome
            });
        pg_sys::LWLockRelease(share_lock);
        Some(share)
    }
}

/// What stats() shows: entries in use at `now`, slots in all, and keys
/// holding a share; zeros without a table.
pub fn usage(now: i64) -> (usize, usize, usize) {
    let (Some(base), Some(share_base), locks) =
        (REGION.base(), SHARES.base(), LOCKS.load(Ordering::Acquire))
    else {
        return (0, 0, 0);
    };
    if locks.is_null() || REGION.len() < PARTITIONS || SHARES.len() < PARTITIONS {
        return (0, 0, 0);
    }
    let (mut live, mut owners) = (0, 0);
    for partition in 0..PARTITIONS {
        let span = table::partition_span(REGION.len(), PARTITIONS, partition);
        let share_span = shares::partition_span(SHARES.len(), PARTITIONS, partition);
        // SAFETY: as in record, each lock held shared while its partition
        // is read (nobody writes it meanwhile), one lock at a time.
        unsafe {
            let lock = &raw mut (*locks.add(PARTITIONS + partition)).lock;
            pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED);
            let bytes = std::slice::from_raw_parts(base.add(span.start), span.len());
            live += ReplayTable::from_bytes(bytes).count_live(now);
            pg_sys::LWLockRelease(lock);
            let lock = &raw mut (*locks.add(partition)).lock;
            pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_SHARED);
            let bytes =
                std::slice::from_raw_parts(share_base.add(share_span.start), share_span.len());
            owners += ShareTable::from_bytes(bytes).owners(now);
            pg_sys::LWLockRelease(lock);
        }
    }
    (live, slots(), owners)
}
