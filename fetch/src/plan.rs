//! What the worker does with a successful fetch: which keys to add, which
//! to start or stop counting as gone, which to retire.
//!
//! The rules, and why:
//! - Only a successful fetch is planned from. `plan` takes a
//!   `FetchedJwks`, which exists only for a JWKS that was fetched over
//!   verified HTTPS, parsed, and holds at least one usable signature key.
//!   A failed fetch, an empty key list, or a document none of whose keys
//!   parse therefore changes nothing: a provider outage or a hostile answer
//!   never removes keys that still verify.
//! - A stored key counts as still published while the document names its
//!   kid at all, even in a form that can no longer be parsed (the stored
//!   copy still verifies). While the document holds an entry whose kid
//!   cannot be read, no key is counted as gone in that round.
//! - A key that a successful fetch no longer lists is marked missing, with
//!   the time (`Missing { since }`), and stays enabled. It is retired
//!   (disabled, not deleted) at the first successful fetch at least
//!   `grace` seconds later that still does not list it. So a key lives on
//!   for at least `grace` after the provider was first seen without it:
//!   tokens signed just before a rotation keep verifying until they
//!   expire, as long as `grace` is at least the longest token lifetime the
//!   provider issues. Retiring always takes two successful fetches that
//!   agree, so one odd answer (a stale CDN node) retires nothing.
//! - A missing key listed again goes back to `Listed`; a retired key listed
//!   again with the same material is enabled again (whoever controls the
//!   JWKS could as well publish a new key, so this trusts nothing more).
//! - A key an administrator disabled is never touched.
//! - A kid listed with other material than is stored is a conflict: the
//!   stored key is not replaced (as `jwt_rls.import_jwks()` refuses to) and
//!   counts as unpublished, so it retires after the grace period; the new
//!   key waits for an administrator. Material is compared as the core's
//!   `parse_jwks` writes it, like `import_jwks` does.

use std::collections::{HashMap, HashSet};

use jwt_rls_core::keys::JwkEntry;

use crate::fetch::FetchedJwks;

/// The grace period used unless an administrator sets another: one day.
/// It must cover the longest token lifetime a provider issues (Auth0's
/// default access token lives 24 hours; Keycloak, Cognito, Entra ID and
/// Supabase issue 5 to 90 minutes). A key a provider withdrew because it
/// leaked should be disabled by hand, which the worker never undoes.
pub const DEFAULT_GRACE_SECS: i64 = 24 * 60 * 60;

/// Where a key the worker stored for a source stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Enabled, and listed by the last successful fetch.
    Listed,
    /// Enabled, and listed by no successful fetch since `since` (Unix
    /// seconds).
    Missing { since: i64 },
    /// Disabled by the worker when its grace period ended.
    Retired,
    /// Disabled by an administrator.
    Disabled,
}

/// A key stored for the source being planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub material: String,
    pub state: KeyState,
}

/// What to change. Every list is sorted by kid; nothing outside these
/// lists changes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// New kids: insert, enabled, `Listed`.
    pub add: Vec<JwkEntry>,
    /// Listed keys no longer listed: set `Missing { since: now }`.
    pub missing: Vec<String>,
    /// Missing keys listed again: set `Listed`.
    pub relisted: Vec<String>,
    /// Missing keys past their grace period: disable, set `Retired`.
    pub retire: Vec<String>,
    /// Retired keys listed again with the same material: enable, `Listed`.
    pub revive: Vec<String>,
    /// Kids listed with other material than is stored: change nothing for
    /// the new key, and tell the administrator.
    pub conflicts: Vec<String>,
}

impl Plan {
    /// Whether the key table needs no change.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty()
            && self.missing.is_empty()
            && self.relisted.is_empty()
            && self.retire.is_empty()
            && self.revive.is_empty()
    }
}

