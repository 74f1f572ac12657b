//! Glue to Postgres that knows nothing of tokens: core errors as Postgres
//! errors (`errors`), the C calling convention (`fmgr`), the statement
//! clock (`clock`), reading the extension's tables as their owner and
//! noticing their changes (`catalog`), and a part's region of shared
//! memory (`region`).
//!
//! Everything else may use this folder; it uses nothing of the crate
//! outside itself.

pub mod catalog;
pub mod clock;
pub mod errors;
pub mod fmgr;
pub mod region;
