//! Binding a token and reading its claims: the `jwt_rls.token` setting and
//! what it verifies to now (`token`), the SQL surface applications and
//! policies call (`claims`: authenticate(), jwt_claim(), jwt_claims(),
//! user_id(), tenant_id()), the role a claim names (`roles`), and
//! `introspect()` for services that ask (`introspection`).
//!
//! Uses verification, the revocation lists (lifecycle), settings, shared
//! memory's counters and `pg`; only adoption and diagnostics use it.

pub mod claims;
pub mod introspection;
pub mod roles;
pub mod token;
