//! Row level security helpers written in SQL: `jwt_rls.isolate()` protects
//! a table with the recommended policies in one call, and `jwt_rls.audit()`
//! lists what leaves tenant rows unprotected. Both are PL/pgSQL over the
//! catalogs (`isolation.sql` beside this file); nothing here needs Rust.

use pgrx::prelude::*;

extension_sql_file!(
    "isolation.sql",
    name = "isolation",
    requires = ["jwt_claim", "privileges"]
);
