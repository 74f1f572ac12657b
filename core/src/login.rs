//! Logging in with a token: what PostgreSQL 18's OAuth validator (the
//! SASL mechanism OAUTHBEARER, pg_hba method `oauth`) asks of jwt_rls.
//!
//! The validator runs while the connection authenticates, before the
//! backend has chosen a database, so it cannot read the key table, the
//! revocation lists or the database's settings. A background worker reads
//! them in one database and writes a `Snapshot` into shared memory; the
//! validator checks the token against the snapshot with the same
//! verification as `authenticate()` (`verify`), the same revocation
//! decision (`revocation`), and what the login adds:
//! - the token's `iss` is the issuer the pg_hba line names;
//! - it carries every scope the pg_hba line requires (`scope`, space
//!   separated, or `scp`, a list);
//! - it is not sender-constrained (`cnf`): the SASL exchange carries no
//!   proof of possession, so a DPoP-bound token cannot be proven there;
//! - it names who logs in: the claim `user_claim`, non-empty, becomes the
//!   connection's authenticated identity (`authn_id`, for pg_ident maps).
//!
//! An encrypted (JWE) token is refused: the snapshot carries no
//! decryption keys.
//!
//! Uses `claims`, `error`, `jwe` (to recognise an encrypted token), `keys`,
//! `revocation` and `verify`; nothing uses it.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::claims::Policy;
use crate::error::{shown, Error, Result};
use crate::jwe::is_jwe;
use crate::keys::{Format, Key, KeySet};
use crate::revocation::{self, is_session_id};
use crate::verify::{verify, Verified};

/// Changes whenever the snapshot's encoding does: a snapshot written by
/// another build is not read (it is rewritten within a second).
pub const FORMAT: u32 = 1;

/// A row of the key table, as stored.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub kid: String,
    pub alg: String,
    pub format: String,
    pub material: String,
    pub enabled: bool,
    pub not_before: Option<i64>,
    pub not_after: Option<i64>,
    /// The issuer of the JWKS source the key was fetched from, if any.
    pub issuer: Option<String>,
}

impl KeyRow {
    /// The key this row describes, held to the checks of import.
    pub fn key(&self) -> Result<Key> {
        let mut key = Key::new(
            &self.kid,
            &self.alg,
            Format::from_name(&self.format)?,
            &self.material,
        )?;
        key.enabled = self.enabled;
        key.not_before = self.not_before;
        key.not_after = self.not_after;
        if let Some(issuer) = &self.issuer {
            key.bind_issuer(issuer);
        }
        Ok(key)
    }
}

/// What a login is checked against: one database's keys, revocation lists
/// and validation settings, as of a moment.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub format: u32,
    /// The database the worker read it in.
    pub database: String,
    pub policy: Policy,
    /// The database's `jwt_rls.role_claim`: the claim naming the role a
    /// token may log in as, when pg_hba delegates the role decision.
    pub role_claim: Option<String>,
    pub keys: Vec<KeyRow>,
    /// jtis of revoked tokens not yet expired.
    pub revoked_jtis: Vec<String>,
    /// Revoked sessions (refresh-token families), as lower-case uuids.
    pub revoked_sessions: Vec<String>,
    /// Subjects whose tokens issued before a moment (microseconds since
    /// the Unix epoch) are revoked.
    pub revoked_subjects: Vec<(String, i64)>,
}

impl Snapshot {
    pub fn new(database: &str, policy: Policy) -> Snapshot {
        Snapshot {
            format: FORMAT,
            database: database.to_string(),
            policy,
            role_claim: None,
            keys: Vec::new(),
            revoked_jtis: Vec::new(),
            revoked_sessions: Vec::new(),
            revoked_subjects: Vec::new(),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a snapshot is always serialisable")
    }

    /// The snapshot `bytes` encode, if this build wrote them.
    pub fn decode(bytes: &[u8]) -> Option<Snapshot> {
        serde_json::from_slice::<Snapshot>(bytes)
            .ok()
            .filter(|s| s.format == FORMAT)
    }

    /// Ready for checking tokens: keys parsed (rows that fail the import
    /// checks are left out, as the key table's reader leaves them out),
    /// lists indexed.
    pub fn prepare(self) -> Prepared {
        let keys = KeySet::new(self.keys.iter().filter_map(|r| r.key().ok()).collect());
        Prepared {
            database: self.database,
            policy: self.policy,
            role_claim: self.role_claim,
            keys,
            jtis: self.revoked_jtis.into_iter().collect(),
            sessions: self.revoked_sessions.into_iter().collect(),
            subjects: self.revoked_subjects.into_iter().collect(),
        }
    }
}

/// A snapshot ready for checking tokens.
pub struct Prepared {
    pub database: String,
    pub policy: Policy,
    pub role_claim: Option<String>,
    keys: KeySet,
    jtis: HashSet<String>,
    sessions: HashSet<String>,
    subjects: HashMap<String, i64>,
}

impl revocation::Lists for Prepared {
    fn has_tokens(&self) -> bool {
        !self.jtis.is_empty()
    }
    fn has_sessions(&self) -> bool {
        !self.sessions.is_empty()
    }
    fn has_subjects(&self) -> bool {
        !self.subjects.is_empty()
    }
    fn jti_revoked(&self, jti: &str) -> bool {
        self.jtis.contains(jti)
    }
    fn session_revoked(&self, sid: &str) -> bool {
        is_session_id(sid) && self.sessions.contains(&sid.to_ascii_lowercase())
    }
    fn subject_cutoff(&self, sub: &str) -> Option<i64> {
        self.subjects.get(sub).copied()
    }
}

/// What the pg_hba line and the server's settings ask of a login.
pub struct Login<'a> {
    /// The line's `issuer`: the token's `iss` must be exactly this.
    pub issuer: &'a str,
    /// The line's `scope`: space-separated scopes the token must carry.
    pub scopes: &'a str,
    /// The claim that names who logs in.
    pub user_claim: &'a str,
}

