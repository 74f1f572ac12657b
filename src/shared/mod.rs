//! What every backend of the server shares when jwt_rls is in
//! shared_preload_libraries: the counters (`counters`) and the verification
//! cache (`cache`). Each part owns a `pg::region::Region` and declares its
//! size; the layout (`crate::shmem`) places them. Without preloading both
//! fall back to per-backend behaviour.
//!
//! Uses `pg` only: what is cached here is decided by `verification`.

pub mod cache;
pub mod counters;
