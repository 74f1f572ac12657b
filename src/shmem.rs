//! The shared memory jwt_rls reserves when it is in
//! shared_preload_libraries: one segment holding the server-wide counters
//! (`counters.rs`), the JWKS worker's wake-up state (`jwks_worker.rs`) and
//! the shared verification cache (`shared_cache.rs`), in that order.
//! Without preloading there is none, and both fall back to per-backend
//! behaviour.

use std::sync::atomic::{AtomicPtr, Ordering};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;
use pgrx::prelude::*;

use crate::{counters, jwks_worker, shared_cache};

/// Slots of the shared verification cache (0 turns it off).
static SHARED_CACHE_ENTRIES: GucSetting<i32> = GucSetting::<i32>::new(4096);

/// The segment, once attached; null without shared_preload_libraries.
static BASE: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());

#[cfg(not(any(feature = "pg13", feature = "pg14")))]
static mut PREV_REQUEST: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP: pg_sys::shmem_startup_hook_type = None;

/// Slots of the shared cache this server was started with.
pub fn cache_slots() -> usize {
    shared_cache::slots_for(SHARED_CACHE_ENTRIES.get().max(0) as usize)
}

fn size() -> usize {
    counters::SHARED_BYTES + jwks_worker::SHARED_BYTES + shared_cache::bytes_for(cache_slots())
}

/// The segment: counters first, then the cache; None without preloading.
pub fn base() -> Option<*mut u8> {
    let p = BASE.load(Ordering::Acquire);
    (!p.is_null()).then_some(p)
}

/// Reserves the segment. Called from _PG_init while shared_preload_libraries
/// are loaded (the only time shared memory can be requested).
pub fn init() {
    GucRegistry::define_int_guc(
        c"jwt_rls.shared_cache_entries",
        c"Verified tokens kept in shared memory for every backend (0 turns the shared cache off).",
        c"Needs jwt_rls in shared_preload_libraries; each entry takes about 2.2 kB; rounded down to a multiple of 16.",
        &SHARED_CACHE_ENTRIES,
        0,
        1_000_000,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    // SAFETY: _PG_init runs once, in the postmaster, before any backend
    // exists; hooks are chained to whatever was installed before.
    unsafe {
        #[cfg(not(any(feature = "pg13", feature = "pg14")))]
        {
            PREV_REQUEST = pg_sys::shmem_request_hook;
            pg_sys::shmem_request_hook = Some(request);
        }
        #[cfg(any(feature = "pg13", feature = "pg14"))]
        pg_sys::RequestAddinShmemSpace(size());
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
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn startup() {
    // SAFETY: called when shared memory is created (postmaster start and
    // every crash restart); AddinShmemInitLock serialises initialisation
    // among the libraries doing it; a segment not found yet is zeroed,
    // which is the empty state of counters and cache alike.
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
        BASE.store(p, Ordering::Release);
    }
}