/// A token that may log in, and who it says is logging in.
#[derive(Debug)]
pub struct Admitted {
    pub verified: Verified,
    pub authn_id: String,
}

/// Why a token may not log in. The texts name claims and settings, never
/// the token, and quote a claim's value only through `shown()`.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    /// The token fails verification or is revoked.
    Token(Error),
    /// An encrypted token (the snapshot has no decryption keys).
    Encrypted,
    /// `iss` is not the pg_hba line's issuer.
    Issuer { expected: String },
    /// A scope the pg_hba line requires is missing.
    Scope(String),
    /// The token carries `cnf`: it may be used only with a proof of
    /// possession, which the SASL exchange cannot carry.
    SenderConstrained,
    /// The identity claim is missing, empty or not a string or number.
    NoIdentity(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Token(e) => write!(f, "{e}"),
            Refusal::Encrypted => f.write_str("encrypted tokens (JWE) cannot be used to log in"),
            Refusal::Issuer { expected } => write!(
                f,
                "token was not issued by the issuer this pg_hba line trusts ({})",
                shown(expected)
            ),
            Refusal::Scope(scope) => write!(f, "token lacks the scope {}", shown(scope)),
            Refusal::SenderConstrained => f.write_str(
                "token is bound to a key (cnf) and cannot be proven in the login exchange",
            ),
            Refusal::NoIdentity(claim) => {
                write!(f, "token has no {} claim to log in as", shown(claim))
            }
        }
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Refusal {
        Refusal::Token(e)
    }
}

impl Prepared {
    /// Checks `token` for logging in at `now` (Unix seconds).
    pub fn admit(
        &self,
        token: &str,
        login: &Login,
        now: i64,
    ) -> std::result::Result<Admitted, Refusal> {
        if token.len() <= self.policy.max_bytes && is_jwe(token) {
            return Err(Refusal::Encrypted);
        }
        let verified = verify(token, &self.keys, &self.policy, now)?;
        revocation::check(&verified, self)?;
        if verified.claim("iss").as_deref() != Some(login.issuer) {
            return Err(Refusal::Issuer {
                expected: login.issuer.to_string(),
            });
        }
        let granted = granted_scopes(&verified);
        if let Some(missing) = login
            .scopes
            .split(' ')
            .filter(|s| !s.is_empty())
            .find(|s| !granted.contains(*s))
        {
            return Err(Refusal::Scope(missing.to_string()));
        }
        if verified
            .claims()
            .get(&verified.payload, "cnf")
            .is_some_and(|cnf| cnf != "null")
        {
            return Err(Refusal::SenderConstrained);
        }
        let authn_id = verified
            .claims()
            .get(&verified.payload, login.user_claim)
            .and_then(identity)
            .ok_or_else(|| Refusal::NoIdentity(login.user_claim.to_string()))?;
        Ok(Admitted { verified, authn_id })
    }
}

/// A claim's JSON value as an identity: a non-empty string, or an integer.
fn identity(json: &str) -> Option<String> {
    match json.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(json)
            .ok()
            .filter(|s| !s.is_empty()),
        b'-' | b'0'..=b'9' => json.parse::<i64>().ok().map(|n| n.to_string()),
        _ => None,
    }
}

