//! The key store as logins see it: one encoded `jwt_rls_core::login::Snapshot`
//! in shared memory, written by the publisher worker and read by the
//! validator in every connecting backend.
//!
//! One LWLock guards the bytes: the worker holds it exclusively while it
//! copies a new snapshot in (a memcpy of at most
//! `jwt_rls.oauth_snapshot_size`), a login holds it shared while it copies
//! the snapshot out, and decodes its copy after releasing it. Beside the
//! bytes, the worker stamps each look at the tables (`checked_at`), so a
//! login can tell a current snapshot from one a stopped worker left behind.

use std::ffi::CStr;
use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU32, Ordering};

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;

use crate::pg::region::Region;

/// The LWLock tranche of the snapshot's lock.
pub const TRANCHE: &CStr = c"jwt_rls_oauth_snapshot";

/// Kilobytes the encoded snapshot may take.
static SIZE_KB: GucSetting<i32> = GucSetting::<i32>::new(1024);

/// This part's region of the shared segment.
pub static REGION: Region = Region::new();

static LOCK: AtomicPtr<pg_sys::LWLockPadded> = AtomicPtr::new(std::ptr::null_mut());

/// What the region holds, before the bytes.
#[repr(C)]
struct Header {
    /// Unix seconds of the worker's last look at the tables; 0 before it.
    checked_at: AtomicI64,
    /// 0: nothing yet; 1: a snapshot of `len` bytes; 2: the last snapshot
    /// did not fit (logins are refused until one does).
    state: AtomicU32,
    len: AtomicU32,
}

const HEADER_BYTES: usize = 64;
const _: () = assert!(std::mem::size_of::<Header>() <= HEADER_BYTES);

const READY: u32 = 1;
const TOO_LARGE: u32 = 2;

/// Defines the size setting; called from _PG_init while preloading, when
/// a login database is named.
pub fn init() {
    GucRegistry::define_int_guc(
        c"jwt_rls.oauth_snapshot_size",
        c"Shared memory for the key store copy that OAuth logins check tokens against.",
        c"Keys, revocation lists and settings of jwt_rls.oauth_database; logins are refused while they do not fit.",
        &SIZE_KB,
        64,
        1024 * 1024,
        GucContext::Postmaster,
        GucFlags::UNIT_KB,
    );
}

/// Bytes this part asks of the shared segment (0 without a login database).
pub fn shared_bytes() -> usize {
    if super::database().is_none() {
        return 0;
    }
    HEADER_BYTES + SIZE_KB.get() as usize * 1024
}

/// LWLocks this part asks for.
pub fn locks_wanted() -> usize {
    usize::from(shared_bytes() > 0)
}

/// Called by the layout with the tranche's locks.
pub fn attach_locks(locks: *mut pg_sys::LWLockPadded) {
    LOCK.store(locks, Ordering::Release);
}

struct Parts {
    header: &'static Header,
    bytes: *mut u8,
    capacity: usize,
    lock: *mut pg_sys::LWLock,
}

fn parts() -> Option<Parts> {
    let base = REGION.base()?;
    let lock = LOCK.load(Ordering::Acquire);
    if lock.is_null() || REGION.len() <= HEADER_BYTES {
        return None;
    }
    // SAFETY: the region is REGION.len() bytes of zeroed, 64-byte aligned
    // shared memory for as long as the server runs; all-zero is a valid
    // Header (atomics), and the bytes after HEADER_BYTES are the buffer.
    // The lock is the tranche's one LWLock, in shared memory.
    Some(unsafe {
        Parts {
            header: &*(base as *const Header),
            bytes: base.add(HEADER_BYTES),
            capacity: REGION.len() - HEADER_BYTES,
            lock: &raw mut (*lock).lock,
        }
    })
}

/// Whether this server has the region (jwt_rls preloaded, a login database
/// named).
pub fn available() -> bool {
    parts().is_some()
}

/// The worker: records that it looked at the tables at `now`.
pub fn checked(now: i64) {
    if let Some(p) = parts() {
        p.header.checked_at.store(now, Ordering::Release);
    }
}

/// The worker: replaces the snapshot; false when it does not fit (logins
/// are refused from now until one does).
pub fn publish(encoded: &[u8], now: i64) -> bool {
    let Some(p) = parts() else { return false };
    let fits = encoded.len() <= p.capacity && encoded.len() <= u32::MAX as usize;
    // SAFETY: the lock is an initialised LWLock in shared memory; the
    // buffer is `capacity` bytes, written only under the lock held
    // exclusively, and `encoded` fits (checked). An error cannot be raised
    // between acquire and release.
    unsafe {
        pg_sys::LWLockAcquire(p.lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        if fits {
            std::ptr::copy_nonoverlapping(encoded.as_ptr(), p.bytes, encoded.len());
            p.header.len.store(encoded.len() as u32, Ordering::Relaxed);
            p.header.state.store(READY, Ordering::Relaxed);
        } else {
            p.header.state.store(TOO_LARGE, Ordering::Relaxed);
        }
        pg_sys::LWLockRelease(p.lock);
    }
    p.header.checked_at.store(now, Ordering::Release);
    fits
}

/// What a login finds.
pub enum Found {
    /// The encoded snapshot, and when the worker last looked.
    Snapshot(Vec<u8>, i64),
    /// The worker has not written one yet (or this server has no region).
    Nothing,
    /// The last snapshot did not fit in `jwt_rls.oauth_snapshot_size`.
    TooLarge,
}

/// A copy of the snapshot, taken under the lock.
pub fn read() -> Found {
    let Some(p) = parts() else {
        return Found::Nothing;
    };
    let checked_at = p.header.checked_at.load(Ordering::Acquire);
    // SAFETY: as in publish(); the lock held shared keeps the writer out
    // while `len` bytes (never more than the capacity) are copied out.
    unsafe {
        pg_sys::LWLockAcquire(p.lock, pg_sys::LWLockMode::LW_SHARED);
        let found = match p.header.state.load(Ordering::Relaxed) {
            READY => {
                let len = (p.header.len.load(Ordering::Relaxed) as usize).min(p.capacity);
                Found::Snapshot(
                    std::slice::from_raw_parts(p.bytes, len).to_vec(),
                    checked_at,
                )
            }
            TOO_LARGE => Found::TooLarge,
            _ => Found::Nothing,
        };
        pg_sys::LWLockRelease(p.lock);
        found
    }
}

/// The configured size, for messages.
pub fn size_kb() -> i32 {
    SIZE_KB.get()
}
