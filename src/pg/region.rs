//! A part's region of jwt_rls's shared memory segment.
//!
//! Each part that keeps state in shared memory (the counters, the JWKS
//! worker's wake-up state, the shared verification cache) owns a `Region`
//! and says how many bytes it needs; the layout (`crate::shmem`) sizes the
//! segment from those numbers and hands each region its place. A part
//! reads only its own region and never the layout, so adding a part or
//! resizing one touches that part and one line of the layout.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Where a part's bytes lie in the segment; empty until the layout
/// attaches it (always, without shared_preload_libraries).
pub struct Region {
    base: AtomicPtr<u8>,
    len: AtomicUsize,
}

impl Region {
    pub const fn new() -> Region {
        Region {
            base: AtomicPtr::new(std::ptr::null_mut()),
            len: AtomicUsize::new(0),
        }
    }

    /// The region's first byte (64-byte aligned, zeroed when the segment
    /// was created), once attached; None without shared_preload_libraries.
    pub fn base(&self) -> Option<*mut u8> {
        let p = self.base.load(Ordering::Acquire);
        (!p.is_null()).then_some(p)
    }

    /// Bytes the layout gave this region (0 until attached).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Called by the layout alone, when the segment is attached (postmaster
    /// start and every crash restart; backends inherit it when forked).
    pub fn attach(&self, base: *mut u8, len: usize) {
        self.len.store(len, Ordering::Release);
        self.base.store(base, Ordering::Release);
    }
}