/// The scopes a token carries: `scope` (RFC 8693 and RFC 9068: one string,
/// space separated) and `scp` (a list of strings, or one string, as some
/// providers issue it).
fn granted_scopes(verified: &Verified) -> HashSet<String> {
    let mut granted = HashSet::new();
    for name in ["scope", "scp"] {
        let Some(json) = verified.claims().get(&verified.payload, name) else {
            continue;
        };
        match serde_json::from_str::<serde_json::Value>(json) {
            Ok(serde_json::Value::String(s)) => {
                granted.extend(s.split(' ').filter(|s| !s.is_empty()).map(str::to_string));
            }
            Ok(serde_json::Value::Array(items)) => {
                granted.extend(items.into_iter().filter_map(|v| match v {
                    serde_json::Value::String(s) => Some(s),
                    _ => None,
                }));
            }
            _ => {}
        }
    }
    granted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sign::SigningKey;

    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldC0zMmJ5dGVz";
    const NOW: i64 = 1_800_000_000;
    const ISSUER: &str = "https://issuer.test";

    fn snapshot() -> Snapshot {
        let mut s = Snapshot::new("app", Policy::default());
        s.keys.push(KeyRow {
            kid: "k1".into(),
            alg: "HS256".into(),
            format: "secret".into(),
            material: SECRET.into(),
            enabled: true,
            not_before: None,
            not_after: None,
            issuer: None,
        });
        s
    }

    fn token(extra: &str) -> String {
        let claims = format!(
            r#"{{"iss":"{ISSUER}","sub":"alice","exp":{},"iat":{NOW},"jti":"j1","scope":"openid db"{extra}}}"#,
            NOW + 600
        );
        SigningKey::new("k1", "HS256", SECRET)
            .unwrap()
            .sign(&claims)
            .unwrap()
    }

    fn login() -> Login<'static> {
        Login {
            issuer: ISSUER,
            scopes: "openid db",
            user_claim: "sub",
        }
    }

    fn admit(s: Snapshot, token: &str) -> std::result::Result<Admitted, Refusal> {
        s.prepare().admit(token, &login(), NOW)
    }

    #[test]
    fn a_good_token_logs_in_as_its_subject() {
        let a = admit(snapshot(), &token("")).unwrap();
        assert_eq!(a.authn_id, "alice");
    }

    #[test]
    fn the_snapshot_survives_its_encoding() {
        let mut s = snapshot();
        s.revoked_subjects.push(("bob".into(), 5));
        let again = Snapshot::decode(&s.encode()).unwrap();
        assert_eq!(again, s);
        let mut other = s.clone();
        other.format = FORMAT + 1;
        assert!(Snapshot::decode(&other.encode()).is_none());
    }

    #[test]
    fn another_issuer_is_refused() {
        let mut l = login();
        l.issuer = "https://other.test";
        let r = snapshot().prepare().admit(&token(""), &l, NOW);
        assert!(matches!(r, Err(Refusal::Issuer { .. })));
    }

    #[test]
    fn a_missing_scope_is_refused_and_scp_lists_count() {
        let mut l = login();
        l.scopes = "openid db admin";
        let r = snapshot().prepare().admit(&token(""), &l, NOW);
        assert_eq!(r.unwrap_err(), Refusal::Scope("admin".into()));
        let t = token(r#","scp":["admin"]"#);
        assert!(snapshot().prepare().admit(&t, &l, NOW).is_ok());
    }

    #[test]
    fn a_sender_constrained_token_is_refused() {
        let t = token(r#","cnf":{"jkt":"abc"}"#);
        assert_eq!(
            admit(snapshot(), &t).unwrap_err(),
            Refusal::SenderConstrained
        );
    }

    #[test]
    fn no_identity_claim_is_refused() {
        let mut l = login();
        l.user_claim = "email";
        let r = snapshot().prepare().admit(&token(""), &l, NOW);
        assert_eq!(r.unwrap_err(), Refusal::NoIdentity("email".into()));
        l.user_claim = "iat";
        let a = snapshot().prepare().admit(&token(""), &l, NOW).unwrap();
        assert_eq!(a.authn_id, NOW.to_string());
    }

    #[test]
    fn revocations_in_the_snapshot_refuse() {
        let mut s = snapshot();
        s.revoked_jtis.push("j1".into());
        assert_eq!(
            admit(s, &token("")).unwrap_err(),
            Refusal::Token(Error::Revoked)
        );
        let mut s = snapshot();
        s.revoked_subjects
            .push(("alice".into(), (NOW + 1) * 1_000_000));
        assert_eq!(
            admit(s, &token("")).unwrap_err(),
            Refusal::Token(Error::RevokedSubject)
        );
        let sid = "0AAAAAAA-0000-4000-8000-000000000000";
        let mut s = snapshot();
        s.revoked_sessions.push(sid.to_ascii_lowercase());
        let t = token(&format!(r#","sid":"{sid}""#));
        assert_eq!(admit(s, &t).unwrap_err(), Refusal::Token(Error::Revoked));
    }

    #[test]
    fn a_disabled_key_and_the_policy_refuse() {
        let mut s = snapshot();
        s.keys[0].enabled = false;
        assert!(matches!(admit(s, &token("")), Err(Refusal::Token(_))));
        let mut s = snapshot();
        s.policy.audiences = vec!["db".into()];
        s.policy.any_audience = false;
        let t = token(r#","aud":"other""#);
        assert!(matches!(admit(s, &t), Err(Refusal::Token(_))));
        let expired = snapshot().prepare().admit(&token(""), &login(), NOW + 3600);
        assert!(matches!(
            expired,
            Err(Refusal::Token(Error::Expired { .. }))
        ));
    }
}
