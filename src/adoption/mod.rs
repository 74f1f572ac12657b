//! Helpers for teams moving to jwt_rls: PostgREST and Supabase names for
//! the verified claims (`compat`: `request.jwt.claims`, `auth.uid()`,
//! opt-in), and the row level security helpers `isolate()` and `audit()`
//! (`isolation`, written in SQL in `isolation.sql`).
//!
//! Uses binding, settings and `pg`; nothing uses it.

pub mod compat;
pub mod isolation;