/// Plans the changes for one source after a successful fetch at `now`
/// (Unix seconds). `stored` holds the keys the worker keeps for this
/// source, and only them.
pub fn plan(stored: &[StoredKey], fetched: &FetchedJwks, now: i64, grace_secs: i64) -> Plan {
    let usable: HashMap<&str, &JwkEntry> =
        fetched.keys().iter().map(|k| (k.kid.as_str(), k)).collect();
    let named: HashSet<&str> = fetched.listed_kids().collect();
    // Absence is only believed when every entry of the document could be
    // attributed to a kid.
    let sure = fetched.unnamed() == 0;
    let stored_kids: HashSet<&str> = stored.iter().map(|k| k.kid.as_str()).collect();
    let mut out = Plan::default();

    for key in stored {
        let fresh = usable.get(key.kid.as_str());
        let same = fresh.is_some_and(|f| f.alg == key.alg && f.material == key.material);
        if fresh.is_some() && !same {
            out.conflicts.push(key.kid.clone());
        }
        // Published: the same key is listed, or the kid is listed in a form
        // that cannot be compared (skipped), which the stored copy survives.
        let published = same || (fresh.is_none() && named.contains(key.kid.as_str()));
        match key.state {
            KeyState::Disabled => {}
            KeyState::Listed if !published && sure => out.missing.push(key.kid.clone()),
            KeyState::Listed => {}
            KeyState::Missing { .. } if published => out.relisted.push(key.kid.clone()),
            KeyState::Missing { since } if sure && now.saturating_sub(since) >= grace_secs => {
                out.retire.push(key.kid.clone())
            }
            KeyState::Missing { .. } => {}
            KeyState::Retired if same => out.revive.push(key.kid.clone()),
            KeyState::Retired => {}
        }
    }
    out.add = fetched
        .keys()
        .iter()
        .filter(|k| !stored_kids.contains(k.kid.as_str()))
        .cloned()
        .collect();
    out.add.sort_by(|a, b| a.kid.cmp(&b.kid));
    for list in [
        &mut out.missing,
        &mut out.relisted,
        &mut out.retire,
        &mut out.revive,
        &mut out.conflicts,
    ] {
        list.sort();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_rls_core::sign::{generate, SigningKey};
    use KeyState::*;

    const GRACE: i64 = 3600;

    /// A real public JWK for `kid`, as the core stores it.
    fn jwk(kid: &str) -> String {
        let pem = generate("ES256").unwrap();
        let key = SigningKey::new(kid, "ES256", &pem).unwrap();
        key.verification_key().unwrap().1
    }

    fn fetched(keys: &[&str]) -> FetchedJwks {
        FetchedJwks::parse(
            "https://id.example/jwks",
            &format!(r#"{{"keys":[{}]}}"#, keys.join(",")),
        )
        .unwrap()
    }

    /// The stored form of each key of `f`, in `state`.
    fn stored_from(f: &FetchedJwks, state: KeyState) -> Vec<StoredKey> {
        f.keys()
            .iter()
            .map(|k| StoredKey {
                kid: k.kid.clone(),
                alg: k.alg.clone(),
                material: k.material.clone(),
                state,
            })
            .collect()
    }

    fn kids(entries: &[JwkEntry]) -> Vec<&str> {
        entries.iter().map(|e| e.kid.as_str()).collect()
    }

    #[test]
    fn first_fetch_adds_everything() {
        let (a, b) = (jwk("a"), jwk("b"));
        let f = fetched(&[&b, &a]);
        let p = plan(&[], &f, 1000, GRACE);
        assert_eq!(kids(&p.add), ["a", "b"]);
        assert!(p.missing.is_empty() && p.retire.is_empty() && p.conflicts.is_empty());
    }

    #[test]
    fn unchanged_set_changes_nothing() {
        let a = jwk("a");
        let f = fetched(&[&a]);
        let p = plan(&stored_from(&f, Listed), &f, 1000, GRACE);
        assert!(p.is_empty(), "{p:?}");
        assert!(p.conflicts.is_empty());
    }

    /// A rotation: the new kid is added, the old one marked, and retired
    /// only once the grace period has passed, by a later fetch that still
    /// does not list it.
    #[test]
    fn rotation_marks_then_retires_after_grace() {
        let (old, new) = (jwk("old"), jwk("new"));
        let before = fetched(&[&old]);
        let after = fetched(&[&new]);
        let mut stored = stored_from(&before, Listed);

        let p = plan(&stored, &after, 1000, GRACE);
        assert_eq!(kids(&p.add), ["new"]);
        assert_eq!(p.missing, ["old"]);
        assert!(p.retire.is_empty());

        stored[0].state = Missing { since: 1000 };
        stored.extend(stored_from(&after, Listed));
        let p = plan(&stored, &after, 1000 + GRACE - 1, GRACE);
        assert!(p.is_empty(), "still in its grace period: {p:?}");

        let p = plan(&stored, &after, 1000 + GRACE, GRACE);
        assert_eq!(p.retire, ["old"]);
        assert!(p.add.is_empty() && p.missing.is_empty());
    }

    #[test]
    fn a_missing_key_listed_again_is_relisted() {
        let a = jwk("a");
        let f = fetched(&[&a]);
        let stored = stored_from(&f, Missing { since: 0 });
        let p = plan(&stored, &f, 10 * GRACE, GRACE);
        assert_eq!(p.relisted, ["a"]);
        assert!(p.retire.is_empty());
    }

    #[test]
    fn a_retired_key_listed_again_is_revived_but_never_an_admin_disabled_one() {
        let (a, b) = (jwk("a"), jwk("b"));
        let f = fetched(&[&a, &b]);
        let mut stored = stored_from(&f, Retired);
        stored[1].state = Disabled;
        let p = plan(&stored, &f, 0, GRACE);
        assert_eq!(p.revive, ["a"]);
        assert!(p.relisted.is_empty() && p.add.is_empty());
    }

    #[test]
    fn admin_disabled_keys_are_never_marked_or_retired() {
        let (a, b) = (jwk("a"), jwk("b"));
        let stored = stored_from(&fetched(&[&a]), Disabled);
        let p = plan(&stored, &fetched(&[&b]), 10 * GRACE, GRACE);
        assert!(p.missing.is_empty() && p.retire.is_empty());
        assert_eq!(kids(&p.add), ["b"]);
    }

    /// The provider still names the kid, in a form the core now refuses:
    /// the stored copy still verifies, so it is not counted as gone.
    #[test]
    fn a_kid_listed_unparsable_still_counts_as_published() {
        let (a, b) = (jwk("a"), jwk("b"));
        let stored = stored_from(&fetched(&[&a]), Listed);
        let broken_a = r#"{"kty":"EC","crv":"P-256","kid":"a","x":"AA","y":"AA"}"#;
        let f = fetched(&[broken_a, &b]);
        assert_eq!(f.skipped().len(), 1);
        let p = plan(&stored, &f, 0, GRACE);
        assert!(p.missing.is_empty(), "{p:?}");
        assert_eq!(kids(&p.add), ["b"]);
        let missing = stored_from(&fetched(&[&a]), Missing { since: 0 });
        assert_eq!(plan(&missing, &f, 10 * GRACE, GRACE).relisted, ["a"]);
    }

    /// An entry without a readable kid could be any stored key: nothing is
    /// marked or retired in that round.
    #[test]
    fn an_unattributable_entry_blocks_marking_and_retiring() {
        let (a, b, c) = (jwk("a"), jwk("b"), jwk("c"));
        let f = fetched(&[&b, r#"{"kty":"EC","crv":"P-256"}"#, "7"]);
        assert_eq!(f.unnamed(), 2);
        let mut stored = stored_from(&fetched(&[&a]), Listed);
        stored.extend(stored_from(&fetched(&[&c]), Missing { since: 0 }));
        let p = plan(&stored, &f, 10 * GRACE, GRACE);
        assert!(p.missing.is_empty() && p.retire.is_empty(), "{p:?}");
        assert_eq!(kids(&p.add), ["b"]);
    }

    #[test]
    fn other_material_under_a_stored_kid_is_a_conflict_and_not_published() {
        let a1 = jwk("a");
        let a2 = jwk("a");
        let stored = stored_from(&fetched(&[&a1]), Listed);
        let p = plan(&stored, &fetched(&[&a2]), 0, GRACE);
        assert_eq!(p.conflicts, ["a"]);
        assert!(p.add.is_empty(), "the new key is never stored over the old");
        assert_eq!(p.missing, ["a"]);
        let retired = stored_from(&fetched(&[&a1]), Retired);
        let p = plan(&retired, &fetched(&[&a2]), 0, GRACE);
        assert!(p.revive.is_empty());
        assert_eq!(p.conflicts, ["a"]);
    }

    #[test]
    fn a_clock_going_backwards_retires_nothing() {
        let (a, b) = (jwk("a"), jwk("b"));
        let stored = stored_from(&fetched(&[&a]), Missing { since: i64::MAX });
        let p = plan(&stored, &fetched(&[&b]), i64::MIN, GRACE);
        assert!(p.retire.is_empty());
    }
}
