//! The error types of the core, and what every message shares.
//!
//! Every variant maps to a SQLSTATE class in the extension (`Error::class`),
//! and no message ever contains the token or any attacker-chosen string that
//! has not passed `shown()`.
//!
//! Here: `Class`, `Part`, `Result` and `shown`. The types and their texts
//! are in the files below, one concern each:
//! - `token`: `Error`, every way a token is refused;
//! - `key`: `KeyError`, every way a key is refused;
//! - `dpop`: `DpopError`, every way a DPoP proof (RFC 9449) is refused;
//! - `token_messages`, `key_messages`, `dpop_messages`: their class,
//!   message and detail texts, pinned by the tests beside them.
//!
//! This folder uses only the leaves `alg` and `limits` (for the names and
//! numbers its messages state), never a module that raises errors: those
//! all import `error`, and importing one back would tie the crate into a
//! circle where no module can be read without all the others.

use std::fmt;

mod dpop;
mod dpop_messages;
mod key;
mod key_messages;
mod token;
mod token_messages;

pub use dpop::DpopError;
pub use key::KeyError;
pub use token::Error;

/// Which SQLSTATE family an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The input is not a well-formed JWS compact token (SQLSTATE 22023).
    Malformed,
    /// The token is well formed but not acceptable (SQLSTATE 28000).
    Rejected,
    /// A key given to the key store is unusable (SQLSTATE 22023).
    BadKey,
}

/// Which part of the token an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Header,
    Payload,
    Signature,
    /// The JWE segments (RFC 7516 section 7.1) after the header.
    EncryptedKey,
    Iv,
    Ciphertext,
    Tag,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "header",
            Part::Payload => "payload",
            Part::Signature => "signature",
            Part::EncryptedKey => "encrypted key",
            Part::Iv => "iv",
            Part::Ciphertext => "ciphertext",
            Part::Tag => "tag",
        })
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Quotes an attacker-chosen string for a message only when it is short and
/// made of harmless characters; anything else is replaced, so that messages
/// and logs can never carry token material, control characters or SQL.
pub fn shown(s: &str) -> String {
    let harmless = |c: char| c.is_ascii_alphanumeric() || "-_.:+@".contains(c);
    if !s.is_empty() && s.len() <= 64 && s.chars().all(harmless) {
        format!("\"{s}\"")
    } else {
        "(not shown)".into()
    }
}
