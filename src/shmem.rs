//! The layout of jwt_rls's shared memory segment (with
//! shared_preload_libraries): the one place that knows every part that
//! lives there. It asks each part how many bytes it needs, reserves their
//! sum, and hands each part its region (`pg::region::Region`) when the
//! segment is attached, as Postgres's own CreateSharedMemoryAndSemaphores
//! does for its subsystems. The parts never import this module.
//!
//! Without preloading there is no segment: every region stays empty and
//! each part falls back to per-backend behaviour.

use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::dpop::replay;
use crate::keys::jwks_worker;
use crate::oauth::snapshot as oauth_snapshot;
use crate::pg::region::Region;
use crate::shared::{cache, counters};

#[cfg(not(any(feature = "pg13", feature = "pg14")))]
static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;

/// The parts, in the order they lie in the segment, with the bytes each
/// asks for (read once the postmaster's settings are final).
fn parts() -> [(&'static Region, usize); 7] {
    [
        (&counters::REGION, counters::SHARED_BYTES),
        (&jwks_worker::REGION, jwks_worker::SHARED_BYTES),
        (&cache::REGION, cache::shared_bytes()),
        (&replay::STATE, replay::STATE_BYTES),
        (&replay::SHARES, replay::share_bytes()),
        (&replay::REGION, replay::shared_bytes()),
        (&oauth_snapshot::REGION, oauth_snapshot::shared_bytes()),
    ]
}

/// Asks for the LWLocks of the parts that take them (the DPoP replay
/// table's and its shares' partitions, the OAuth login snapshot's lock),
/// with the segment.
///
/// # Safety
/// Only while shared memory is being sized (the request hook, or _PG_init
/// of a preloaded library before PostgreSQL 15).
unsafe fn request_locks() {
    let n = replay::locks_wanted();
    if n > 0 {
        // SAFETY: see the function's contract; the name is 'static.
        unsafe { pg_sys::RequestNamedLWLockTranche(replay::TRANCHE.as_ptr(), n as i32) };
    }
    let n = oauth_snapshot::locks_wanted();
    if n > 0 {
        // SAFETY: as above.
        unsafe { pg_sys::RequestNamedLWLockTranche(oauth_snapshot::TRANCHE.as_ptr(), n as i32) };
    }
}

/// Each part starts on a cache line of its own (ShmemInitStruct's
/// allocation is cache-line aligned), so parts never share one.
const ALIGN: usize = 64;

fn size() -> usize {
    parts()
        .iter()
        .map(|(_, bytes)| bytes.next_multiple_of(ALIGN))
        .sum()
}

/// Reserves the segment. Called from _PG_init while shared_preload_libraries
/// are loaded (the only time shared memory can be requested), after the
/// parts have defined the settings their sizes depend on.
pub fn init() {
    // SAFETY: _PG_init runs once, in the postmaster, before any backend
    // exists; hooks are chained to whatever was installed before.
    unsafe {
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        {
            PREV_REQUEST = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(request);
        }
        // Before 15 there is no request hook: libraries ask from _PG_init.
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        {
            pg_sys::RequestAddinShmemSpace(size());
            request_locks();
        }
        PREV_STARTUP = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(startup);
    }
}

#[cfg(not(any(feature = "pg13", feature = "pg14")))]
#[pg_guard]
unsafe extern "C-unwind" fn request() {
    // SAFETY: called by the postmaster once, while shared memory is sized.
    unsafe {
        if let Some(prev) = PREV_REQUEST {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(size());
        request_locks();
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn startup() {
    // SAFETY: called when shared memory is created (postmaster start and
    // every crash restart); AddinShmemInitLock serialises initialisation
    // among the libraries doing it; a segment not found yet is zeroed,
    // which is the empty state of every part. Each region lies inside the
    // segment: offsets add up to at most size().
    unsafe {
        if let Some(prev) = PREV_STARTUP {
            prev();
        }
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock;
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let mut found = false;
        let p = pg_sys::ShmemInitStruct(c"jwt_rls".as_ptr(), size(), &mut found) as *mut u8;
        if !found {
            std::ptr::write_bytes(p, 0, size());
        }
        pg_sys::LWLockRelease(lock);
        let mut offset = 0;
        for (region, bytes) in parts() {
            region.attach(p.add(offset), bytes);
            offset += bytes.next_multiple_of(ALIGN);
        }
        if replay::locks_wanted() > 0 {
            replay::attach_locks(pg_sys::GetNamedLWLockTranche(replay::TRANCHE.as_ptr()));
        }
        if oauth_snapshot::locks_wanted() > 0 {
            oauth_snapshot::attach_locks(pg_sys::GetNamedLWLockTranche(
                oauth_snapshot::TRANCHE.as_ptr(),
            ));
        }
        if !found {
            // A new segment: the replay table is empty from now on.
            replay::new_segment(crate::pg::clock::wall_seconds());
        }
    }
}
