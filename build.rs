//! Records the commit the extension is built from, for `jwt_rls.build_info()`,
//! and from PostgreSQL 18 on compiles `src/oauth/hba.c` (the OAuth
//! validator's reader of the pg_hba line) against that server's headers.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The major being built for, from the pgNN feature cargo-pgrx enables.
fn major() -> Option<u32> {
    (13..=30).find(|m| std::env::var_os(format!("CARGO_FEATURE_PG{m}")).is_some())
}

/// Compiles the C shim of the OAuth validator (PostgreSQL 18 and later),
/// with the include directory of the pg_config pgrx builds against.
fn compile_hba_shim(major: u32) {
    let label = format!("pg{major}");
    let config = pgrx_pg_config::Pgrx::from_config()
        .and_then(|p| p.get(&label))
        .unwrap_or_else(|e| panic!("no pg_config for {label}: {e}"));
    let include = config
        .includedir_server()
        .unwrap_or_else(|e| panic!("pg_config --includedir-server for {label}: {e}"));
    cc::Build::new()
        .file("src/oauth/hba.c")
        .include(include)
        .warnings(true)
        .compile("jwt_rls_hba");
    println!("cargo:rerun-if-env-changed=PGRX_PG_CONFIG_PATH");
}

fn main() {
    if let Some(major) = major().filter(|m| *m >= 18) {
        compile_hba_shim(major);
    }
    let commit = match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(c) => {
            let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty {
                format!("{c}-dirty")
            } else {
                c
            }
        }
        None => "unknown".into(),
    };
    println!("cargo:rustc-env=JWT_RLS_GIT_COMMIT={commit}");
    // Rebuild when HEAD moves or the sources change (which can make the
    // tree dirty); the paths git reports work in worktrees too.
    for path in ["HEAD", "index"] {
        if let Some(p) = git(&["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(r) = git(&["symbolic-ref", "-q", "HEAD"]) {
        if let Some(p) = git(&["rev-parse", "--git-path", &r]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    for path in ["src", "core/src", "Cargo.toml", "build.rs"] {
        println!("cargo:rerun-if-changed={path}");
    }
}
